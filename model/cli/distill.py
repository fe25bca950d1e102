"""``logdistill distill --config FILE --out DIR``: teacher -> student knowledge distillation.

The command line of :func:`logdistill.model.engine.pipeline.run_pipeline`: arguments -> the teacher source
the spec names (:func:`logdistill.model.engine.teachers.teacher_source`) -> the pipeline -> the summary
file (:class:`logdistill.contracts.Summary`, the Job's termination message). The recipe is
described in :mod:`logdistill.model.engine.pipeline`.

Light at import: ``logdistill distill --help`` loads no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TextIO

from logdistill.contracts import ErrorSummary, Summary, WorkerSummary
from logdistill.model.engine.augment import AUGMENT_PER_TEMPLATE

if TYPE_CHECKING:
    from logdistill.model.engine.distributed import Parallel
    from logdistill.model.engine.train import Progress
    from logdistill.spec import DistillSpec

__all__ = ["run_distill", "write_summary", "print_summary", "add_arguments", "main"]

def run_distill(spec: DistillSpec, out_dir: str | Path, *, progress: Progress | None = None,
                augment_per_template: int = AUGMENT_PER_TEMPLATE, balance_classes: float | None = None,
                extra_data: Sequence[str | Path] = (), soft_targets: str | Path | None = None,
                parallel: Parallel | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Distil as ``spec`` says; write the artifact to ``out_dir``; return ``(summary, report)``.

    ``balance_classes``: None for :data:`logdistill.model.engine.pipeline.BALANCE_CLASSES`;
    ``soft_targets``: folder of ``logdistill label`` shards used instead of running the teacher;
    ``parallel``: this process's rank under torchrun (:mod:`logdistill.model.engine.distributed`); only
    rank 0 evaluates and exports, the others return ``({"rank": r}, {})`` after training.
    """
    from logdistill.model.engine.pipeline import PipelineOptions, run_pipeline
    from logdistill.model.engine.teachers import DistillError, teacher_source
    from logdistill.model.engine.train import Progress

    if spec.teacher.endpoint is not None and (soft_targets is not None or parallel is not None or extra_data):
        raise DistillError("teacher.endpoint: --soft-targets, --extra-data and torchrun need a local teacher")
    source = teacher_source(spec.teacher, soft_targets=soft_targets)
    options = PipelineOptions(augment_per_template=augment_per_template, extra_data=tuple(extra_data),
                              parallel=parallel, progress=progress or Progress())
    if balance_classes is not None:
        options = dataclasses.replace(options, balance_classes=balance_classes)
    return run_pipeline(spec, source, out_dir, options)


def write_summary(path: str | None, body: Summary | ErrorSummary | WorkerSummary) -> None:
    """The summary file, replaced atomically (``jobrun`` copies it into the termination log)."""
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(body.serialize(), encoding="utf-8")
    os.replace(tmp, target)


def _summary_message(summary: dict[str, Any]) -> Summary | WorkerSummary:
    return WorkerSummary.model_validate(summary) if "rank" in summary else Summary.model_validate(summary)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML file with the DistilledModel spec schema")
    parser.add_argument("--out", required=True, help="artifact directory to write")
    parser.add_argument("--progress-file", default=None, help="JSON progress file, replaced atomically")
    parser.add_argument("--summary-file", default=None,
                        help="compact JSON result (< 4 KiB; the Kubernetes termination message)")
    parser.add_argument("--extra-data", action="append", default=[], metavar="PATH",
                        help="JSONL file or directory of teacher-labelled lines ({text, label}) added to the train"
                             " part only (repeatable)")
    parser.add_argument("--soft-targets", default=None, metavar="DIR",
                        help="teacher soft targets from `logdistill label` shards, instead of running the teacher")


def print_summary(summary: dict[str, Any], stream: TextIO = sys.stdout) -> None:
    t, s = summary["teacher"], summary["student"]
    print(f"{'':10}{'accuracy':>10}{'macro-F1':>10}{'p50 ms':>10}", file=stream)
    for name, row in (("teacher", t), ("student", s)):  # an endpoint teacher has no latency of its own
        p50 = row.get("latencyMsP50")
        print(f"{name:10}{row['accuracy']:>10.4f}{row['macroF1']:>10.4f}"
              f"{p50 if p50 is not None else float('nan'):>10.3f}", file=stream)
    print(f"retention {summary['retention']:.3f}, gate {'passed' if summary['gatePassed'] else 'NOT passed'},"
          f" artifact {summary['artifact']} (version {summary['version']})", file=stream)


def main(args: argparse.Namespace) -> int:
    from logdistill.model.runtime.artifact import ArtifactError
    from logdistill.model.runtime.data import DataError
    from logdistill.model.engine.distributed import WorkerLost, from_env
    from logdistill.model.engine.shards import ShardError
    from logdistill.model.engine.teachers import DistillError
    from logdistill.model.engine.train import Progress
    from logdistill.spec import SpecError, load_spec

    try:
        spec = load_spec(args.config)
    except SpecError as err:
        print(f"logdistill distill: {err}", file=sys.stderr)
        write_summary(args.summary_file, ErrorSummary(error=str(err)))
        return 2
    parallel = None
    try:
        parallel = from_env()  # None unless launched by torchrun
        summary, _ = run_distill(spec, args.out, progress=Progress(args.progress_file),
                                 extra_data=args.extra_data, soft_targets=args.soft_targets, parallel=parallel)
    except (DistillError, DataError, ArtifactError, ShardError, WorkerLost, ValueError, OSError) as err:
        print(f"logdistill distill: {err}", file=sys.stderr)
        write_summary(args.summary_file, ErrorSummary(error=str(err)))
        return 1
    except RuntimeError as err:  # DDP's gradient all-reduce fails this way when a peer is lost
        if parallel is None:
            raise
        message = f"distributed training failed on {parallel.describe()} (a worker was lost?): {err}"
        print(f"logdistill distill: {message}", file=sys.stderr)
        write_summary(args.summary_file, ErrorSummary(error=message))
        return 1
    finally:
        if parallel is not None:
            parallel.close()
    write_summary(args.summary_file, _summary_message(summary))
    if "teacher" in summary:  # rank != 0 of a distributed run has nothing to print
        print_summary(summary)
    return 0
