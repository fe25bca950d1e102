"""Status transitions: pure functions from what the operator observed to the next status."""

from __future__ import annotations

import json

from logdistill.operator.status import (
    DistilledModelStatus,
    JobOutcome,
    Progress,
    RolloutState,
    invalid_spec_status,
    next_status,
    same_status,
    transitions,
)
from logdistill.operator.summary import parse_summary
from logdistill.spec import GateSpec

GATE = GateSpec(min_macro_f1=0.5, min_retention=0.8)
T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"


def summary(version="v1", f1=0.7, retention=0.9, passed=True):
    return parse_summary(json.dumps({
        "version": version, "sha256": "a" * 64, "artifact": f"/artifacts/models/m/{version}",
        "teacher": {"accuracy": 0.9, "macroF1": 0.78}, "student": {"accuracy": 0.88, "macroF1": f1},
        "retention": retention, "gatePassed": passed,
    }))


def rollout(version="v1", generation=1, desired=2, updated=2, available=2, current=True):
    return RolloutState(version=version, generation=generation, artifact=f"models/m/g{generation}", desired=desired,
                        updated=updated, available=available, current=current)


def step(old, gen=1, job="Running", s=None, ro=None, now=T1, **kw):
    outcome = job if isinstance(job, JobOutcome) else JobOutcome(job)
    return next_status(old, generation=gen, job_name=f"m-distill-g{gen}", job=outcome, summary=s, gate=GATE,
                       rollout=ro, now=now, **kw)


def cond(status, kind):
    c = status.condition(kind)
    return (c.status, c.reason)


def test_happy_path_pending_distilling_rollingout_ready():
    s0 = DistilledModelStatus()
    s1 = step(s0, job="Pending", now=T0)
    assert s1.phase == "Pending" and s1.observed_generation == 1 and s1.job == "m-distill-g1"
    assert {c.type for c in s1.conditions} == {"Distilled", "GatePassed", "RolledOut", "Ready"}
    assert all(c.observed_generation == 1 for c in s1.conditions)
    s2 = step(s1, job="Running", progress=Progress(generation=1, stage="train", percent=40.0))
    assert s2.phase == "Distilling" and s2.progress.percent == 40.0
    s3 = step(s2, job="Succeeded", s=summary(), ro=rollout(updated=0, available=0), now=T2)
    assert s3.phase == "RollingOut"
    assert cond(s3, "GatePassed") == ("True", "ThresholdsMet")
    assert s3.evaluation.student.macro_f1 == 0.7 and s3.evaluation.gate_passed
    assert s3.serving_version == "v1" and s3.history[-1].version == "v1"
    s4 = step(s3, job="Succeeded", s=summary(), ro=rollout(), now=T2)
    assert s4.phase == "Ready" and cond(s4, "Ready") == ("True", "Ready")
    assert cond(s4, "RolledOut") == ("True", "AllNodesUpdated")
    assert len(s4.history) == 1  # the same generation is recorded once


def test_condition_time_moves_only_when_status_changes():
    s1 = step(DistilledModelStatus(), job="Running", now=T0)
    s2 = step(s1, job="Running", now=T1)
    assert s2.condition("Distilled").last_transition_time == T0
    assert same_status(s1, s2)
    s3 = step(s2, job="Succeeded", s=summary(), ro=rollout(), now=T2)
    assert s3.condition("Distilled").last_transition_time == T2


def test_failing_gate_without_a_serving_version_is_failed():
    s = step(DistilledModelStatus(), job="Succeeded", s=summary(f1=0.3, passed=False))
    assert s.phase == "Failed"
    status, reason = cond(s, "GatePassed")
    assert (status, reason) == ("False", "BelowThreshold")
    assert "0.3000" in s.condition("GatePassed").message and "min 0.5" in s.condition("GatePassed").message
    assert s.history[-1].gate_passed is False


def test_failing_gate_with_an_older_version_serving_is_degraded():
    ready = step(DistilledModelStatus(), job="Succeeded", s=summary(), ro=rollout())
    s = step(ready, gen=2, job="Succeeded", s=summary("v2", f1=0.2, passed=False), ro=rollout())
    assert s.phase == "Degraded" and s.serving_version == "v1" and "still serving version v1" in s.message
    assert [h.version for h in s.history] == ["v1", "v2"]


def test_failed_job_and_missing_summary():
    failed = step(DistilledModelStatus(), job=JobOutcome("Failed", "DistillationError", "teacher not found"))
    assert failed.phase == "Failed" and cond(failed, "Distilled") == ("False", "DistillationError")
    assert "teacher not found" in failed.message
    nosum = step(DistilledModelStatus(), job="Succeeded", s=None,
                 summary_error=("SummaryMissing", "no termination message"))
    assert nosum.phase == "Failed" and cond(nosum, "Distilled") == ("False", "SummaryMissing")
    assert nosum.serving_version is None


def test_new_generation_keeps_serving_and_resets_gate_to_unknown():
    ready = step(DistilledModelStatus(), job="Succeeded", s=summary(), ro=rollout())
    s = step(ready, gen=2, job="Running", ro=rollout())
    assert s.phase == "Distilling" and s.observed_generation == 2 and s.serving_version == "v1"
    assert cond(s, "GatePassed") == ("Unknown", "Evaluating")
    assert s.evaluation.generation == 1  # the last evaluated one stays visible


def test_progress_of_another_generation_is_dropped():
    s1 = step(DistilledModelStatus(), job="Running", progress=Progress(generation=1, percent=50.0))
    s2 = step(s1, gen=2, job="Running")
    assert s2.progress is None


def test_history_keeps_the_last_five():
    s = DistilledModelStatus()
    for g in range(1, 8):
        s = step(s, gen=g, job="Succeeded", s=summary(f"v{g}"), ro=rollout(f"v{g}", g))
    assert [h.generation for h in s.history] == [3, 4, 5, 6, 7]
    DistilledModelStatus.model_validate(s.to_patch())  # round-trips through the wire form


def test_rollout_not_current_is_not_ready():
    s = step(DistilledModelStatus(), job="Succeeded", s=summary(), ro=rollout(current=False))
    assert s.phase == "RollingOut"


def test_transitions_emit_events_for_phase_and_conditions():
    s1 = step(DistilledModelStatus(), job="Running", now=T0)
    events = transitions(DistilledModelStatus(), s1)
    assert any(e.reason == "PhaseDistilling" and not e.warning for e in events)
    s2 = step(s1, job="Succeeded", s=summary(f1=0.1, passed=False))
    events = transitions(s1, s2)
    assert any(e.reason == "PhaseFailed" and e.warning for e in events)
    assert any(e.reason == "GatePassedFalse" and e.warning for e in events)
    assert transitions(s2, s2) == []


def test_invalid_spec_status_names_the_field():
    s = invalid_spec_status(DistilledModelStatus(), 4, "spec: student.hidden must be a multiple", now=T0)
    assert s.phase == "Failed" and s.observed_generation == 4
    assert cond(s, "Distilled") == ("False", "InvalidSpec") and "student.hidden" in s.message
