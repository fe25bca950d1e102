"""Classification and latency metrics (numpy only, JSON-ready dicts).

Conventions (as scikit-learn with ``zero_division=0``): a class never predicted has precision
0, a class absent from ``y_true`` has recall 0, and F1 is 0 where precision + recall is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from logdistill.model.runtime.data import NORMAL_LABEL

__all__ = ["classification_report", "supported_macro_f1", "latency_summary", "alert_scores"]


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return _safe_div(2 * precision * recall, precision + recall)


def _check(y_true: Sequence[str], y_pred: Sequence[str]) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    if not len(y_true):
        raise ValueError("no samples to score")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if any(not isinstance(v, str) for v in values):
            raise ValueError(f"{name} holds a non-string label (unlabelled lines cannot be scored)")


def alert_scores(y_true: Sequence[str], y_pred: Sequence[str], normal: str = NORMAL_LABEL) -> dict:
    """Binary alert detection: any label other than ``normal`` is an alert (the category need not match)."""
    truth = np.array([y != normal for y in y_true])
    pred = np.array([y != normal for y in y_pred])
    tp = int(np.sum(truth & pred))
    fp = int(np.sum(~truth & pred))
    fn = int(np.sum(truth & ~pred))
    precision = float(_safe_div(tp, tp + fp))
    recall = float(_safe_div(tp, tp + fn))
    return {
        "precision": precision,
        "recall": recall,
        "f1": float(_f1(np.float64(precision), np.float64(recall))),
        "support": int(truth.sum()),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def classification_report(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> dict:
    """Accuracy, macro/weighted F1, per-class scores, confusion matrix and alert scores.

    ``labels`` fixes the order of ``per_class`` and of the confusion matrix (e.g. the model's
    label list); labels seen in the data but not listed are appended (sorted), never dropped.
    ``macro_f1`` averages over the labels present in ``y_true`` or ``y_pred`` only, so a model
    label absent from a small test set does not count as a zero. ``weighted_f1`` weights each
    label by its support in ``y_true``.
    """
    _check(y_true, y_pred)
    seen = set(y_true) | set(y_pred)
    order = list(dict.fromkeys(labels)) if labels is not None else []
    order += sorted(seen.difference(order))
    index = {label: i for i, label in enumerate(order)}
    k = len(order)

    t = np.fromiter((index[y] for y in y_true), dtype=np.int64, count=len(y_true))
    p = np.fromiter((index[y] for y in y_pred), dtype=np.int64, count=len(y_pred))
    confusion = np.bincount(t * k + p, minlength=k * k).reshape(k, k)  # rows: truth, columns: prediction

    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _f1(precision, recall)

    present = (support > 0) | (predicted > 0)
    n = len(y_true)
    return {
        "n": n,
        "accuracy": float(tp.sum() / n),
        "macro_f1": float(f1[present].mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(order)
        },
        "confusion": {"labels": order, "matrix": confusion.tolist()},
        "alert": alert_scores(y_true, y_pred),
    }


def supported_macro_f1(report: dict[str, Any]) -> float:
    """Macro-F1 of a :func:`classification_report` over the labels with test support only: a spurious prediction
    of a label absent from the test lines still costs its true label's recall, but does not add a zero F1 (on a
    fold of ~1,700 lines, one such line moves the plain macro-F1 by a sixth)."""
    values = [row["f1"] for row in report["per_class"].values() if row["support"] > 0]
    return float(sum(values) / len(values)) if values else 0.0


def latency_summary(seconds: Sequence[float]) -> dict:
    """Median, 99th percentile (linear interpolation) and mean of per-call latencies, in milliseconds."""
    values = np.asarray(seconds, dtype=float)
    if values.size == 0:
        raise ValueError("latency_summary: no samples")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("latency_summary: latencies must be finite and non-negative")
    ms = values * 1000.0
    return {
        "latency_ms_p50": float(np.percentile(ms, 50)),
        "latency_ms_p99": float(np.percentile(ms, 99)),
        "latency_ms_mean": float(ms.mean()),
        "samples": int(values.size),
    }
