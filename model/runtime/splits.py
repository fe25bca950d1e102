"""Train/dev/test splits that make sense for logs.

Log lines repeat their template heavily (BGL_20k: 98.6% of lines repeat an earlier masked
message), so a random split puts the same template on both sides and every model scores
1.0. :func:`template_split` keeps every masked template in one part only;
:func:`chronological_split` cuts by input order. Stdlib only.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from logdistill.model.runtime.data import NORMAL_LABEL, DataError, LogRecord, label_counts
from logdistill.model.runtime.templates import mask

if TYPE_CHECKING:
    from logdistill.spec import DataSpec

__all__ = [
    "Split",
    "template_split",
    "chronological_split",
    "cap_per_template",
    "fold_rare_labels",
    "make_split",
    "training_split",
    "leave_label_out",
    "position_in",
    "majority_label",
]

PARTS = ("train", "dev", "test")


@dataclass
class Split:
    """Three parts, each in input order."""

    train: list[LogRecord]
    dev: list[LogRecord]
    test: list[LogRecord]

    def parts(self) -> dict[str, list[LogRecord]]:
        return {"train": self.train, "dev": self.dev, "test": self.test}

    def describe(self) -> dict:
        """``{part: {"lines", "templates", "unlabelled", "labels": {label: lines}}}`` (JSON-ready)."""
        out = {}
        for name, records in self.parts().items():
            out[name] = {
                "lines": len(records),
                "templates": len({mask(r.text) for r in records}),
                "unlabelled": sum(1 for r in records if r.label is None),
                "labels": label_counts(records),
            }
        return out


def _check_fractions(test_fraction: float, dev_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if not 0.0 <= dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    if test_fraction + dev_fraction >= 1.0:
        raise ValueError(f"test_fraction + dev_fraction must be below 1, got {test_fraction + dev_fraction}")


def _group_by(records: Sequence[LogRecord], key: Callable[[str], str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        groups[key(record.text)].append(index)
    return groups


def majority_label(labels: Sequence[str | None]) -> str | None:
    """Most frequent label of the labelled lines (ties: smallest name, so ``-`` wins a tie); None if none is labelled."""
    counts = Counter(label for label in labels if label is not None)
    if not counts:
        return None
    return min(counts, key=lambda label: (-counts[label], label))


def _part_sizes(n: int, test_fraction: float, dev_fraction: float) -> tuple[int, int]:
    """(test, dev) template counts for a label with ``n`` templates."""
    if n < 2:
        return 0, 0
    n_test = max(1, int(n * test_fraction + 0.5))
    n_dev = max(1, int(n * dev_fraction + 0.5)) if n >= 3 and dev_fraction > 0 else 0
    # Keep at least one template for training; shrink the larger held-out part first.
    while n_test + n_dev > n - 1:
        if n_dev > 1 and n_dev >= n_test:
            n_dev -= 1
        elif n_test > 1:
            n_test -= 1
        else:
            n_dev -= 1
    return n_test, n_dev


def template_split(records: Sequence[LogRecord], test_fraction: float, dev_fraction: float, seed: int) -> Split:
    """No masked template in two parts; stratified by each template's majority label.

    For each label its templates are shuffled (seeded per label, so adding a label does not
    move the others) and cut by the fractions, counted in templates. A label with at least 2
    templates gets one or more in train and in test, with at least 3 also in dev; a label with
    a single template goes to train (it cannot be both learned and evaluated).
    """
    _check_fractions(test_fraction, dev_fraction)
    templates_of = [mask(r.text) for r in records]
    groups: dict[str, list[int]] = defaultdict(list)
    for index, template in enumerate(templates_of):
        groups[template].append(index)
    by_label: dict[str | None, list[str]] = defaultdict(list)
    for template, indices in groups.items():
        by_label[majority_label([records[i].label for i in indices])].append(template)

    part_of: dict[str, str] = {}
    for label, templates in by_label.items():
        templates.sort()  # independent of input order before the seeded shuffle
        random.Random(f"{seed}:{label}").shuffle(templates)
        n_test, n_dev = _part_sizes(len(templates), test_fraction, dev_fraction)
        for position, template in enumerate(templates):
            part_of[template] = "test" if position < n_test else "dev" if position < n_test + n_dev else "train"

    parts: dict[str, list[LogRecord]] = {name: [] for name in PARTS}
    for record, template in zip(records, templates_of):
        parts[part_of[template]].append(record)
    return Split(**parts)


def chronological_split(records: Sequence[LogRecord], test_fraction: float, dev_fraction: float) -> Split:
    """By input order: the first lines train, the next dev, the last test."""
    _check_fractions(test_fraction, dev_fraction)
    n = len(records)
    n_test = int(n * test_fraction + 0.5)
    n_dev = int(n * dev_fraction + 0.5)
    n_train = max(0, n - n_test - n_dev)
    return Split(
        train=list(records[:n_train]),
        dev=list(records[n_train : n_train + n_dev]),
        test=list(records[n_train + n_dev :]),
    )


def cap_per_template(records: Sequence[LogRecord], max_per_template: int, seed: int,
                     key: Callable[[str], str] = mask) -> list[LogRecord]:
    """Keep at most ``max_per_template`` lines per masked template (or per distinct ``key``, e.g. the
    model's input when it is not the template), chosen by a seeded draw, in input order."""
    if max_per_template < 1:
        raise ValueError(f"max_per_template must be at least 1, got {max_per_template}")
    rng = random.Random(seed)
    keep: set[int] = set()
    for indices in _group_by(records, key).values():  # first-appearance order: deterministic
        keep.update(indices if len(indices) <= max_per_template else rng.sample(indices, max_per_template))
    return [record for index, record in enumerate(records) if index in keep]


def fold_rare_labels(records: Sequence[LogRecord], min_class_lines: int) -> list[LogRecord]:
    """Relabel lines of labels with fewer than ``min_class_lines`` lines as :data:`NORMAL_LABEL`."""
    counts = label_counts(records)
    rare = {label for label, count in counts.items() if count < min_class_lines and label != NORMAL_LABEL}
    if not rare:
        return list(records)
    return [replace(r, label=NORMAL_LABEL) if r.label in rare else r for r in records]


def make_split(records: Sequence[LogRecord], data_spec: "DataSpec", seed: int,
               key: Callable[[str], str] = mask) -> Split:
    """The split ``data_spec`` asks for, with rare labels folded and train/dev capped per template
    (per distinct ``key``, e.g. a model input other than the template).

    Rare labels are folded first (counted over all lines) so the stratification sees the labels
    the model will learn. The test part keeps every line, so its distribution is the real one.
    """
    if data_spec.hold_out_labels:
        return _holding_out(records, data_spec, seed, key)
    records = fold_rare_labels(records, data_spec.min_class_lines)
    if data_spec.split == "template":
        split = template_split(records, data_spec.test_fraction, data_spec.dev_fraction, seed)
    else:
        split = chronological_split(records, data_spec.test_fraction, data_spec.dev_fraction)
    return Split(
        train=cap_per_template(split.train, data_spec.max_per_template, seed, key),
        dev=cap_per_template(split.dev, data_spec.max_per_template, seed + 1, key),
        test=split.test,
    )


def training_split(records: Sequence[LogRecord], data_spec: "DataSpec", seed: int,
                   key: Callable[[str], str] = mask) -> Split:
    """Train and dev parts of lines that are *all* for training (e.g. one fold of a benchmark): rare
    labels folded, a template-disjoint dev part of ``data_spec.dev_fraction`` of the templates for early
    stopping, both capped per ``key`` (default the template) as :func:`make_split` does; no test part."""
    records = fold_rare_labels(records, data_spec.min_class_lines)
    inner = template_split(records, data_spec.dev_fraction, 0.0, seed)
    return Split(train=cap_per_template(inner.train, data_spec.max_per_template, seed, key),
                 dev=cap_per_template(inner.test, data_spec.max_per_template, seed + 1, key), test=[])


def position_in(records: Sequence[LogRecord]) -> Callable[[LogRecord], int]:
    """Where a record (or a copy of it: folding rare labels makes new records) was read in ``records``."""
    position = {(r.source, r.line, r.text): i for i, r in enumerate(records)}
    return lambda record: position[(record.source, record.line, record.text)]


def leave_label_out(records: Sequence[LogRecord], label: str, data_spec: "DataSpec", seed: int) -> Split:
    """:func:`make_split` without any line of ``label`` in train or dev; all its lines join test.

    Measures what a model does with an alert category it never saw: the alert recall on those
    lines (predicting any other alert still counts as an alert).
    """
    held = [*data_spec.hold_out_labels, label]
    return make_split(records, data_spec.model_copy(update={"hold_out_labels": held}), seed)


def _holding_out(records: Sequence[LogRecord], data_spec: "DataSpec", seed: int, key: Callable[[str], str]) -> Split:
    """:func:`make_split` of the other lines, with every line of ``data_spec.hold_out_labels`` added to test."""
    labels = set(data_spec.hold_out_labels)
    if NORMAL_LABEL in labels:
        raise DataError(f"data.holdOutLabels: the normal label {NORMAL_LABEL!r} cannot be held out")
    present = {r.label for r in records}
    missing = sorted(labels - present)
    if missing:
        raise DataError(f"data.holdOutLabels: no line has label {', '.join(map(repr, missing))}")
    held = [r for r in records if r.label in labels]
    split = make_split([r for r in records if r.label not in labels],
                       data_spec.model_copy(update={"hold_out_labels": []}), seed, key)
    test = sorted(split.test + held, key=position_in(records))
    return Split(train=split.train, dev=split.dev, test=test)
