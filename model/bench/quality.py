"""``logdistill bench quality``: an evaluation protocol that can fail (issue 16).

On the bundled ``BGL_20k.log`` (or ``--data``): template-disjoint k-fold, leave-one-category-out and
chronological folds over several seeds (:mod:`logdistill.model.engine.quality`), the same folds for
every model: the teacher, the distilled student, the same student on hard labels only (both the demo
recipe, trained per fold by the engine's code), TF-IDF + LR, a Jaccard 1-nearest neighbour on token sets
and "a never-seen template is an alert". Writes ``<out>/bench-quality.json`` and ``bench-quality.md``
and prints the tables: mean ± sd and worst fold per model and protocol, and the per-category
leave-one-category-out table. Each fold's row is appended to ``bench-quality.folds.jsonl`` as soon as it is
scored, so a run of hours that is stopped keeps what it measured.

``--quick``: one seed, the largest alert category left out (the category ``logdistill demo`` holds out), every
model at its recipe. ``--merge RUN ...``: fit nothing, summarise the fold rows of earlier runs as one (three
seeds take hours on two cores; they can be run a seed at a time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from logdistill.model.cli.demo import DEMO_TRAINING

__all__ = ["add_arguments", "main", "MODEL_ROWS"]

DEFAULT_OUT = "artifacts/bench-quality"
PARTIAL = "bench-quality.folds.jsonl"
"""Under ``--out``: one JSON row per fold, appended as each fold is scored (``bench-quality.json`` is written at the end)."""
CHEAP = ("tfidf", "jaccard", "unseen")
EXPENSIVE = ("teacher", "student", "hard")
MODEL_ROWS = CHEAP + EXPENSIVE


def _rows(value: str) -> list[str]:
    aliases = {"all": list(MODEL_ROWS), "cheap": list(CHEAP), "expensive": list(EXPENSIVE)}
    rows: list[str] = []
    for part in value.split(","):
        part = part.strip()
        if part in aliases:
            rows += aliases[part]
        elif part in MODEL_ROWS:
            rows.append(part)
        else:
            raise argparse.ArgumentTypeError(f"unknown model {part!r}; choose from all, cheap, expensive,"
                                             f" {', '.join(MODEL_ROWS)}")
    return list(dict.fromkeys(rows))


def _seeds(value: str) -> tuple[int, ...]:
    try:
        return tuple(dict.fromkeys(int(part) for part in value.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {value!r}") from None


def _members(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a number of teachers >= 1, got {value!r}")
    return count


def _bar(value: str) -> float:
    try:
        bar = float(value)
    except ValueError:
        bar = -1.0
    if not 0.0 < bar <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1], got {value!r}")
    return bar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from logdistill.model.engine.bases import BASES
    from logdistill.model.runtime.folds import PROTOCOLS
    from logdistill.model.engine.teacher import POOLINGS
    from logdistill.model.runtime.templates import MODEL_INPUTS

    parser.add_argument("--data", default=None, help="labelled logs (default: the bundled BGL_20k.log)")
    parser.add_argument("--format", default="loghub", choices=("loghub", "csv", "jsonl"))
    parser.add_argument("--text-column", default="Content")
    parser.add_argument("--label-column", default="EventId")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"where the JSON and markdown go (default {DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true",
                        help="seed 13, the largest alert category left out (one fold; the category the demo holds out)")
    parser.add_argument("--models", type=_rows, default=list(MODEL_ROWS),
                        help=f"comma-separated: all, cheap, expensive or of {', '.join(MODEL_ROWS)} (default all)")
    parser.add_argument("--protocols", default=None,
                        help=f"comma-separated, of {', '.join(PROTOCOLS)} (default all; --quick loco)")
    parser.add_argument("--folds", type=int, default=None, help="k of the k-fold (default 5)")
    parser.add_argument("--seeds", type=_seeds, default=None, help="seeds (default 13,21,34; --quick 13)")
    parser.add_argument("--loco-min-lines", type=int, default=None,
                        help="leave out every alert category with at least this many lines (default 30; --quick 100)")
    parser.add_argument("--loco-max-categories", type=int, default=None, help="only the N largest such categories")
    parser.add_argument("--loco-categories", default=None, help="only these categories, comma-separated")
    parser.add_argument("--teacher-base", default="minilm", choices=BASES)
    parser.add_argument("--teacher-input", default=None, choices=list(MODEL_INPUTS),
                        help="what the teacher and students are fed: the masked template or the lightly masked"
                             " line (message, digits and hex only); default: the teacher recipe's")
    parser.add_argument("--max-per-template", type=int, default=None,
                        help="training lines kept per distinct model input (default: the engine's, 8)")
    parser.add_argument("--teacher-epochs", type=int, default=None,
                        help="teacher epochs per fold (default: the teacher recipe's)")
    parser.add_argument("--teacher-pooling", default="cls", choices=POOLINGS,
                        help="what the teacher's head reads: BERT's [CLS] pooler or the mean of the last layer's"
                             " tokens (MiniLM only; measured in memory, never saved; default cls)")
    parser.add_argument("--teacher-seeds", type=_members, default=1, metavar="N",
                        help="fine-tune N teachers per fold (seeds: the fold's seed and the next N-1) and answer by the"
                             " mean of their probabilities; the students learn their mixed soft targets (default 1)")
    parser.add_argument("--teacher-alert-below", type=_bar, default=None, metavar="P",
                        help="the teacher answers its most likely alert when its (mean) P(normal) is below P, as"
                             " escalation.teacherAlertBelow does (default: its top label)")
    parser.add_argument("--student-epochs", type=int, default=None,
                        help="student epochs per fold (default: the demo recipe's)")
    parser.add_argument("--student-extra-data", action="append", default=[], metavar="PATH",
                        help="JSONL lines added to the distilled student's transfer set, as `logdistill distill"
                             " --extra-data` does (lines without a label are labelled by the fold's teacher); repeatable")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all cores")
    parser.add_argument("--merge", action="append", default=[], metavar="RUN",
                        help="fit nothing: summarise the fold rows of earlier runs (their --out folders, or their"
                             f" {PARTIAL}) as one run, e.g. one seed per sitting; repeatable")


def config_from(args: argparse.Namespace) -> Any:
    from logdistill.model.engine.quality import FULL, QUICK, ProtocolConfig

    base = QUICK if args.quick else FULL
    return ProtocolConfig(
        folds=args.folds or base.folds, seeds=args.seeds or base.seeds,
        loco_min_lines=args.loco_min_lines or base.loco_min_lines,
        loco_max_categories=args.loco_max_categories or base.loco_max_categories,
        loco_categories=tuple(args.loco_categories.split(",")) if args.loco_categories else None,
        protocols=tuple(p.strip() for p in args.protocols.split(",")) if args.protocols else base.protocols,
    )


def models_from(args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    from logdistill.model.engine.quality import cheap_models

    cheap = dict(zip(CHEAP, cheap_models().items()))
    models = {cheap[row][0]: cheap[row][1] for row in args.models if row in cheap}
    wanted = [row for row in args.models if row in EXPENSIVE]
    if not wanted:
        return models
    return {**expensive_from(args, wanted, progress), **models}


def expensive_from(args: argparse.Namespace, rows: list[str], progress: Any) -> dict[str, Any]:
    from logdistill.model.bench.distill import TEACHER_OPTIONS
    from logdistill.model.cli.demo import protocol_models
    from logdistill.model.engine.bases import base_path, minilm_path
    from logdistill.model.engine.teacher import TeacherOptions

    defaults = TeacherOptions()
    epochs = args.teacher_epochs or defaults.epochs
    options = TeacherOptions(**{**TEACHER_OPTIONS[args.teacher_base], "epochs": epochs, "threads": args.threads,
                                "patience": min(epochs, defaults.patience),
                                "input": args.teacher_input or defaults.input, "pooling": args.teacher_pooling})
    student_epochs = args.student_epochs or DEMO_TRAINING["epochs"]
    return protocol_models(base_path(args.teacher_base), options, student_epochs, max_per_template=args.max_per_template,
                           rows=tuple(rows), student_from=None if args.teacher_base == "minilm" else minilm_path(),
                           progress=progress, extra_data=tuple(args.student_extra_data), teachers=args.teacher_seeds,
                           teacher_alert_below=args.teacher_alert_below)


def main(args: argparse.Namespace) -> int:
    from logdistill.model.bench.distill import machine
    from logdistill.model.engine.quality import markdown, merge, run
    from logdistill.model.engine.train import Progress
    from logdistill.model.runtime.data import DataError, load_records
    from logdistill.spec import DataSpec, SpecError, parse_spec

    started = time.monotonic()
    progress = Progress(every_s=60.0)
    if args.merge and (args.quick or args.seeds or args.protocols or args.folds):
        print("logdistill bench quality: --merge fits nothing; it takes no --quick, --seeds, --protocols or --folds",
              file=sys.stderr)
        return 2
    try:
        data_spec = parse_spec({"path": args.data, "format": args.format, "textColumn": args.text_column,
                                "labelColumn": args.label_column}, DataSpec, source="--data")
        records = load_records(data_spec).records
        out = Path(args.out)
        if args.merge:
            result = merge([(run_dir, fold_rows(run_dir)) for run_dir in args.merge], records)
            out.mkdir(parents=True, exist_ok=True)
        else:
            config = config_from(args)
            models = models_from(args, progress)
            out.mkdir(parents=True, exist_ok=True)
            partial = out / PARTIAL
            partial.write_text("", encoding="utf-8")

            def keep(row: dict[str, Any]) -> None:  # each fold as it is scored: a stopped run keeps what it measured
                with partial.open("a", encoding="utf-8") as stream:
                    stream.write(json.dumps(row) + "\n")

            result = run(records, config, models, say=progress.say, on_row=keep)
    except (SpecError, DataError, ValueError) as err:
        print(f"logdistill bench quality: {err}", file=sys.stderr)
        return 2
    result.update(data=str(args.data or "bundled BGL_20k.log"), command=" ".join(sys.argv))
    if args.merge:
        headline = (f"on {result['data']}: {len(result['folds'])} fold rows of {', '.join(args.merge)},"
                    " merged (nothing fitted)")
    else:
        result.update(machine=machine(), quick=args.quick, wallSeconds=round(time.monotonic() - started, 1))
        m = result["machine"]
        headline = f"on {result['data']} ({m['cpu']}, {m['cores']} cores), {result['wallSeconds']:.0f} s"
    (out / "bench-quality.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    table = markdown(result)
    (out / "bench-quality.md").write_text(table + "\n", encoding="utf-8")
    print(f"\nlogdistill bench quality {headline}\n")
    print(table)
    print(f"results: {out / 'bench-quality.json'}", file=sys.stderr)
    return 0


def fold_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """The fold rows an earlier run wrote (its ``--out``, or the rows file itself), as it scored them."""
    path = Path(run_dir)
    path = path / PARTIAL if path.is_dir() else path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"--merge {run_dir}: cannot read {path}: {err.strerror}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"--merge {path}, line {number}: not a JSON fold row ({err.msg})") from None
        if not isinstance(row, dict) or not {"protocol", "seed", "fold", "models"} <= set(row):
            raise ValueError(f"--merge {path}, line {number}: not a fold row of bench quality")
        rows.append(row)
    return rows
