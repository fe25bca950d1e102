"""What a teacher answer may do at the edge: the one place its answers are checked.

The teacher is another process across the network; its answers decide what the edge caches and
serves. So each one is checked before use (:func:`validate_results`, :func:`validate_answer`):
a label of the served model's label set, a finite score within [0, 1], the expected shape. A
failed check is a :class:`Rejection` with a reason of the closed set :data:`REJECTION_REASONS`
(the metric's label values). The response-level reasons (``too_large``, ``not_json``,
``timeout``) are raised by the HTTP read in :mod:`logdistill.edge.escalation`.

An alert is never turned into "normal" silently (:func:`downgrade_action`): with the policy
``refuse`` (the default) the served alert stands and the disagreement is recorded; with
``record`` the teacher's "normal" is served and written as a correction.

Pure: no I/O, no clock, no metrics.
"""

from __future__ import annotations

import math
from typing import Any, Collection, NamedTuple

__all__ = ["TeacherAnswer", "Rejection", "REJECTION_REASONS", "RESPONSE_REJECTIONS", "DOWNGRADE_POLICIES",
           "DOWNGRADE_ACTIONS", "DEFAULT_MAX_ANSWER_BYTES", "DEFAULT_TAUGHT_TTL_S", "MAX_VERSION_CHARS",
           "validate_answer", "validate_results", "downgrade_action", "check_downgrade_policy"]

# Why an answer was refused; a response-level reason refuses the answers of its whole batch.
RESPONSE_REJECTIONS = ("too_large", "not_json", "timeout", "bad_shape")
REJECTION_REASONS = RESPONSE_REJECTIONS + ("unknown_label", "bad_score")

DOWNGRADE_POLICIES = ("refuse", "record")  # --teacher-downgrade
DOWNGRADE_ACTIONS = ("refused", "applied")  # the metric's label values, one per policy

# How long a teacher answer is served before it is dropped and the template asked again: a wrong
# (or poisoned) answer lives at most this long, however often it is hit.
DEFAULT_TAUGHT_TTL_S = 3600.0

# A batch of 32 lines of 16 KiB, echoed as templates and JSON-escaped, stays far below this.
DEFAULT_MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_VERSION_CHARS = 256  # the answer's "model" goes into correction records


class TeacherAnswer(NamedTuple):
    label: str
    score: float


class Rejection(NamedTuple):
    reason: str  # one of REJECTION_REASONS
    detail: str  # for the log: what was wrong, shortened


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_answer(raw: Any, labels: Collection[str]) -> TeacherAnswer | Rejection:
    """One result ``{"label": str, "score": number}``: its label one of ``labels`` (the served
    model's), its score finite and within [0, 1]. Other keys (``template``) are ignored."""
    if not isinstance(raw, dict) or "label" not in raw or "score" not in raw:
        return Rejection("bad_shape", f"a result is not {{label, score}}: {_short(raw)}")
    label, score = raw["label"], raw["score"]
    if not isinstance(label, str) or not isinstance(score, (int, float)) or isinstance(score, bool):
        return Rejection("bad_shape", f"a result is not {{label: str, score: number}}: {_short(raw)}")
    if label not in labels:
        return Rejection("unknown_label", f"label {_short(label)} is not one of the model's labels")
    try:
        value = float(score)
    except OverflowError:  # an integer too large for a float
        return Rejection("bad_score", f"score {_short(score)} is not within [0, 1]")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return Rejection("bad_score", f"score {_short(score)} is not within [0, 1]")
    return TeacherAnswer(label, value)


def validate_results(payload: Any, count: int, labels: Collection[str]
                     ) -> tuple[list[TeacherAnswer | Rejection], str] | Rejection:
    """A decoded response ``{"results": [...count results], "model"?: str}``: each result checked
    by :func:`validate_answer`, and the answering model's version (``"teacher"`` if absent); or one
    :class:`Rejection` for the whole response."""
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list) or len(results) != count:
        return Rejection("bad_shape", f"the answer holds no list of {count} results: {_short(payload)}")
    version = payload.get("model", "teacher")
    if not isinstance(version, str) or not version or len(version) > MAX_VERSION_CHARS:
        return Rejection("bad_shape", f"the answer's model is not a short string: {_short(version)}")
    return [validate_answer(result, labels) for result in results], version


def downgrade_action(served: str, teacher: str, normal: str, policy: str) -> str | None:
    """``None`` unless the teacher calls ``normal`` a line served as an alert; then what happens
    under ``policy``: ``"refused"`` (the alert stands) or ``"applied"`` (normal is served)."""
    check_downgrade_policy(policy)
    if served == normal or teacher != normal:
        return None
    return "refused" if policy == "refuse" else "applied"


def check_downgrade_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`DOWNGRADE_POLICIES`, else ``ValueError`` naming them."""
    if policy not in DOWNGRADE_POLICIES:
        raise ValueError(f"unknown teacher downgrade policy {policy!r}; one of {', '.join(DOWNGRADE_POLICIES)}")
    return policy
