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
from logdistill.operator.views import PodProblem
from logdistill.spec import GateSpec

GATE = GateSpec(min_macro_f1=0.5, min_retention=0.8)
T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"


def summary(version="v1", f1=0.7, retention=0.9, passed=True):
    return parse_summary(json.dumps({
        "version": version, "sha256": "a" * 64, "artifact": f"/artifacts/models/m/{version}",
        "teacher": {"accuracy": 0.9, "macroF1": 0.78}, "student": {"accuracy": 0.88, "macroF1": f1},
        "retention": retention, "gatePassed": passed,
    }))


def rollout(version="v1", generation=1, desired=2, updated=2, available=2, current=True, ready=None, **kw):
    return RolloutState(version=version, generation=generation, artifact=f"models/m/g{generation}", desired=desired,
                        updated=updated, available=available, current=current,
                        ready=available if ready is None else ready, **kw)


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
    assert {c.type for c in s1.conditions} == {"Distilled", "GatePassed", "RolledOut", "Ready", "PodsHealthy"}
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
    DistilledModelStatus.model_validate(s.to_status())  # round-trips through the wire form


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


# ---- pod problems in the status ------------------------------------------------------------------

def problem(reason="Unschedulable", pod="m-distill-g1-x7k2p", component="distill", container=None, node=None,
            message='0/3 nodes are available: persistentvolumeclaim "logdistill-artifacts" not found.'):
    return PodProblem(namespace="team", pod=pod, component=component, reason=reason, message=message,
                      container=container, node=node)


def test_an_unschedulable_job_pod_stays_pending_and_says_why():
    s0 = step(DistilledModelStatus(), job="Pending", now=T0)
    s1 = step(s0, job="Pending", problems=(problem(),), now=T1)
    assert s1.phase == "Pending"
    assert s1.message == ('Job m-distill-g1 is waiting to start: pod team/m-distill-g1-x7k2p: Unschedulable: 0/3 '
                          'nodes are available: persistentvolumeclaim "logdistill-artifacts" not found.')
    assert cond(s1, "Distilled") == ("Unknown", "Unschedulable")
    assert cond(s1, "PodsHealthy") == ("False", "Unschedulable")
    (rec,) = s1.pod_problems
    assert (rec.pod, rec.reason, rec.since, rec.node) == ("team/m-distill-g1-x7k2p", "Unschedulable", T1, None)
    events = transitions(s0, s1)
    # One Warning for the problem; the conditions that only changed reason because of it add none.
    assert [(e.reason, e.warning) for e in events] == [("PodUnschedulable", True)]
    assert "persistentvolumeclaim" in events[0].message and events[0].message.startswith("pod team/m-distill-g1")
    # The next resync sees the same problem: no new Event, and "since" stays.
    s2 = step(s1, job="Pending", problems=(problem(),), now=T2)
    assert transitions(s1, s2) == [] and s2.pod_problems[0].since == T1 and same_status(s1, s2)
    # Cleared: one Normal event, and the condition turns True.
    s3 = step(s2, job="Running", now=T2)
    assert cond(s3, "PodsHealthy") == ("True", "NoProblems") and s3.pod_problems == []
    assert ("PodsHealthy", False) in [(e.reason, e.warning) for e in transitions(s2, s3)]


def test_flapping_image_pull_reasons_are_one_problem_and_one_event():
    pull = problem("ErrImagePull", component="classifier", pod="m-classifier-abc", container="classify", node="edge-1",
                   message='failed to pull image "x"')
    backoff = problem("ImagePullBackOff", component="classifier", pod="m-classifier-abc", container="classify",
                      node="edge-1", message='Back-off pulling image "x"')
    base = step(DistilledModelStatus(), job="Succeeded", s=summary(), ro=rollout(desired=1, updated=1, available=0),
                now=T0)
    s1 = step(base, job="Succeeded", s=summary(), ro=rollout(desired=1, updated=1, available=0), problems=(pull,))
    s2 = step(s1, job="Succeeded", s=summary(), ro=rollout(desired=1, updated=1, available=0), problems=(backoff,))
    assert [e.reason for e in transitions(base, s1)] == ["PodErrImagePull"]
    assert transitions(s1, s2) == []
    assert s2.pod_problems[0].reason == "ImagePullBackOff" and s2.pod_problems[0].since == s1.pod_problems[0].since
    assert cond(s2, "RolledOut") == ("False", "ImagePullBackOff")
    assert s2.phase == "RollingOut"
    # A second pod with the same reason is a new problem: its own Event.
    other = problem("ImagePullBackOff", component="classifier", pod="m-classifier-def", container="classify",
                    node="edge-2")
    s3 = step(s2, job="Succeeded", s=summary(), ro=rollout(desired=2, updated=2, available=0), problems=(backoff, other))
    assert [e.message.split(" ")[1] for e in transitions(s2, s3)] == ["team/m-classifier-def"]
    assert "and 1 more pods" in s3.condition("PodsHealthy").message


def test_status_keeps_ten_problems_and_the_condition_counts_all():
    many = tuple(problem("CrashLoopBackOff", pod=f"m-classifier-{i:02d}", component="classifier", container="classify")
                 for i in range(25))
    s = step(DistilledModelStatus(), job="Running", problems=many)
    assert len(s.pod_problems) == 10 and "and 24 more pods" in s.condition("PodsHealthy").message
    DistilledModelStatus.model_validate(s.to_status())


def test_a_job_that_fails_on_its_deadline_reports_the_pod_problem():
    pull = problem("ImagePullBackOff", container="distill", node="core-1", message='Back-off pulling image "bad:1"')
    s = step(DistilledModelStatus(), job=JobOutcome("Failed", "DeadlineExceeded", "Job was active longer than "
                                                    "specified deadline"), problems=(pull,))
    assert s.phase == "Failed" and cond(s, "Distilled") == ("False", "ImagePullBackOff")
    assert "Job was active longer than specified deadline: pod team/m-distill-g1-x7k2p" in s.message
    engine = step(DistilledModelStatus(), job=JobOutcome("Failed", "DistillationError", "teacher not found"),
                  problems=(pull,))
    assert cond(engine, "Distilled") == ("False", "DistillationError")  # the engine's own words win


def test_ready_needs_every_selected_node_ready():
    s = step(DistilledModelStatus(), job="Succeeded", s=summary(),
             ro=rollout(desired=2, updated=2, available=2, ready=1,
                        unready=("node edge-1, pod team/m-classifier-b: readiness probe failing: HTTP probe failed "
                                 "with statuscode: 503",)))
    assert s.phase == "RollingOut" and cond(s, "Ready") == ("False", "RollingOut")
    assert s.message == ("version v1: 2 updated, 1 ready, 2 available of 2 selected nodes; not ready: node edge-1, pod "
                         "team/m-classifier-b: readiness probe failing: HTTP probe failed with statuscode: 503")


def test_no_node_matching_the_selector_is_not_ready():
    s = step(DistilledModelStatus(), job="Succeeded", s=summary(),
             ro=rollout(desired=0, updated=0, available=0, node_selector=(("node-role.kubernetes.io/edge", ""),)))
    assert s.phase == "RollingOut" and cond(s, "RolledOut") == ("False", "NoMatchingNodes")
    assert s.message == "version v1: no node matches rollout.nodeSelector {node-role.kubernetes.io/edge}"
