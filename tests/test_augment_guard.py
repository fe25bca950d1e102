"""Augmented transfer lines never equal a dev or test template."""

from __future__ import annotations

from logdistill.model.engine.augment import augment_templates, without_evaluation_templates
from logdistill.model.runtime.data import LogRecord
from logdistill.model.engine.transfer import transfer_set
from logdistill.model.engine.losses import UNLABELLED
from logdistill.model.runtime.splits import Split

TRAIN = ["ciod: failed to read message prefix on control stream", "ciod: error loading program image file"]


def _split(dev: list[str], test: list[str]) -> Split:
    def records(texts: list[str], label: str | None) -> list[LogRecord]:
        return [LogRecord(text=t, label=label, source="t", line=i + 1) for i, t in enumerate(texts)]

    return Split(train=records(TRAIN, "-"), dev=records(dev, "-"), test=records(test, None))


def test_a_colliding_augmented_line_is_dropped_from_the_transfer_set():
    augmented = augment_templates(TRAIN, 30, seed=3)
    leak_dev, leak_test = augmented[0], augmented[5]  # lines the augmenter really makes
    split = _split(dev=[leak_dev, "something else"], test=[leak_test])
    transfer = transfer_set(split, ["-"], distil=True, augment_per_template=30, seed=3)
    assert leak_dev not in transfer.templates and leak_test not in transfer.templates
    assert set(transfer.augmented) == set(augmented) - {leak_dev, leak_test}
    assert transfer.targets[len(transfer.train_templates):] == [UNLABELLED] * len(transfer.augmented)


def test_the_guard_keeps_order_and_everything_else():
    split = _split(dev=["b"], test=["d"])
    assert without_evaluation_templates(["a", "b", "c", "d", "e"], split) == ["a", "c", "e"]


def test_extra_lines_join_the_transfer_set_unaugmented_and_leave_the_base_augmentation_as_it_was():
    """``--extra-data`` lines (e.g. thousands of other systems' lines) are new inputs: the teacher labels
    each, but only the split's own inputs are augmented, so the transfer set grows by the extra lines
    and not ninefold; and the augmented lines are those of the base split, which label shards cover."""
    base = _split(dev=["x"], test=["y"])
    extra = [LogRecord(text=f"kernel {word} panic on cpu", label=None, source="e", line=i + 1)
             for i, word in enumerate(("soft", "hard", "late"))]
    extended = Split(train=[*base.train, *extra], dev=base.dev, test=base.test)
    before = transfer_set(base, ["-"], distil=True, augment_per_template=8, seed=3)
    after = transfer_set(extended, ["-"], distil=True, augment_per_template=8, seed=3, augment_from=base.train)
    assert after.train_templates == before.train_templates + [r.text for r in extra]
    assert after.augmented == before.augmented and len(before.augmented) > 0
    assert after.templates == after.train_templates + before.augmented
    everything = transfer_set(extended, ["-"], distil=True, augment_per_template=8, seed=3)
    assert len(everything.augmented) > len(before.augmented)  # what augment_from prevents
