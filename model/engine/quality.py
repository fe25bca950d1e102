"""The quality protocol of ``logdistill bench quality`` (and of ``logdistill demo``): every model fitted
and scored on the same folds, summarised as mean, standard deviation and worst fold.

Folds come from :mod:`logdistill.model.runtime.folds` (template-disjoint k-fold, leave-one-category-out,
chronological). A model is anything with ``fit(texts, labels)`` and ``predict(texts) -> labels``
(:class:`Model`), made fresh per fold by a factory that takes the fold's seed, so the expensive models
(:mod:`logdistill.model.engine.quality_models`) and the cheap baselines
(:mod:`logdistill.model.engine.baseline`) plug in alike. A model never sees a test line of the fold it is
scored on; any early stopping uses a split of the fold's training lines only.

Per fold and model: macro-F1 (over the labels in the truth or the predictions; and over the truth's labels only,
where one spurious prediction of an absent label does not add a zero), alert recall (a line
counts as flagged when predicted as any non-normal label), alert F1, the normal false-positive rate, and
per alert category the share of its lines flagged. When a model named :data:`TEACHER` runs on the fold, every
other model also gets its agreement with the teacher on the fold's (held-out) test lines: the share of lines
given the teacher's label, and the share of the lines the teacher flags that it flags too. Models that also
give their class probabilities (:class:`ScoredModel`: the teacher and the students) get the mean total-variation
distance between theirs and the teacher's: it still tells two recipes apart on a fold where both give the
teacher's label on every line. Torch-free.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from logdistill.model.runtime.data import NORMAL_LABEL, LogRecord
from logdistill.model.runtime.folds import (PROTOCOLS, Fold, chronological_fold, leave_category_out,
                                            template_kfold)
from logdistill.model.runtime.metrics import classification_report, supported_macro_f1

__all__ = ["Model", "ModelFactory", "ScoredModel", "Scored", "ProtocolConfig", "QUICK", "FULL", "TEACHER", "agreement",
           "probability_distance", "build_folds", "fold_scores", "run_protocol", "summarise", "per_category",
           "markdown", "cheap_models", "run", "merge"]


class Model(Protocol):
    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Any: ...

    def predict(self, texts: Sequence[str]) -> list[str]: ...


@dataclass(frozen=True)
class Scored:
    """A model's answers for some lines and the class probabilities behind them: ``probabilities[i, j]`` is
    line i's P(``classes[j]``); ``labels[i]`` is what the model answers for it (its top label, or its alert bar's)."""

    labels: list[str]
    classes: list[str]
    probabilities: np.ndarray


@runtime_checkable
class ScoredModel(Model, Protocol):
    """A model that also gives its class probabilities; ``predict(texts)`` is ``score(texts).labels``."""

    def score(self, texts: Sequence[str]) -> Scored: ...


ModelFactory = Callable[[int], Model]
"""Seed -> a fresh, unfitted model."""

# Which way is worse, per metric: the worst fold is the minimum or the maximum.
METRICS = {"macroF1": min, "macroF1Supported": min, "alertRecall": min, "alertF1": min, "normalFpr": max,
           "teacherAgreement": min, "teacherAlertAgreement": min, "teacherF1Ratio": min, "teacherDistance": max}

TEACHER = "teacher"
"""The row the other rows' agreement is measured against, when it runs on the fold."""


@dataclass(frozen=True)
class ProtocolConfig:
    """Which folds: ``folds`` template-disjoint folds per seed, one leave-one-category-out fold per alert
    category with at least ``loco_min_lines`` lines (the ``loco_max_categories`` largest; None = all) per
    seed, and the chronological cut (once per seed: the seed changes the models, not the cut)."""

    folds: int = 5
    seeds: tuple[int, ...] = (13, 21, 34)
    loco_min_lines: int = 30
    loco_max_categories: int | None = None
    loco_categories: tuple[str, ...] | None = None
    """Only these categories (each still needs ``loco_min_lines``); None = all."""
    chrono_train_fraction: float = 0.8
    protocols: tuple[str, ...] = PROTOCOLS

    def __post_init__(self) -> None:
        unknown = set(self.protocols) - set(PROTOCOLS)
        if unknown:
            raise ValueError(f"unknown protocol(s) {sorted(unknown)}; choose from {', '.join(PROTOCOLS)}")
        if not self.seeds:
            raise ValueError("at least one seed")


FULL = ProtocolConfig()
QUICK = ProtocolConfig(folds=3, seeds=(13,), loco_min_lines=100, loco_max_categories=1, protocols=("loco",))
"""The quick protocol: the largest alert category left out (BGL: KERNDTLB), one seed, every model at its
full recipe, on one fold (each fold retrains the teacher and both students). ``logdistill demo`` holds the
same category out of its own split (``data.holdOutLabels``) and scores its artifacts there instead of
training them twice. A shorter budget per model instead (3 epochs, session 5) left the teacher and students
unable to flag any alert on every fold: numbers that measure the budget, not the recipe."""


def build_folds(records: Sequence[LogRecord], config: ProtocolConfig) -> list[Fold]:
    folds: list[Fold] = []
    for seed in config.seeds:
        if "kfold" in config.protocols:
            folds += template_kfold(records, config.folds, seed)
        if "loco" in config.protocols:
            chosen = [f for f in leave_category_out(records, config.loco_min_lines, seed)
                      if config.loco_categories is None or f.held_out in config.loco_categories]
            folds += chosen[: config.loco_max_categories]
        if "chrono" in config.protocols:
            folds.append(chronological_fold(records, seed, config.chrono_train_fraction))
    return folds


def fold_scores(truth: Sequence[str], predicted: Sequence[str], normal: str = NORMAL_LABEL) -> dict[str, Any]:
    """The fold's metrics for one model (see the module docstring)."""
    report = classification_report(list(truth), list(predicted))
    normals = [p for t, p in zip(truth, predicted) if t == normal]
    categories: dict[str, dict[str, int]] = {}
    for t, p in zip(truth, predicted):
        if t != normal:
            row = categories.setdefault(t, {"lines": 0, "flagged": 0, "named": 0})
            row["lines"] += 1
            row["flagged"] += p != normal
            row["named"] += p == t
    return {
        "macroF1": report["macro_f1"],
        "macroF1Supported": supported_macro_f1(report),
        "alertRecall": report["alert"]["recall"] if report["alert"]["support"] else None,
        "alertF1": report["alert"]["f1"] if report["alert"]["support"] else None,
        "normalFpr": sum(p != normal for p in normals) / len(normals) if normals else None,
        "categories": categories,
    }


def agreement(predicted: Sequence[str], reference: Sequence[str], normal: str = NORMAL_LABEL) -> dict[str, Any]:
    """How far ``predicted`` keeps ``reference``'s judgement: the share of lines with its label, and the share
    of the lines it flags (any non-normal label) flagged too (None when it flags none)."""
    same = sum(p == r for p, r in zip(predicted, reference))
    flagged = [p != normal for p, r in zip(predicted, reference) if r != normal]
    return {"teacherAgreement": same / len(reference) if reference else None,
            "teacherAlertAgreement": sum(flagged) / len(flagged) if flagged else None}


def probability_distance(scored: Scored, reference: Scored) -> float:
    """Mean over lines of the total-variation distance between two models' class probabilities for the same
    lines (0: the same distribution on every line; 1: no class in common), over the union of their classes (a
    class one model lacks has probability 0 there)."""
    if len(scored.labels) != len(reference.labels):
        raise ValueError(f"{len(scored.labels)} lines scored against {len(reference.labels)}")
    if not scored.labels:
        return 0.0
    classes = list(dict.fromkeys([*reference.classes, *scored.classes]))

    def aligned(s: Scored) -> np.ndarray:
        out = np.zeros((len(s.labels), len(classes)))
        out[:, [classes.index(c) for c in s.classes]] = s.probabilities
        return out

    return float(0.5 * np.abs(aligned(scored) - aligned(reference)).sum(axis=1).mean())


def run_protocol(records: Sequence[LogRecord], folds: Sequence[Fold], models: dict[str, ModelFactory],
                 say: Callable[[str], None] = lambda message: None,
                 on_row: Callable[[dict[str, Any]], None] = lambda row: None) -> list[dict[str, Any]]:
    """Fit and score every model on every fold; one JSON-ready row per fold, each also given to ``on_row`` as
    soon as its fold is scored (a run of hours keeps what it measured if it is stopped)."""
    rows = []
    for number, fold in enumerate(folds, 1):
        train_texts = [records[i].text for i in fold.train]
        train_labels = [records[i].label for i in fold.train]
        test_texts = [records[i].text for i in fold.test]
        truth = [records[i].label for i in fold.test]
        row: dict[str, Any] = {"protocol": fold.protocol, "fold": fold.name, "seed": fold.seed,
                               "heldOut": fold.held_out, "trainLines": len(fold.train), "testLines": len(fold.test),
                               "testAlerts": sum(t != NORMAL_LABEL for t in truth), "models": {}}
        predictions: dict[str, list[str]] = {}
        scored: dict[str, Scored] = {}
        for name, factory in models.items():
            started = time.monotonic()
            try:
                model = factory(fold.seed)
                model.fit(train_texts, train_labels)
                fitted = time.monotonic()
                if isinstance(model, ScoredModel):
                    scored[name] = model.score(test_texts)
                    predicted = scored[name].labels
                else:
                    predicted = model.predict(test_texts)
            except ValueError as err:  # e.g. a training part with a single label
                row["models"][name] = {"error": str(err)}
                say(f"{fold.name}: {name}: {err}")
                continue
            predictions[name] = predicted
            scores = fold_scores(truth, predicted)
            scores.update(fitSeconds=round(fitted - started, 2), predictSeconds=round(time.monotonic() - fitted, 2))
            row["models"][name] = scores
            say(f"[{number}/{len(folds)}] {fold.protocol} {fold.name}: {name} macro-F1 {scores['macroF1']:.3f},"
                f" alert recall {_fmt(scores['alertRecall'])}, normal FPR {_fmt(scores['normalFpr'])}"
                f" ({scores['fitSeconds']:.0f} s)")
        if TEACHER in predictions:
            teacher_f1 = row["models"][TEACHER]["macroF1"]
            for name, predicted in predictions.items():
                if name != TEACHER:
                    row["models"][name].update(agreement(predicted, predictions[TEACHER]))
                    # Retention, the target: this fold's macro-F1 over the teacher's on the same fold.
                    row["models"][name]["teacherF1Ratio"] = (row["models"][name]["macroF1"] / teacher_f1
                                                             if teacher_f1 else None)
                    if name in scored and TEACHER in scored:
                        row["models"][name]["teacherDistance"] = probability_distance(scored[name], scored[TEACHER])
        rows.append(row)
        on_row(row)
    return rows


def _stats(values: list[float], worst: Callable[[list[float]], float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "worst": worst(values), "n": len(values)}


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{protocol: {model: {metric: {mean, sd, worst, n}, "fitSeconds": mean}}}`` over every (seed, fold)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for protocol in PROTOCOLS:
        chosen = [r for r in rows if r["protocol"] == protocol]
        names = list(dict.fromkeys(name for r in chosen for name in r["models"]))
        for name in names:
            scored = [r["models"][name] for r in chosen if "error" not in r["models"].get(name, {"error": ""})]
            entry: dict[str, Any] = {"folds": len(scored), "errors": len(chosen) - len(scored)}
            for metric, worst in METRICS.items():
                values = [s[metric] for s in scored if s.get(metric) is not None]
                entry[metric] = _stats(values, worst) if values else None
            entry["fitSeconds"] = statistics.fmean(s["fitSeconds"] for s in scored) if scored else None
            out.setdefault(protocol, {})[name] = entry
    return out


def per_category(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Leave-one-category-out per held-out category: ``{category: {model: {recall, fpr}}}`` with each
    a ``{mean, sd, worst, n}`` over the seeds."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row["protocol"] != "loco":
            continue
        for name, scores in row["models"].items():
            if "error" in scores:
                continue
            entry = out.setdefault(row["heldOut"], {}).setdefault(name, {"recall": [], "fpr": []})
            # The held-out category's own lines (a split that also holds out templates tests other alerts too).
            held = scores["categories"][row["heldOut"]]
            entry["recall"].append(held["flagged"] / held["lines"])
            entry["fpr"].append(scores["normalFpr"])
    return {category: {name: {"recall": _stats(v["recall"], min), "fpr": _stats(v["fpr"], max)}
                       for name, v in models.items()}
            for category, models in out.items()}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cell(stats: dict[str, Any] | None, percent: bool = False) -> str:
    if not stats:
        return "–"
    scale, digits, unit = (100.0, 2, "%") if percent else (1.0, 3, "")
    return (f"{stats['mean'] * scale:.{digits}f}{unit} ± {stats['sd'] * scale:.{digits}f}"
            f" (worst {stats['worst'] * scale:.{digits}f}{unit})")


PROTOCOL_TITLES = {"kfold": "template-disjoint k-fold", "loco": "leave-one-category-out",
                   "chrono": "chronological"}


def markdown(result: dict[str, Any]) -> str:
    """Markdown tables of a :func:`run` result: one per protocol, then the per-category LOCO table."""
    lines = []
    for protocol, models in result["summary"].items():
        folds = max((m["folds"] for m in models.values()), default=0)
        lines += [f"**{PROTOCOL_TITLES[protocol]}** ({folds} fold(s) over seeds {result['config']['seeds']};"
                  " mean ± sd (worst fold))", "",
                  "| model | macro-F1 | macro-F1, the fold's labels | macro-F1 ÷ the teacher's | alert recall"
                  " | alert F1 | normal lines flagged | agrees with the teacher (its alerts kept)"
                  " | distance to the teacher's probabilities | fit s / fold |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, m in models.items():
            failed = f" ({m['errors']} fold(s) failed: see the JSON)" if m["errors"] else ""
            kept = f" ({_cell(m['teacherAlertAgreement'])})" if m.get("teacherAlertAgreement") else ""
            agrees = _cell(m.get("teacherAgreement")) + kept if m.get("teacherAgreement") else "–"
            lines.append(f"| {name}{failed} | {_cell(m['macroF1'])} | {_cell(m.get('macroF1Supported'))} |"
                         f" {_cell(m.get('teacherF1Ratio'))} | {_cell(m['alertRecall'])} | {_cell(m['alertF1'])} |"
                         f" {_cell(m['normalFpr'], percent=True)} | {agrees} | {_cell(m.get('teacherDistance'))} |"
                         f" {_fmt(m['fitSeconds'], 1)} |")
        lines.append("")
    categories = result.get("perCategory") or {}
    if categories:
        names = list(dict.fromkeys(name for models in categories.values() for name in models))
        lines += ["**leave-one-category-out, per held-out category**: share of its lines flagged as an alert,"
                  " mean over seeds (worst); normal lines flagged, mean", "",
                  "| category (lines) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for category, models in categories.items():
            cells = []
            for name in names:
                m = models.get(name)
                cells.append("–" if m is None else f"{m['recall']['mean']:.3f} ({m['recall']['worst']:.3f});"
                                                   f" {m['fpr']['mean'] * 100:.2f}%")
            lines.append(f"| {category} ({result['categoryLines'].get(category, '?')}) | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def cheap_models() -> dict[str, ModelFactory]:
    """The baselines, fitted in seconds: TF-IDF + LR, Jaccard 1-NN, never-seen template = alert."""
    from logdistill.model.engine.baseline import JaccardNearestNeighbour, NeverSeenTemplateAlert, TfidfBaseline

    return {"TF-IDF + LR": lambda seed: TfidfBaseline(seed=seed),
            "1-NN Jaccard (token sets)": lambda seed: JaccardNearestNeighbour(),
            "never-seen template = alert": lambda seed: NeverSeenTemplateAlert()}


def run(records: Sequence[LogRecord], config: ProtocolConfig, models: dict[str, ModelFactory],
        say: Callable[[str], None] = lambda message: None,
        on_row: Callable[[dict[str, Any]], None] = lambda row: None, *,
        folds: Sequence[Fold] | None = None) -> dict[str, Any]:
    """The whole protocol: folds, fits, summary, per-category table (JSON-ready); ``on_row``: see
    :func:`run_protocol`; ``folds``: these instead of ``config``'s (the demo's own split)."""
    started = time.monotonic()
    folds = build_folds(records, config) if folds is None else list(folds)
    rows = run_protocol(records, folds, models, say, on_row)
    config_record = {**asdict(config), "seeds": list(config.seeds), "protocols": list(config.protocols)}
    return {**_result(rows, config_record, list(models), records), "wallSeconds": round(time.monotonic() - started, 1)}


def merge(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]], records: Sequence[LogRecord]) -> dict[str, Any]:
    """One result from the fold rows of several runs, ``(source, rows)`` each (a protocol of three seeds is
    hours on two cores: it can be run a seed at a time); nothing is fitted. ValueError naming the fold and
    both sources when two runs scored the same fold."""
    scored_by: dict[tuple[str, int, str], str] = {}
    rows: list[dict[str, Any]] = []
    for source, run_rows in runs:
        for row in run_rows:
            key = (row["protocol"], row["seed"], row["fold"])
            if key in scored_by:
                raise ValueError(f"fold {row['fold']!r} ({row['protocol']}) was scored by both {scored_by[key]}"
                                 f" and {source}")
            scored_by[key] = source
            rows.append(row)
    if not rows:
        raise ValueError(f"no fold rows in {', '.join(source for source, _ in runs) or 'no run'}")
    config = {"seeds": sorted({row["seed"] for row in rows}),
              "protocols": [p for p in PROTOCOLS if any(row["protocol"] == p for row in rows)],
              "mergedFrom": [source for source, _ in runs]}
    models = list(dict.fromkeys(name for row in rows for name in row["models"]))
    return _result(rows, config, models, records)


def _result(rows: list[dict[str, Any]], config: dict[str, Any], models: list[str],
            records: Sequence[LogRecord]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in records:
        if r.label is not None and r.label != NORMAL_LABEL:
            counts[r.label] = counts.get(r.label, 0) + 1
    return {"config": config, "models": models, "summary": summarise(rows), "perCategory": per_category(rows),
            "categoryLines": counts, "folds": rows}
