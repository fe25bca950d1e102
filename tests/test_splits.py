"""Splits: template-disjoint and stratified, chronological, per-template caps, the spec-driven split."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from logdistill.model.runtime.data import NORMAL_LABEL, LogRecord, bundled_sample, read_logs
from logdistill.model.runtime.splits import (
    Split,
    cap_per_template,
    chronological_split,
    fold_rare_labels,
    leave_label_out,
    make_split,
    majority_label,
    template_split,
)
from logdistill.model.runtime.templates import mask
from logdistill.spec import DataSpec, parse_spec

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def synthetic(templates_per_label: dict[str, int], lines_per_template: int = 5) -> list[LogRecord]:
    """Lines whose masked templates are distinct per (label, index); variables differ per line."""
    records = []
    line = 0
    for repeat in range(lines_per_template):
        for label, count in templates_per_label.items():
            for t in range(count):
                words = f"{WORDS[t % len(WORDS)]} {WORDS[(t // len(WORDS)) % len(WORDS)]}"
                text = f"{label.lower()} {words} event value {repeat * 7 + t} at 10.0.{repeat}.{t % 250}"
                line += 1
                records.append(LogRecord(text=text, label=label, source="synthetic", line=line))
    return records


def templates_of(records: list[LogRecord]) -> set[str]:
    return {mask(r.text) for r in records}


def template_labels(records: list[LogRecord]) -> dict[str, Counter]:
    out: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        out[r.label][mask(r.text)] += 1
    return out


RECORDS = synthetic({"-": 40, "BIG": 12, "THREE": 3, "TWO": 2, "ONE": 1})


def test_synthetic_fixture_has_the_intended_templates() -> None:
    counts = {label: len(t) for label, t in template_labels(RECORDS).items()}
    assert counts == {"-": 40, "BIG": 12, "THREE": 3, "TWO": 2, "ONE": 1}


def test_template_split_is_disjoint_complete_and_ordered() -> None:
    split = template_split(RECORDS, 0.2, 0.1, seed=13)
    train, dev, test = templates_of(split.train), templates_of(split.dev), templates_of(split.test)
    assert not train & dev and not train & test and not dev & test
    assert sorted(r.line for r in split.train + split.dev + split.test) == [r.line for r in RECORDS]
    for part in (split.train, split.dev, split.test):
        assert [r.line for r in part] == sorted(r.line for r in part)


def test_template_split_stratifies_by_label() -> None:
    split = template_split(RECORDS, 0.2, 0.1, seed=13)
    per_part = {name: template_labels(part) for name, part in split.parts().items()}
    n = {name: {label: len(t) for label, t in labels.items()} for name, labels in per_part.items()}
    # 40 normal templates: 8 test, 4 dev, 28 train; 12 BIG: round(2.4)=2 test, round(1.2)=1 dev.
    assert (n["train"]["-"], n["dev"]["-"], n["test"]["-"]) == (28, 4, 8)
    assert (n["train"]["BIG"], n["dev"]["BIG"], n["test"]["BIG"]) == (9, 1, 2)
    assert (n["train"]["THREE"], n["dev"]["THREE"], n["test"]["THREE"]) == (1, 1, 1)
    assert (n["train"]["TWO"], n["test"]["TWO"]) == (1, 1) and "TWO" not in n["dev"]
    assert n["train"]["ONE"] == 1 and "ONE" not in n["dev"] and "ONE" not in n["test"]


def test_template_split_is_deterministic_per_seed() -> None:
    a = template_split(RECORDS, 0.2, 0.1, seed=13)
    b = template_split(list(RECORDS), 0.2, 0.1, seed=13)
    assert a == b
    others = [template_split(RECORDS, 0.2, 0.1, seed=s) for s in range(1, 6)]
    assert any(templates_of(o.test) != templates_of(a.test) for o in others)


def test_template_split_does_not_depend_on_unrelated_labels() -> None:
    """Per-label seeding: adding a new label does not move the templates of the others."""
    base = template_split(RECORDS, 0.2, 0.1, seed=3)
    more = template_split(RECORDS + synthetic({"NEW": 6}), 0.2, 0.1, seed=3)
    assert templates_of(base.test) <= templates_of(more.test)
    assert templates_of(more.test) - templates_of(base.test) == templates_of([r for r in more.test if r.label == "NEW"])


def test_a_mixed_template_follows_its_majority_label() -> None:
    records = [LogRecord(f"shared message {i}", "-" if i < 3 else "ALERT", "s", i) for i in range(5)]
    records += [LogRecord(f"alert message {i} kind {k}", "ALERT", "s", 10 + i) for i in range(2) for k in "ab"]
    split = template_split(records, 0.5, 0.0, seed=1)
    # Majority "-": the normal label's only template, so it trains; ALERT's two templates split 1/1.
    assert "shared message <NUM>" in templates_of(split.train)
    assert len(templates_of(split.test)) == 1 and {r.label for r in split.test} == {"ALERT"}
    assert majority_label(["-", "-", "A", "A", None, None, None]) == "-"
    assert majority_label(["B", "A", "B"]) == "B"
    assert majority_label([None, None]) is None


def test_invalid_fractions_are_refused() -> None:
    for test_fraction, dev_fraction in [(0.0, 0.1), (1.0, 0.0), (0.6, 0.5), (0.2, -0.1)]:
        with pytest.raises(ValueError, match="fraction"):
            template_split(RECORDS, test_fraction, dev_fraction, seed=0)
        with pytest.raises(ValueError, match="fraction"):
            chronological_split(RECORDS, test_fraction, dev_fraction)


def test_chronological_split_keeps_input_order() -> None:
    records = [LogRecord(f"line {i}", "-", "s", i + 1) for i in range(100)]
    split = chronological_split(records, 0.2, 0.1)
    assert [len(split.train), len(split.dev), len(split.test)] == [70, 10, 20]
    assert split.train + split.dev + split.test == records
    assert split.train[-1].line < split.dev[0].line < split.test[0].line


def test_cap_per_template_keeps_at_most_n_in_order() -> None:
    capped = cap_per_template(RECORDS, 2, seed=5)
    per_template = Counter(mask(r.text) for r in capped)
    assert set(per_template) == templates_of(RECORDS)  # no template lost
    assert max(per_template.values()) == 2
    assert [r.line for r in capped] == sorted(r.line for r in capped)
    assert set(capped) <= set(RECORDS)
    assert cap_per_template(RECORDS, 2, seed=5) == capped
    assert any(cap_per_template(RECORDS, 2, seed=s) != capped for s in range(6, 10))
    assert cap_per_template(RECORDS, 100, seed=5) == RECORDS
    with pytest.raises(ValueError, match="max_per_template"):
        cap_per_template(RECORDS, 0, seed=5)


def test_fold_rare_labels_into_normal() -> None:
    folded = fold_rare_labels(RECORDS, min_class_lines=10)  # ONE has 5 lines, TWO has 10
    assert Counter(r.label for r in folded)["ONE"] == 0
    assert Counter(r.label for r in folded)["TWO"] == 10
    assert sum(1 for r in folded if r.label == NORMAL_LABEL) == 40 * 5 + 5
    assert [r.text for r in folded] == [r.text for r in RECORDS]


def test_make_split_caps_train_and_dev_but_not_test() -> None:
    spec = DataSpec(max_per_template=2, min_class_lines=6)
    split = make_split(RECORDS, spec, seed=13)
    folded = fold_rare_labels(RECORDS, 6)
    full = template_split(folded, spec.test_fraction, spec.dev_fraction, 13)
    assert split.test == full.test  # every test line kept: the real distribution
    assert templates_of(split.train) == templates_of(full.train)
    assert max(Counter(mask(r.text) for r in split.train + split.dev).values()) == 2
    assert "ONE" not in {r.label for r in split.train + split.dev + split.test}
    described = split.describe()
    assert described["test"]["lines"] == len(full.test)
    assert described["train"]["templates"] == len(templates_of(full.train))
    assert described["train"]["lines"] == 2 * described["train"]["templates"]
    assert sum(described["test"]["labels"].values()) == len(full.test)


def test_make_split_chronological() -> None:
    spec = DataSpec(split="chronological", max_per_template=1000, test_fraction=0.25, dev_fraction=0.25)
    split = make_split(RECORDS, spec, seed=0)
    assert split == chronological_split(RECORDS, 0.25, 0.25)


def test_bundled_bgl_template_split() -> None:
    """The default data: disjoint, and the alert classes with several templates reach test."""
    records = read_logs(bundled_sample()).records
    split = template_split(records, 0.2, 0.1, seed=13)
    assert not templates_of(split.train) & templates_of(split.test)
    assert not templates_of(split.dev) & templates_of(split.test)
    d = split.describe()
    assert d["train"]["lines"] + d["dev"]["lines"] + d["test"]["lines"] == len(records)
    assert {"KERNTERM", "APPSEV", "KERNREC"} <= set(d["test"]["labels"])
    assert {"KERNTERM", "APPSEV", "KERNREC"} <= set(d["dev"]["labels"])
    assert d["train"]["labels"]["KERNDTLB"] == 696  # one template only: all of it trains
    assert isinstance(split, Split)


def test_leave_label_out_puts_every_line_of_the_label_in_test_only() -> None:
    spec = DataSpec(max_per_template=3)
    split = leave_label_out(RECORDS, "BIG", spec, seed=13)
    assert "BIG" not in {r.label for r in split.train + split.dev}
    assert [r for r in split.test if r.label == "BIG"] == [r for r in RECORDS if r.label == "BIG"]
    rest = make_split([r for r in RECORDS if r.label != "BIG"], spec, seed=13)
    assert split.train == rest.train and split.dev == rest.dev
    assert [r for r in split.test if r.label != "BIG"] == rest.test
    assert [r.line for r in split.test] == sorted(r.line for r in split.test)
    folded = leave_label_out(RECORDS, "BIG", DataSpec(min_class_lines=6), seed=13)
    assert "ONE" not in {r.label for r in folded.train + folded.dev + folded.test}
    assert sum(r.label == "BIG" for r in folded.test) == 12 * 5
    with pytest.raises(ValueError, match="no line has label 'NOPE'"):
        leave_label_out(RECORDS, "NOPE", spec, seed=13)
    with pytest.raises(ValueError, match="normal label"):
        leave_label_out(RECORDS, NORMAL_LABEL, spec, seed=13)


def test_hold_out_labels_keep_categories_out_of_training_and_name_the_field() -> None:
    spec = DataSpec(max_per_template=3, hold_out_labels=["BIG"])
    split = make_split(RECORDS, spec, seed=13)
    assert split == leave_label_out(RECORDS, "BIG", DataSpec(max_per_template=3), seed=13)
    assert "BIG" not in {r.label for r in split.train + split.dev}
    assert sum(r.label == "BIG" for r in split.test) == sum(r.label == "BIG" for r in RECORDS)
    with pytest.raises(ValueError, match=r"data.holdOutLabels: no line has label 'NOPE'"):
        make_split(RECORDS, DataSpec(hold_out_labels=["BIG", "NOPE"]), seed=13)
    with pytest.raises(ValueError, match=r"data.holdOutLabels: the normal label"):
        make_split(RECORDS, DataSpec(hold_out_labels=[NORMAL_LABEL]), seed=13)
    assert parse_spec({"holdOutLabels": ["BIG"]}, DataSpec).hold_out_labels == ["BIG"]
