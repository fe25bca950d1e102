"""``logdistill label``: one shard of the teacher's soft targets (an Indexed Job's completion index).

The transfer set is the one ``logdistill distill`` trains on (:func:`logdistill.model.engine.transfer.transfer_set`,
called by both); each distinct template goes to shard ``sha256(template) mod N``. The shard format
(and its loader, used by ``distill --soft-targets``) is :mod:`logdistill.model.engine.shards`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from logdistill.model.engine.augment import AUGMENT_PER_TEMPLATE
from logdistill.model.engine.shards import ShardError, shard_of, transfer_digest, write_shard

if TYPE_CHECKING:
    from logdistill.model.engine.train import Progress
    from logdistill.spec import DistillSpec

__all__ = ["label_shard", "add_arguments", "main"]


def label_shard(spec: DistillSpec, index: int, shards: int, out_dir: str | Path, *, progress: Progress | None = None,
                augment_per_template: int = AUGMENT_PER_TEMPLATE) -> dict[str, Any]:
    """Compute and write shard ``index`` of ``shards``; returns a small summary."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch  # torch-heavy modules load here: `logdistill label --help` stays light

    from logdistill.model.runtime.data import load_records
    from logdistill.model.runtime.splits import make_split
    from logdistill.model.engine.teachers import CheckpointTeacher
    from logdistill.model.engine.train import Progress, set_threads
    from logdistill.model.engine.transfer import transfer_set
    from logdistill.model.runtime.templates import model_input

    if shards < 1 or not 0 <= index < shards:
        raise ShardError(f"--shard-index {index} must be in [0, --shards {shards})")
    progress = progress or Progress()
    started = time.monotonic()
    set_threads(spec.training.threads)
    teacher = CheckpointTeacher(spec.teacher)
    labels = teacher.label_set().labels
    key = model_input(teacher.input)  # the split and transfer set run_pipeline builds for this teacher
    split = make_split(load_records(spec.data).records, spec.data, spec.training.seed, key=key)
    transfer = transfer_set(split, labels, distil=True, augment_per_template=augment_per_template,
                            seed=spec.training.seed, key=key)
    distinct = list(dict.fromkeys(transfer.templates))
    mine = [t for t in distinct if shard_of(t, shards) == index]
    progress.say(f"label: shard {index} of {shards}: {len(mine)} of {len(distinct)} distinct transfer templates")
    chunk = 256
    rows = []
    for start in range(0, len(mine), chunk):
        rows.append(teacher.probs(mine[start : start + chunk], labels, spec.training.temperature))
        progress.say(f"label: shard {index}: {min(start + chunk, len(mine))}/{len(mine)} templates"
                     f" ({time.monotonic() - started:.1f}s)")
    probs = torch.cat(rows).numpy() if rows else torch.zeros((0, len(labels))).numpy()
    meta = {"shard": index, "shards": shards, "temperature": spec.training.temperature,
            "transferDigest": transfer_digest(transfer.templates), "transferTemplates": len(distinct),
            "teacher": teacher.name, "seed": spec.training.seed}
    path = write_shard(out_dir, index, shards, mine, probs, labels, meta)
    seconds = time.monotonic() - started
    progress.say(f"label: wrote {path} ({len(mine)} templates, {seconds:.1f}s)")
    return {"shard": index, "shards": shards, "templates": len(mine), "path": str(path), "seconds": round(seconds, 2)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML file with the DistilledModel spec schema")
    parser.add_argument("--shard-index", required=True, type=int, help="this shard (the Job's completion index)")
    parser.add_argument("--shards", required=True, type=int, help="number of shards (job.workers)")
    parser.add_argument("--out", required=True, help="folder of the shards (shared by all indexes)")


def main(args: argparse.Namespace) -> int:
    from logdistill.model.runtime.artifact import ArtifactError
    from logdistill.model.runtime.data import DataError
    from logdistill.model.engine.teachers import DistillError
    from logdistill.spec import SpecError, load_spec

    try:
        spec = load_spec(args.config)
        summary = label_shard(spec, args.shard_index, args.shards, args.out)
    except (SpecError, ShardError, DistillError, DataError, ArtifactError, ValueError, OSError) as err:
        print(f"logdistill label: {err}", file=sys.stderr)
        return 2 if isinstance(err, (SpecError, ShardError)) else 1
    print(json.dumps(summary, sort_keys=True))
    return 0
