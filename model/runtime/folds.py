"""Evaluation folds of ``logdistill bench quality``: three protocols a model can fail.

* :func:`template_kfold`: k folds of masked templates (no template in two folds), stratified by each
  template's majority label so that every fold holds alert templates. A category whose templates all
  fall in one fold is unseen in training for that fold: that is the point.
* :func:`leave_category_out`: one fold per alert category with enough lines; the category's lines are
  the test alerts and never trained on, beside a held-out share of the *normal templates* (so the normal
  false-positive rate is measured on normal lines the model never saw either).
* :func:`chronological_fold`: the first ``train_fraction`` of the lines train, the rest test.

Pure functions over :class:`~logdistill.model.runtime.data.LogRecord` lists, returning index lists;
stdlib only.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from logdistill.model.runtime.data import NORMAL_LABEL, LogRecord
from logdistill.model.runtime.splits import Split, majority_label, position_in
from logdistill.model.runtime.templates import mask

__all__ = ["Fold", "PROTOCOLS", "template_kfold", "leave_category_out", "chronological_fold", "categories_with",
           "split_fold"]

PROTOCOLS = ("kfold", "loco", "chrono")


@dataclass(frozen=True)
class Fold:
    """One train/test cut of the labelled lines (indices into the record list, in input order)."""

    protocol: str
    name: str
    seed: int
    train: tuple[int, ...]
    test: tuple[int, ...]
    held_out: str | None = None
    """The alert category left out (``loco`` only)."""


def _templates_by_label(records: Sequence[LogRecord]) -> tuple[list[str], dict[str | None, list[str]]]:
    keys = [mask(r.text) for r in records]
    lines: dict[str, list[str | None]] = defaultdict(list)
    for key, record in zip(keys, records):
        lines[key].append(record.label)
    by_label: dict[str | None, list[str]] = defaultdict(list)
    for key, labels in lines.items():
        by_label[majority_label(labels)].append(key)
    return keys, by_label


def _shuffled(templates: list[str], seed: int, label: str | None) -> list[str]:
    ordered = sorted(templates)  # independent of input order before the seeded shuffle
    random.Random(f"{seed}:{label}").shuffle(ordered)
    return ordered


def template_kfold(records: Sequence[LogRecord], k: int, seed: int, normal: str = NORMAL_LABEL) -> list[Fold]:
    """``k`` template-disjoint folds; each fold is the test part once, the other folds train.

    Templates are dealt round-robin per label (labels in name order, templates shuffled by ``seed``),
    continuing the deal across labels, separately for alert and normal templates: every fold gets
    ``⌊alert templates / k⌋`` or one more alert template, and a category with a single template lands in
    a different fold per seed. Unlabelled lines are left out. Raises ValueError with fewer alert
    templates than folds (a fold without alerts measures nothing about alerts).
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    labelled = [i for i, r in enumerate(records) if r.label is not None]
    keys, by_label = _templates_by_label([records[i] for i in labelled])
    alerts = sorted(label for label in by_label if label is not None and label != normal)
    n_alert = sum(len(by_label[label]) for label in alerts)
    if n_alert < k:
        raise ValueError(f"{n_alert} alert template(s) for {k} folds: every fold needs one; use fewer folds")
    fold_of: dict[str, int] = {}
    for group in (alerts, [normal] if normal in by_label else []):
        dealt = random.Random(f"{seed}:offset:{group[:1]}").randrange(k) if group else 0
        for label in group:
            for template in _shuffled(by_label[label], seed, label):
                fold_of[template] = dealt % k
                dealt += 1
    folds = []
    for f in range(k):
        test = tuple(i for i, key in zip(labelled, keys) if fold_of[key] == f)
        train = tuple(i for i, key in zip(labelled, keys) if fold_of[key] != f)
        folds.append(Fold("kfold", f"seed {seed} fold {f + 1}/{k}", seed, train, test))
    return folds


def categories_with(records: Sequence[LogRecord], min_lines: int, normal: str = NORMAL_LABEL) -> list[str]:
    """Alert categories with at least ``min_lines`` lines, most lines first (ties by name)."""
    counts = Counter(r.label for r in records if r.label is not None and r.label != normal)
    return sorted((label for label, n in counts.items() if n >= min_lines), key=lambda label: (-counts[label], label))


def leave_category_out(records: Sequence[LogRecord], min_lines: int, seed: int, *, normal_test_fraction: float = 0.2,
                       normal: str = NORMAL_LABEL) -> list[Fold]:
    """One fold per alert category of :func:`categories_with`: its lines are the test alerts (never in
    train), with the lines of a seeded ``normal_test_fraction`` of the normal templates; every other line
    trains (the other alert categories whole)."""
    if not 0.0 < normal_test_fraction < 1.0:
        raise ValueError(f"normal_test_fraction must be in (0, 1), got {normal_test_fraction}")
    labelled = [i for i, r in enumerate(records) if r.label is not None]
    keys, by_label = _templates_by_label([records[i] for i in labelled])
    normal_templates = _shuffled(by_label.get(normal, []), seed, normal)
    held_normal = set(normal_templates[:max(1, round(len(normal_templates) * normal_test_fraction))])
    folds = []
    for category in categories_with(records, min_lines, normal):
        test, train = [], []
        for i, key in zip(labelled, keys):
            label = records[i].label
            if label == category or (label == normal and key in held_normal):
                test.append(i)
            elif key not in held_normal:  # an alert line of a held-out normal template stays out of both
                train.append(i)
        folds.append(Fold("loco", f"seed {seed} without {category}", seed, tuple(train), tuple(test), category))
    return folds


def chronological_fold(records: Sequence[LogRecord], seed: int, train_fraction: float = 0.8) -> Fold:
    """The first ``train_fraction`` of the labelled lines (input order) train, the rest test."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    labelled = [i for i, r in enumerate(records) if r.label is not None]
    cut = int(len(labelled) * train_fraction + 0.5)
    return Fold("chrono", f"seed {seed} first {train_fraction:.0%} / last {1 - train_fraction:.0%}", seed,
                tuple(labelled[:cut]), tuple(labelled[cut:]))


def split_fold(records: Sequence[LogRecord], split: Split, seed: int, held_out: str) -> Fold:
    """The leave-one-category-out fold of a :class:`~logdistill.model.runtime.splits.Split` of ``records`` that
    holds ``held_out`` out (``data.holdOutLabels``, as the demo's split does): its test lines test, every other
    labelled line trains (each model caps and splits its training lines itself). Models trained on the split
    itself (the demo's teacher and student) are then scored with the baselines on the same lines."""
    test = sorted(map(position_in(records), split.test))
    tested = set(test)
    train = tuple(i for i, r in enumerate(records) if r.label is not None and i not in tested)
    return Fold("loco", f"seed {seed} without {held_out} (the split's held-out templates too)", seed, train,
                tuple(test), held_out)
