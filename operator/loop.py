"""The closed loop's decisions, pure: the online agreement the teacher pods publish, the condition
it sets, and when a re-distillation is due. No API calls and the clock passed in, so every rule
is unit-tested; the handlers observe, call these, and act.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from logdistill.contracts import AGREEMENT_ANNOTATION, ContractError
from logdistill.contracts import Agreement as AgreementReport
from logdistill.operator.status import AGREEMENT_LOW, Agreement, LastRetrain
from logdistill.spec import DistilledModelSpec
from logdistill.timefmt import rfc3339

log = logging.getLogger("logdistill.operator")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def read_report(pod: dict) -> dict | None:
    """One teacher pod's ``logdistill.io/agreement`` annotation, or None if absent or unreadable."""
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(AGREEMENT_ANNOTATION)
    if not raw:
        return None
    try:
        return AgreementReport.parse(raw).to_dict()
    except ContractError as err:
        log.warning("ignoring agreement annotation on pod %s: %s", pod.get("metadata", {}).get("name"), err)
        return None


def agreement_from(pods: list[dict], spec: DistilledModelSpec, old: Agreement | None,
                   now: datetime) -> Agreement | None:
    """The sample-weighted agreement over the teacher pods, and since when it has been low."""
    reports = [r for r in (read_report(p) for p in pods) if r is not None]
    if not reports:
        return None
    rated = [r for r in reports if r["ratio"] is not None and r["samples"] > 0]
    samples = sum(r["samples"] for r in reports)
    weight = sum(r["samples"] for r in rated)
    ratio = sum(r["ratio"] * r["samples"] for r in rated) / weight if weight else None
    windows = [r["windowSeconds"] for r in reports if r["windowSeconds"] is not None]
    times = [t for t in (parse_time(r["updated"]) for r in reports) if t is not None]
    gate = spec.retrain
    low = ratio is not None and samples >= gate.min_samples and ratio < gate.agreement_threshold
    since = (old.below_since if old is not None and old.below_since else rfc3339(now)) if low else None
    return Agreement(ratio=None if ratio is None else round(ratio, 6), samples=samples,
                     window_seconds=max(windows) if windows else None,
                     updated=rfc3339(max(times)) if times else None, below_since=since)


def agreement_condition(spec: DistilledModelSpec, agreement: Agreement | None) -> tuple[str, str, str, str] | None:
    """(type, status, reason, message) of the agreement condition; None when escalation is off."""
    if not spec.escalation.enabled:
        return None
    gate = spec.retrain
    if agreement is None:
        return AGREEMENT_LOW, "Unknown", "NoEstimate", "no teacher pod has published an agreement yet"
    if agreement.ratio is None or agreement.samples < gate.min_samples:
        return (AGREEMENT_LOW, "Unknown", "NotEnoughSamples",
                f"{agreement.samples} sampled lines, {gate.min_samples} needed")
    numbers = f"agreement {agreement.ratio:.4f} over {agreement.samples} sampled lines (threshold " \
              f"{gate.agreement_threshold:g})"
    if agreement.below_since:
        return AGREEMENT_LOW, "True", "AgreementBelowThreshold", f"{numbers} since {agreement.below_since}"
    return AGREEMENT_LOW, "False", "AgreementAboveThreshold", numbers


@dataclass(frozen=True)
class RetrainDecision:
    """``due``: start one now; otherwise ``wake_in`` seconds until it may become due (None: no timer)."""

    due: bool
    reason: str | None = None
    token: str | None = None
    wake_in: float | None = None


def retrain_decision(spec: DistilledModelSpec, agreement: Agreement | None, last: LastRetrain | None,
                     request: str | None, run_finished: bool, now: datetime,
                     time_scale: float = 1.0) -> RetrainDecision:
    """Whether a re-distillation is due. A new ``retrain-request`` token always is (once the current
    run has finished); drift is when retrain is enabled, the agreement has stayed low for
    ``windowSeconds`` and the last re-distillation is older than ``minIntervalSeconds``.
    ``time_scale`` shrinks both durations (tests only)."""
    handled = last.token if last is not None else None
    if request and request != handled:
        return RetrainDecision(run_finished, "Requested", request)
    gate = spec.retrain
    if not (gate.enabled and spec.escalation.enabled and agreement is not None and agreement.below_since):
        return RetrainDecision(False)
    since = parse_time(agreement.below_since) or now
    wait_window = gate.window_seconds * time_scale - (now - since).total_seconds()
    last_at = parse_time(last.at) if last is not None else None
    wait_interval = gate.min_interval_seconds * time_scale - (now - last_at).total_seconds() if last_at else 0.0
    wait = max(wait_window, wait_interval)
    if wait > 0:
        return RetrainDecision(False, wake_in=wait)
    if not run_finished:
        return RetrainDecision(False)  # the run's Job events wake the operator when it finishes
    return RetrainDecision(True, "AgreementBelowThreshold", handled)
