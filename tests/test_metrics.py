"""Metrics against hand-computed values and scikit-learn; the TF-IDF baseline on a tiny task."""

from __future__ import annotations

import random

import numpy as np
import pytest

from logdistill.model.runtime.metrics import classification_report, latency_summary
from logdistill.model.runtime.templates import mask


def test_hand_computed_report() -> None:
    y_true = ["-", "-", "-", "-", "A", "A", "B"]
    y_pred = ["-", "-", "-", "A", "A", "B", "B"]
    r = classification_report(y_true, y_pred)
    assert r["n"] == 7
    assert r["accuracy"] == pytest.approx(5 / 7)
    # "-": tp 3, predicted 3, support 4 -> p 1, r 3/4, f1 6/7
    # "A": tp 1, predicted 2, support 2 -> p 1/2, r 1/2, f1 1/2
    # "B": tp 1, predicted 2, support 1 -> p 1/2, r 1, f1 2/3
    pc = r["per_class"]
    assert pc["-"] == pytest.approx({"precision": 1.0, "recall": 0.75, "f1": 6 / 7, "support": 4})
    assert pc["A"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert pc["B"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert r["macro_f1"] == pytest.approx((6 / 7 + 1 / 2 + 2 / 3) / 3)
    assert r["weighted_f1"] == pytest.approx((4 * 6 / 7 + 2 * 1 / 2 + 1 * 2 / 3) / 7)
    assert r["confusion"] == {"labels": ["-", "A", "B"], "matrix": [[3, 1, 0], [0, 1, 1], [0, 0, 1]]}
    # Alert = not "-": truth alerts at 4,5,6; predicted alerts at 3,4,5,6 -> tp 3, fp 1, fn 0.
    assert r["alert"] == pytest.approx(
        {"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "support": 3, "tp": 3, "fp": 1, "fn": 0}
    )


def test_label_order_absent_labels_and_macro_over_present_only() -> None:
    y_true = ["-", "X", "-"]
    y_pred = ["-", "-", "Y"]
    r = classification_report(y_true, y_pred, labels=["Z", "X", "-"])
    # Listed order first; "Y" (seen, not listed) appended; "Z" listed but absent everywhere.
    assert r["confusion"]["labels"] == ["Z", "X", "-", "Y"]
    assert r["confusion"]["matrix"] == [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0]]
    assert r["per_class"]["Z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    f1_normal = 2 * 0.5 * 0.5 / (0.5 + 0.5)
    assert r["macro_f1"] == pytest.approx(f1_normal / 3)  # X, -, Y present; Z ignored
    assert r["alert"]["tp"] == 0 and r["alert"]["f1"] == 0.0


def test_all_normal_predictions_have_zero_alert_scores_not_nan() -> None:
    r = classification_report(["-", "A"], ["-", "-"])
    assert r["alert"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "tp": 0, "fp": 0, "fn": 1}
    assert r["per_class"]["A"]["precision"] == 0.0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="y_true has 2 labels but y_pred has 1"):
        classification_report(["-", "A"], ["-"])
    with pytest.raises(ValueError, match="no samples"):
        classification_report([], [])
    with pytest.raises(ValueError, match="non-string label"):
        classification_report(["-", None], ["-", "-"])  # type: ignore[list-item]


def test_matches_sklearn_on_a_random_case() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(7)
    labels = ["-", "A", "B", "C", "D"]
    y_true = [rng.choices(labels, weights=[10, 3, 2, 1, 0])[0] for _ in range(400)]
    y_pred = [t if rng.random() < 0.7 else rng.choice(labels) for t in y_true]
    r = classification_report(y_true, y_pred)
    present = sorted(set(y_true) | set(y_pred))
    assert r["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert r["macro_f1"] == pytest.approx(metrics.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert r["weighted_f1"] == pytest.approx(metrics.f1_score(y_true, y_pred, average="weighted", zero_division=0))
    p, rec, f1, support = metrics.precision_recall_fscore_support(y_true, y_pred, labels=present, zero_division=0)
    for i, label in enumerate(present):
        assert r["per_class"][label] == pytest.approx(
            {"precision": p[i], "recall": rec[i], "f1": f1[i], "support": support[i]}
        )
    assert r["confusion"]["matrix"] == metrics.confusion_matrix(y_true, y_pred, labels=present).tolist()
    binary_true = [y != "-" for y in y_true]
    binary_pred = [y != "-" for y in y_pred]
    assert r["alert"]["f1"] == pytest.approx(metrics.f1_score(binary_true, binary_pred))
    assert r["alert"]["precision"] == pytest.approx(metrics.precision_score(binary_true, binary_pred))
    assert r["alert"]["recall"] == pytest.approx(metrics.recall_score(binary_true, binary_pred))


def test_latency_summary() -> None:
    s = latency_summary([0.001, 0.002, 0.003, 0.004, 0.100])
    assert s["samples"] == 5
    assert s["latency_ms_p50"] == pytest.approx(3.0)
    assert s["latency_ms_mean"] == pytest.approx(22.0)
    # numpy linear interpolation: position 0.99 * 4 = 3.96 between 4 ms and 100 ms.
    assert s["latency_ms_p99"] == pytest.approx(4 + 0.96 * 96)
    assert latency_summary(np.full(10, 0.5))["latency_ms_p99"] == pytest.approx(500.0)
    with pytest.raises(ValueError, match="no samples"):
        latency_summary([])
    with pytest.raises(ValueError, match="non-negative"):
        latency_summary([0.1, -1.0])


# --- TF-IDF baseline --------------------------------------------------------------------------


def _tiny_task(seed: int, n: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    kinds = {
        "-": ["instruction cache parity error corrected", "generating core {n}", "job {n} started on node {id}"],
        "KERNDTLB": ["data TLB error interrupt at {hex}", "data storage interrupt on {id}"],
        "APPSEV": ["ciod: Error reading message prefix on CioStream socket to {ip}, Link has been severed"],
    }
    texts, labels = [], []
    for _ in range(n):
        label = rng.choice(list(kinds))
        pattern = rng.choice(kinds[label])
        texts.append(
            pattern.format(
                n=rng.randint(0, 10**6),
                id=f"R{rng.randint(0, 77):02d}-M{rng.randint(0, 1)}-N{rng.randint(0, 9)}",
                hex=hex(rng.randint(0, 2**32)),
                ip=".".join(str(rng.randint(0, 255)) for _ in range(4)),
            )
        )
        labels.append(label)
    return texts, labels


def test_baseline_fits_and_beats_chance() -> None:
    pytest.importorskip("sklearn")
    from logdistill.model.engine.baseline import TfidfBaseline

    train_x, train_y = _tiny_task(1, 90)
    test_x, test_y = _tiny_task(2, 60)
    model = TfidfBaseline().fit(train_x, train_y)
    assert set(model.labels) == {"-", "KERNDTLB", "APPSEV"}
    predicted = model.predict(test_x)
    assert len(predicted) == len(test_x) and set(predicted) <= set(model.labels)
    report = classification_report(test_y, predicted)
    chance = max(test_y.count(label) for label in set(test_y)) / len(test_y)
    assert report["accuracy"] > chance
    assert report["macro_f1"] >= 0.9
    assert model.predict([]) == []


def test_baseline_edge_cases() -> None:
    pytest.importorskip("sklearn")
    from logdistill.model.engine.baseline import TfidfBaseline

    with pytest.raises(RuntimeError, match="not fitted"):
        TfidfBaseline().predict(["x"])
    single = TfidfBaseline().fit(["a 1", "b 2"], ["-", "-"])
    assert single.predict(["anything", "else"]) == ["-", "-"]
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        TfidfBaseline().fit(["a", "b"], ["-"])


class _RecordingScorer:
    """Records which lines it scored, in a call log shared with the other scorers."""

    labels = ["-", "A"]
    model_input = staticmethod(mask)

    def __init__(self, name: str, calls: list[tuple[str, str]]) -> None:
        self.name, self.calls = name, calls

    def predict_proba(self, templates):
        self.calls.extend((self.name, t) for t in templates)
        return np.full((len(templates), 2), 0.5)


def test_paired_latency_alternates_whole_blocks_with_untimed_warm_up() -> None:
    from logdistill.model.engine.evaluate import paired_latency

    calls: list[tuple[str, str]] = []
    scorers = {name: _RecordingScorer(name, calls) for name in ("teacher", "student")}
    texts = [f"line {i}" for i in range(100)]
    result = paired_latency(scorers, texts, samples=20, block=5, warm=2)
    assert {name: r["samples"] for name, r in result.items()} == {"teacher": 20, "student": 20}
    # 20 timed lines at 3 per block: 7 blocks of 5 lines each, for each scorer.
    assert len(calls) == 2 * 7 * 5
    runs = [calls[i : i + 5] for i in range(0, len(calls), 5)]
    assert all(len({name for name, _ in run}) == 1 for run in runs)  # one scorer per stretch of a block
    first = [run[0][0] for run in runs[::2]]
    assert first[:3] == ["teacher", "student", "teacher"]  # the order rotates per block
    assert [text for _, text in runs[0]] == [text for _, text in runs[1]]  # both see the same lines
