"""``logdistill label``: one shard of the teacher's soft targets (an Indexed Job's completion index).

The transfer set is the one ``logdistill distill`` trains on (:func:`transfer_set`, called by
both): the distinct masked train templates of the spec's data and split, plus the augmented
variants. Each distinct template goes to shard ``sha256(template) mod N`` (stable across
processes and machines, unlike ``hash()``). A shard is two files in ``--out``:

* ``shard-<I>-of-<N>.npz``: ``keys`` (the templates, unicode), ``probs`` float32 ``[K, C]`` (soft
  targets at ``training.temperature``, columns in ``labels`` order), ``labels``, and ``meta`` (one
  JSON string: shard, shards, temperature, the transfer set's size and digest);
* ``shard-<I>-of-<N>.sha256``: ``sha256sum`` format, the digest of the ``.npz`` bytes.

Both are written to a temporary name and renamed, the checksum last, so a re-run index replaces
only its own two files and a reader never trusts a half-written shard.
``distill --soft-targets DIR`` loads them with :func:`load_soft_targets`, which refuses a missing,
corrupt or mismatched shard and names it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["ShardError", "TransferSet", "transfer_set", "shard_of", "shard_name", "transfer_digest",
           "write_shard", "load_soft_targets", "label_shard", "add_arguments", "main"]


class ShardError(Exception):
    """Soft-target shards that cannot be used; the message names the shard file."""


@dataclass(frozen=True)
class TransferSet:
    """What the student trains on: ``templates[i]`` with hard target ``targets[i]`` (or UNLABELLED)."""

    train_templates: list[str]
    augmented: list[str]
    templates: list[str]
    targets: list[int]
    unknown_labels: list[str]


def transfer_set(split: Any, labels: Sequence[str], *, distil: bool, augment_per_template: int,
                 seed: int) -> TransferSet:
    """The distillation transfer set of ``split``: distinct (template, label) train pairs, then
    (when distilling) augmented unlabelled variants. Deterministic for a split and seed."""
    from logdistill.model.distill import augment_templates
    from logdistill.model.augment_guard import without_evaluation_templates
    from logdistill.model.losses import UNLABELLED
    from logdistill.model.teacher import distinct_pairs
    from logdistill.model.templates import mask

    index = {label: i for i, label in enumerate(labels)}
    pairs = distinct_pairs([mask(r.text) for r in split.train], [r.label for r in split.train])
    train_templates = [t for t, _ in pairs]
    targets = [index.get(label, UNLABELLED) if label is not None else UNLABELLED for _, label in pairs]
    unknown = sorted({r.label for r in split.train if r.label is not None and r.label not in index})
    augmented = augment_templates(train_templates, augment_per_template if distil else 0, seed)
    augmented = without_evaluation_templates(augmented, split)  # no dev/test line leaks into training
    templates = train_templates + augmented
    targets = targets + [UNLABELLED] * len(augmented)
    if not distil:
        keep = [i for i, t in enumerate(targets) if t != UNLABELLED]
        templates, targets = [templates[i] for i in keep], [targets[i] for i in keep]
    return TransferSet(train_templates, augmented, templates, targets, unknown)


def shard_of(template: str, shards: int) -> int:
    """Stable shard of a template: ``int(sha256(utf-8 bytes)) mod shards``."""
    return int.from_bytes(hashlib.sha256(template.encode("utf-8")).digest()[:8], "big") % shards


def shard_name(index: int, shards: int) -> str:
    return f"shard-{index}-of-{shards}"


def transfer_digest(templates: Sequence[str]) -> str:
    """Digest of the distinct templates (order-free): shards and trainer must agree on it."""
    h = hashlib.sha256()
    for template in sorted(set(templates)):
        h.update(template.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def write_shard(out_dir: str | Path, index: int, shards: int, keys: Sequence[str], probs: Any,
                labels: Sequence[str], meta: dict[str, Any]) -> Path:
    """Write ``shard-<index>-of-<shards>.npz`` and its ``.sha256`` atomically; returns the ``.npz`` path."""
    import numpy as np

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, keys=np.array(list(keys), dtype=str), probs=np.asarray(probs, dtype=np.float32),
             labels=np.array(list(labels), dtype=str), meta=np.array(json.dumps(meta, sort_keys=True)))
    data = buffer.getvalue()
    name = shard_name(index, shards)
    npz = out / f"{name}.npz"
    _atomic_write(npz, data)
    _atomic_write(out / f"{name}.sha256", f"{hashlib.sha256(data).hexdigest()}  {npz.name}\n".encode())
    return npz


def _read_shard(directory: Path, index: int, shards: int) -> tuple[Any, Any, list[str], dict[str, Any]]:
    import numpy as np

    name = shard_name(index, shards)
    npz, checksum = directory / f"{name}.npz", directory / f"{name}.sha256"
    for path in (npz, checksum):
        if not path.is_file():
            raise ShardError(f"soft targets: shard {index} of {shards} is missing ({path} does not exist);"
                             f" re-run `logdistill label --shard-index {index} --shards {shards}`")
    data = npz.read_bytes()
    expected = checksum.read_text(encoding="utf-8").split()[:1]
    actual = hashlib.sha256(data).hexdigest()
    if expected != [actual]:
        raise ShardError(f"soft targets: shard {index} of {shards} is corrupt: {npz} has sha256 {actual},"
                         f" {checksum.name} says {expected[0] if expected else 'nothing'}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            keys, probs, labels = z["keys"], z["probs"], [str(x) for x in z["labels"]]
            meta = json.loads(str(z["meta"]))
    except (ValueError, KeyError, OSError) as err:
        raise ShardError(f"soft targets: shard {index} of {shards} is unreadable ({npz}): {err}") from None
    return keys, probs, labels, meta


def load_soft_targets(directory: str | Path, templates: Sequence[str], labels: Sequence[str],
                      temperature: float, expected: Sequence[str] | None = None) -> tuple[Any, list[str]]:
    """``[len(templates), C]`` soft targets for ``templates`` from every shard in ``directory``.

    Checks that all ``N`` shards are there with valid checksums, were made for the same ``N``,
    labels and temperature, and that together they hold exactly the transfer set ``expected``
    (default ``templates``): each distinct template once, in its own shard. Returns the tensor and
    the templates no shard has (rows left zero): only lines added beyond ``expected``, e.g. by
    ``--extra-data``; the caller labels them or refuses.
    """
    import numpy as np
    import torch

    expected = list(templates if expected is None else expected)
    folder = Path(directory)
    if not folder.is_dir():
        raise ShardError(f"soft targets: {folder} is not a directory (run `logdistill label` first)")
    found = sorted(folder.glob("shard-*-of-*.npz")) + sorted(folder.glob("shard-*-of-*.sha256"))
    if not found:
        raise ShardError(f"soft targets: no shard in {folder} (expected shard-<i>-of-<n>.npz and .sha256 files)")
    counts = {int(p.name.split("-of-")[1].split(".")[0]) for p in found}
    if len(counts) != 1:
        raise ShardError(f"soft targets: {folder} mixes shard counts {sorted(counts)}: remove the stale shards")
    shards = counts.pop()
    digest = transfer_digest(expected)
    table: dict[str, Any] = {}
    for index in range(shards):
        keys, probs, shard_labels, meta = _read_shard(folder, index, shards)
        where = f"soft targets: shard {index} of {shards} ({folder / shard_name(index, shards)}.npz)"
        if shard_labels != list(labels):
            raise ShardError(f"{where} has labels {shard_labels}, the teacher has {list(labels)}")
        if abs(float(meta.get("temperature", -1)) - temperature) > 1e-9:
            raise ShardError(f"{where} was made at temperature {meta.get('temperature')},"
                             f" training.temperature is {temperature}")
        if meta.get("shard") != index or meta.get("shards") != shards:
            raise ShardError(f"{where} says it is shard {meta.get('shard')} of {meta.get('shards')}")
        if meta.get("transferDigest") != digest:
            raise ShardError(f"{where} was made for other train lines (transfer set {meta.get('transferDigest')},"
                             f" now {digest}): re-run the labelling for the current data, split and seed")
        for key, row in zip(keys.tolist(), probs):
            if shard_of(key, shards) != index or key in table:
                raise ShardError(f"{where} holds {key!r}, which belongs to shard {shard_of(key, shards)}")
            table[key] = row
    absent = [t for t in dict.fromkeys(expected) if t not in table]
    if absent or len(table) != len(set(expected)):
        raise ShardError(f"soft targets: the shards in {folder} hold {len(table)} templates, the transfer set has"
                         f" {len(set(expected))} ({len(absent)} missing, e.g. {absent[:1]}): re-run the labelling")
    missing = [t for t in dict.fromkeys(templates) if t not in table]
    probs = np.zeros((len(templates), len(labels)), dtype=np.float32)
    for i, template in enumerate(templates):
        if template in table:
            probs[i] = table[template]
    return torch.from_numpy(probs), missing


def label_shard(spec: Any, index: int, shards: int, out_dir: str | Path, *, progress: Any = None,
                augment_per_template: int | None = None) -> dict[str, Any]:
    """Compute and write shard ``index`` of ``shards``; returns a small summary."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from logdistill.model import distill
    from logdistill.model.data import load_records
    from logdistill.model.splits import make_split
    from logdistill.model.train import Progress, set_threads

    if shards < 1 or not 0 <= index < shards:
        raise ShardError(f"--shard-index {index} must be in [0, --shards {shards})")
    progress = progress or Progress()
    started = time.monotonic()
    set_threads(spec.training.threads)
    teachers = distill._load_teachers(spec.teacher)
    labels = list(teachers[0][0].labels)
    split = make_split(load_records(spec.data).records, spec.data, spec.training.seed)
    per_template = distill.AUGMENT_PER_TEMPLATE if augment_per_template is None else augment_per_template
    transfer = transfer_set(split, labels, distil=True, augment_per_template=per_template, seed=spec.training.seed)
    distinct = list(dict.fromkeys(transfer.templates))
    mine = [t for t in distinct if shard_of(t, shards) == index]
    progress.say(f"label: shard {index} of {shards}: {len(mine)} of {len(distinct)} distinct transfer templates")
    chunk = 256
    rows = []
    for start in range(0, len(mine), chunk):
        rows.append(distill._teacher_probs(teachers, mine[start : start + chunk], labels, spec.training.temperature))
        progress.say(f"label: shard {index}: {min(start + chunk, len(mine))}/{len(mine)} templates"
                     f" ({time.monotonic() - started:.1f}s)")
    import torch

    probs = torch.cat(rows).numpy() if rows else torch.zeros((0, len(labels))).numpy()
    meta = {"shard": index, "shards": shards, "temperature": spec.training.temperature,
            "transferDigest": transfer_digest(transfer.templates), "transferTemplates": len(distinct),
            "teacher": ",".join(str(t.path) for t, _ in teachers), "seed": spec.training.seed}
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
    from logdistill.model.artifact import ArtifactError
    from logdistill.model.data import DataError
    from logdistill.model.distill import DistillError
    from logdistill.spec import SpecError, load_spec

    try:
        spec = load_spec(args.config)
        summary = label_shard(spec, args.shard_index, args.shards, args.out)
    except (SpecError, ShardError, DistillError, DataError, ArtifactError, ValueError, OSError) as err:
        print(f"logdistill label: {err}", file=sys.stderr)
        return 2 if isinstance(err, (SpecError, ShardError)) else 1
    print(json.dumps(summary, sort_keys=True))
    return 0


def precomputed_soft_targets(directory: str | Path, base_split: Any, transfer: TransferSet, labels: Sequence[str],
                             *, temperature: float, augment_per_template: int, seed: int, teachers: Any,
                             progress: Any) -> Any:
    """``distill --soft-targets``: the ``[N, C]`` soft targets of ``transfer`` from the shards.

    The shards must hold exactly the transfer set of ``base_split`` (the split before
    ``--extra-data``); templates that only the extra data brought in (and their augmentations)
    are labelled here by the teacher, a small share that is reported.
    """
    from logdistill.model import distill

    base = transfer if base_split is None else transfer_set(
        base_split, labels, distil=True, augment_per_template=augment_per_template, seed=seed)
    probs, missing = load_soft_targets(directory, transfer.templates, labels, temperature,
                                       expected=base.templates)
    progress.say(f"soft targets: {len(set(transfer.templates)) - len(missing)} templates from the shards in"
                 f" {directory}")
    if missing:
        progress.say(f"soft targets: labelling {len(missing)} templates the shards do not cover (--extra-data)")
        extra = distill._teacher_probs(teachers, missing, list(labels), temperature)
        row = {template: i for i, template in enumerate(missing)}
        for i, template in enumerate(transfer.templates):
            if template in row:
                probs[i] = extra[row[template]]
    return probs
