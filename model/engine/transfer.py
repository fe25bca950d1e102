"""The distillation transfer set: what the student trains on, and what the teacher labels.

The distinct train inputs of the split (the teacher's model input of each line: the masked template
or the lightly masked line; one example per distinct (input, label)),
then, when distilling, augmented unlabelled variants (:mod:`logdistill.model.engine.augment`) of the
split's own train inputs that never equal a dev or test template. ``logdistill distill`` and
``logdistill label`` both build it here, so label shards and the trainer agree on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from logdistill.model.engine.augment import augment_templates, without_evaluation_templates
from logdistill.model.engine.losses import UNLABELLED
from logdistill.model.runtime.data import LogRecord
from logdistill.model.runtime.splits import Split
from logdistill.model.engine.teacher import distinct_pairs
from logdistill.model.runtime.templates import mask

__all__ = ["TransferSet", "transfer_set"]


@dataclass(frozen=True)
class TransferSet:
    """What the student trains on: ``templates[i]`` with hard target ``targets[i]`` (or UNLABELLED)."""

    train_templates: list[str]
    augmented: list[str]
    templates: list[str]
    targets: list[int]
    unknown_labels: list[str]


def transfer_set(split: Split, labels: Sequence[str], *, distil: bool, augment_per_template: int,
                 seed: int, key: Callable[[str], str] = mask,
                 augment_from: Sequence[LogRecord] | None = None) -> TransferSet:
    """The distillation transfer set of ``split``: distinct (input, label) train pairs (``key``: a raw
    line's model input), then (when distilling) augmented unlabelled variants of the inputs of
    ``augment_from`` (default: every train line). Deterministic for a split and seed.

    ``augment_from``: the train lines before ``--extra-data``. Extra lines are new inputs already, and
    augmenting thousands of them (other systems' logs) multiplied the transfer set, and the steps, by 10.
    """
    index = {label: i for i, label in enumerate(labels)}
    pairs = distinct_pairs([key(r.text) for r in split.train], [r.label for r in split.train])
    train_templates = [t for t, _ in pairs]
    targets = [index.get(label, UNLABELLED) if label is not None else UNLABELLED for _, label in pairs]
    unknown = sorted({r.label for r in split.train if r.label is not None and r.label not in index})
    sources = train_templates if augment_from is None else [key(r.text) for r in augment_from]  # deduplicated there
    augmented = augment_templates(sources, augment_per_template if distil else 0, seed)
    augmented = without_evaluation_templates(augmented, split, key)  # no dev/test line leaks into training
    templates = train_templates + augmented
    targets = targets + [UNLABELLED] * len(augmented)
    if not distil:
        keep = [i for i, t in enumerate(targets) if t != UNLABELLED]
        templates, targets = [templates[i] for i in keep], [targets[i] for i in keep]
    return TransferSet(train_templates, augmented, templates, targets, unknown)
