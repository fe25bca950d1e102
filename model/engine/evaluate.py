"""Score a model on labelled logs: quality (metrics.py), per-line latency, batch throughput.

Also the ``logdistill evaluate`` subcommand. Artifacts are scored through
:class:`logdistill.model.runtime.inference.OnnxClassifier` (int8, what the edge runs); the distiller
also scores torch models through :class:`TorchScorer` for reference.

Quality is computed once per distinct model input (a scorer's ``model_input`` of each line: the masked
template or the lightly masked line; identical input, identical output), so scoring thousands of
repetitive log lines costs a few hundred model calls.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from logdistill.model.runtime.inference import decide
from logdistill.model.runtime.metrics import classification_report, latency_summary
from logdistill.model.runtime.templates import model_input

__all__ = [
    "Scorer",
    "TorchScorer",
    "EnsembleScorer",
    "predict_texts",
    "quality",
    "measure_latency",
    "measure_throughput",
    "paired_latency",
    "evaluate_scorer",
    "tfidf_scores",
    "comparison_table",
    "add_arguments",
    "main",
]

THROUGHPUT_BATCH = 64


class Scorer(Protocol):
    labels: list[str]
    normal_label: str
    model_input: Callable[[str], str]
    """Raw line -> what :meth:`predict_proba` takes."""
    alert_below: float | None
    """The alert bar of :func:`~logdistill.model.runtime.inference.decide` (None: the top label)."""

    def predict_proba(self, templates: Sequence[str]) -> np.ndarray: ...


class TorchScorer:
    """A torch sequence classifier behind the :class:`Scorer` interface (fp32)."""

    def __init__(self, model: Any, tokenizer: Any, labels: list[str], normal: str, max_length: int,
                 input_name: str = "template", alert_below: float | None = None) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.labels, self.normal_label, self.max_length = list(labels), normal, max_length
        self.model_input = model_input(input_name)
        self.alert_below = alert_below

    def predict_proba(self, templates: Sequence[str]) -> np.ndarray:
        import torch

        from logdistill.model.engine.train import predict_logits

        logits = predict_logits(self.model, self.tokenizer, templates, self.max_length)
        return torch.softmax(logits, dim=-1).numpy()


class EnsembleScorer:
    """Weighted mean of several scorers' probabilities; columns aligned by label name."""

    alert_below = None  # a teacher: its top label

    def __init__(self, members: Sequence[tuple[Scorer, float]]) -> None:
        if not members:
            raise ValueError("an ensemble needs members")
        first = members[0][0]
        self.labels, self.normal_label = list(first.labels), first.normal_label
        for scorer, _ in members:
            if sorted(scorer.labels) != sorted(self.labels):
                raise ValueError(f"ensemble members disagree on labels: {scorer.labels} vs {self.labels}")
        if len({scorer.model_input for scorer, _ in members}) > 1:
            raise ValueError("ensemble members are fed different inputs (info.input): one input for all")
        self.model_input = first.model_input
        self.members = list(members)
        self._total = float(sum(w for _, w in members))

    def predict_proba(self, templates: Sequence[str]) -> np.ndarray:
        mixed = np.zeros((len(templates), len(self.labels)), dtype=np.float64)
        for scorer, weight in self.members:
            columns = [scorer.labels.index(label) for label in self.labels]
            mixed += weight * scorer.predict_proba(templates)[:, columns]
        return (mixed / self._total).astype(np.float32)


def predict_texts(scorer: Scorer, texts: Sequence[str], batch_size: int = THROUGHPUT_BATCH) -> list[tuple[str, float]]:
    """``(label, score)`` per raw text, in order (the label the scorer's alert bar picks, as the edge
    does); each distinct model input is scored once."""
    templates = [scorer.model_input(t) for t in texts]
    distinct = list(dict.fromkeys(templates))
    answers: dict[str, tuple[str, float]] = {}
    normal_index = scorer.labels.index(scorer.normal_label)
    for start in range(0, len(distinct), batch_size):
        chunk = distinct[start : start + batch_size]
        probs = scorer.predict_proba(chunk)
        best = decide(probs, normal_index, scorer.alert_below)
        for template, row, column in zip(chunk, probs, best):
            answers[template] = (scorer.labels[int(column)], float(row[column]))
    return [answers[t] for t in templates]


def quality(scorer: Scorer, texts: Sequence[str], truth: Sequence[str]) -> dict[str, Any]:
    """:func:`logdistill.model.runtime.metrics.classification_report` of the scorer on labelled texts."""
    predicted = [label for label, _ in predict_texts(scorer, texts)]
    return classification_report(list(truth), predicted, labels=scorer.labels)


def measure_latency(scorer: Scorer, texts: Sequence[str], samples: int = 200, warmup: int = 10) -> dict[str, Any]:
    """Single-line latency (model input + tokenise + model, batch of one, no cache) over distinct lines."""
    pool = list(dict.fromkeys(texts)) or ["empty"]
    for text in pool[:warmup]:
        scorer.predict_proba([scorer.model_input(text)])
    timings = []
    for i in range(samples):
        text = pool[i % len(pool)]
        start = time.perf_counter()
        scorer.predict_proba([scorer.model_input(text)])
        timings.append(time.perf_counter() - start)
    return latency_summary(timings)


def paired_latency(scorers: dict[str, Scorer], texts: Sequence[str], samples: int = 300,
                   block: int = 25, warm: int = 3) -> dict[str, dict[str, Any]]:
    """Single-line latency of several scorers measured in *alternating blocks*.

    Each scorer in turn scores the same ``block`` lines; the first ``warm`` of them are not timed.
    The next block rotates the order, until every scorer has ``samples`` timed lines. Alternating
    often makes load from other processes hit all of them alike (the speed-up is a ratio); whole
    blocks keep each model's weights in the CPU caches as they are on a node that runs only that
    model. Alternating line by line instead let a large teacher evict a small student's weights
    before every line (measured: +0.3 ms per line for a 0.3 ms student; docs/benchmarks.md).
    """
    pool = list(dict.fromkeys(texts)) or ["empty"]
    names = list(scorers)
    warm = min(warm, block - 1)
    timed = block - warm
    timings: dict[str, list[float]] = {name: [] for name in names}
    for index in range(-(-samples // timed)):
        lines = [pool[(index * block + i) % len(pool)] for i in range(block)]
        for k in range(len(names)):
            name = names[(index + k) % len(names)]
            scorer = scorers[name]
            for line in lines[:warm]:
                scorer.predict_proba([scorer.model_input(line)])
            for line in lines[warm:]:
                start = time.perf_counter()
                scorer.predict_proba([scorer.model_input(line)])
                timings[name].append(time.perf_counter() - start)
    return {name: latency_summary(values[:samples]) for name, values in timings.items()}


def measure_throughput(scorer: Scorer, texts: Sequence[str], batch: int = THROUGHPUT_BATCH,
                       min_lines: int = 640) -> float:
    """Lines per second scoring batches of ``batch`` model inputs (no cache: lines repeat to fill ``min_lines``)."""
    pool = [scorer.model_input(t) for t in dict.fromkeys(texts)] or ["empty"]
    lines = (pool * (min_lines // len(pool) + 1))[: max(min_lines, batch)]
    scorer.predict_proba(lines[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(lines), batch):
        scorer.predict_proba(lines[i : i + batch])
    return round(len(lines) / (time.perf_counter() - start), 1)


def evaluate_scorer(scorer: Scorer, texts: Sequence[str], truth: Sequence[str], *,
                    latency_samples: int = 200, throughput: bool = True) -> dict[str, Any]:
    """Quality + latency (+ throughput) of one scorer on one labelled set: a flat JSON-ready dict."""
    report = quality(scorer, texts, truth)
    if latency_samples:
        report.update(measure_latency(scorer, texts, samples=latency_samples))
    if throughput:
        report["throughput_lines_per_s"] = measure_throughput(scorer, texts)
    return report


def tfidf_scores(train_texts: Sequence[str], train_labels: Sequence[str], texts: Sequence[str],
                 truth: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """The TF-IDF + logistic-regression baseline trained on the train part, scored like the models."""
    from logdistill.model.engine.baseline import TfidfBaseline

    started = time.perf_counter()
    baseline = TfidfBaseline(seed=seed).fit(list(train_texts), list(train_labels))
    fit_s = time.perf_counter() - started
    report = classification_report(list(truth), baseline.predict(list(texts)), labels=baseline.labels)
    timings = []
    for text in list(dict.fromkeys(texts))[:200]:
        start = time.perf_counter()
        baseline.predict([text])
        timings.append(time.perf_counter() - start)
    report.update(latency_summary(timings or [0.0]))
    report["fit_seconds"] = round(fit_s, 2)
    return report


def comparison_table(rows: Sequence[tuple[str, dict[str, Any]]], reference: str | None = None) -> str:
    """A fixed-width table of models: quality, latency, size. ``reference`` names the row ratios are taken to."""
    ref = dict(rows).get(reference) if reference else None
    header = (f"{'model':<26}{'params':>11}{'size MB':>9}{'acc':>8}{'macroF1':>9}{'alertF1':>9}"
              f"{'p50 ms':>9}{'p99 ms':>9}{'lines/s':>9}" + (f"{'F1 ratio':>10}{'speed x':>9}" if ref else ""))
    lines = [header, "-" * len(header)]
    for name, r in rows:
        params = f"{r['parameters'] / 1e6:.2f}M" if r.get("parameters") else "-"
        size = f"{r['sizeBytes'] / 1e6:.1f}" if r.get("sizeBytes") else "-"
        line = (f"{name:<26}{params:>11}{size:>9}{r['accuracy']:>8.4f}{r['macro_f1']:>9.4f}{r['alert']['f1']:>9.4f}"
                f"{r['latency_ms_p50']:>9.3f}{r['latency_ms_p99']:>9.3f}"
                f"{r.get('throughput_lines_per_s', 0) or 0:>9.0f}")
        if ref:
            ratio = r["macro_f1"] / ref["macro_f1"] if ref["macro_f1"] else 0.0
            speed = ref["latency_ms_p50"] / r["latency_ms_p50"] if r["latency_ms_p50"] else 0.0
            line += f"{ratio:>10.3f}{speed:>9.1f}"
        lines.append(line)
    return "\n".join(lines)


def add_model_and_data_arguments(parser: argparse.ArgumentParser, data_help: str) -> None:
    """``--model``, ``--data`` and how to read it: shared by ``evaluate`` and ``predict``."""
    parser.add_argument("--model", required=True, help="artifact directory (teacher or student)")
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument("--format", default="loghub", choices=("loghub", "csv", "jsonl"))
    parser.add_argument("--text-column", default="Content", help="csv: column of the message")
    parser.add_argument("--label-column", default="EventId", help="csv: column of the label")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (edge nodes use 1)")


def load_model_and_data(args: argparse.Namespace, command: str):
    """``(classifier, ReadResult)``, or ``None`` after printing why (a bad artifact or data file)."""
    from logdistill.model.runtime.artifact import ArtifactError
    from logdistill.model.runtime.data import DataError, read_logs
    from logdistill.model.runtime.inference import OnnxClassifier

    try:
        classifier = OnnxClassifier(args.model, threads=args.threads)
        read = read_logs(args.data, args.format, text_column=args.text_column, label_column=args.label_column)
    except (ArtifactError, DataError) as err:
        print(f"logdistill {command}: {err}", file=sys.stderr)
        return None
    return classifier, read


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_and_data_arguments(parser, "labelled log file or directory")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    loaded = load_model_and_data(args, "evaluate")
    if loaded is None:
        return 2
    scorer, read = loaded
    labelled = [r for r in read.records if r.label is not None]
    if not labelled:
        print(f"logdistill evaluate: {args.data}: no labelled lines to score", file=sys.stderr)
        return 2
    report = evaluate_scorer(
        scorer, [r.text for r in labelled], [r.label for r in labelled], latency_samples=args.latency_samples
    )
    report.update(
        {
            "model": str(args.model),
            "version": scorer.version,
            "kind": scorer.manifest.kind,
            "unlabelled": len(read.records) - len(labelled),
            "malformed": len(read.malformed),
            "threads": args.threads,
        }
    )
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(f"{args.model} ({scorer.manifest.kind} {scorer.version}) on {args.data}: {report['n']} lines")
        print(f"  accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}"
              f"  alert F1 {report['alert']['f1']:.4f}")
        print(f"  latency p50 {report['latency_ms_p50']:.3f} ms  p99 {report['latency_ms_p99']:.3f} ms"
              f"  throughput {report['throughput_lines_per_s']:.0f} lines/s (batch {THROUGHPUT_BATCH})")
        for label, row in report["per_class"].items():
            print(f"  {label:>12}  P {row['precision']:.3f}  R {row['recall']:.3f}  F1 {row['f1']:.3f}"
                  f"  n={row['support']}")
    return 0
