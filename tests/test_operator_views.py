"""Typed views and pod problems: pod/Job/DaemonSet/Deployment/Event dicts written the way the
API server, the scheduler and the kubelet really produce them (camelCase, as the kubernetes
client's sanitize_for_serialization returns them)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest

from logdistill.operator import names
from logdistill.operator.observe import observe_job, pod_events, pod_failure, rollout_state
from logdistill.operator.status import DistilledModelStatus
from logdistill.operator.views import (
    REASONS,
    DaemonSetView,
    DeploymentView,
    EventView,
    JobView,
    PodView,
    needs_events,
    pod_problem,
    pod_problems,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


IMAGE = "ghcr.io/logdistill/logdistill-edge:0.1.0"
UNSCHEDULABLE_MSG = ('0/1 nodes are available: persistentvolumeclaim "logdistill-artifacts" not found. '
                     'preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.')


def pod(name="m-distill-g1-x7k2p", component="distill", phase="Pending", node="edge-1", conditions=(),
        containers=(), init=(), created=0, **meta) -> dict:
    labels = {"app.kubernetes.io/name": "logdistill", "app.kubernetes.io/component": component,
              "app.kubernetes.io/managed-by": "logdistill-operator", names.MODEL_LABEL: "m"}
    body = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "team", "uid": f"uid-{name}", "creationTimestamp": ts(created),
                     "labels": labels, **meta},
        "spec": {"containers": [{"name": "distill" if component in ("distill", "label") else "classify"}],
                 **({"nodeName": node} if node else {})},
        "status": {"phase": phase, "qosClass": "BestEffort", "conditions": list(conditions),
                   **({"containerStatuses": list(containers)} if containers else {}),
                   **({"initContainerStatuses": list(init)} if init else {})},
    }
    return body


def scheduled(at_s=1):
    return {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": ts(at_s)}


def ready(status: str, at_s=2, reason=None):
    c = {"type": "Ready", "status": status, "lastProbeTime": None, "lastTransitionTime": ts(at_s)}
    if reason:
        c.update(reason=reason, message="containers with unready status: [classify]")
    return c


def waiting(name, reason, message=None, restarts=0, last=None):
    c = {"name": name, "image": IMAGE, "imageID": "", "ready": False, "restartCount": restarts, "started": False,
         "state": {"waiting": {"reason": reason, **({"message": message} if message else {})}}, "lastState": {}}
    if last:
        c["lastState"] = {"terminated": last}
    return c


def running(name, ready_=False, restarts=0, last=None, started_s=10):
    c = {"name": name, "image": IMAGE, "imageID": "sha256:abc", "ready": ready_, "restartCount": restarts,
         "started": True, "state": {"running": {"startedAt": ts(started_s)}}, "lastState": {}}
    if last:
        c["lastState"] = {"terminated": last}
    return c


def terminated(code, reason, message=None, finished_s=30):
    t = {"exitCode": code, "reason": reason, "startedAt": ts(finished_s - 5), "finishedAt": ts(finished_s),
         "containerID": "containerd://0123"}
    if message:
        t["message"] = message
    return t


def event(reason, message, seconds, type_="Warning", count=1):
    return {"metadata": {"name": f"p.{reason}", "namespace": "team", "creationTimestamp": ts(seconds)},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "team"}, "reason": reason,
            "message": message, "type": type_, "count": count, "firstTimestamp": ts(seconds),
            "lastTimestamp": ts(seconds), "source": {"component": "kubelet", "host": "edge-1"}}


def problem_of(raw: dict, now_s=20, deadline=300, events=()):
    return pod_problem(PodView.parse(raw), at(now_s), deadline, [EventView.parse(e) for e in events])


# ---- typed views -------------------------------------------------------------------------------

def test_pod_view_reads_phase_node_conditions_and_container_states():
    raw = pod(component="classifier", phase="Running", conditions=[scheduled(), ready("False", 3, "ContainersNotReady")],
              init=[{"name": "prepare", "ready": True, "restartCount": 0, "image": IMAGE, "imageID": "",
                     "state": {"terminated": terminated(0, "Completed", finished_s=8)}}],
              containers=[running("classify", restarts=2, last=terminated(137, "OOMKilled", finished_s=9))],
              annotations={names.COMPLETION_INDEX_ANNOTATION: "0"})
    v = PodView.parse(raw)
    assert (v.ref, v.phase, v.node, v.component, v.completion_index) == (
        "team/m-distill-g1-x7k2p", "Running", "edge-1", "classifier", "0")
    assert v.condition("Ready").reason == "ContainersNotReady" and v.condition("Ready").last_transition == at(3)
    assert not v.ready and v.unschedulable is None
    (init,) = v.init_containers
    assert init.init and init.terminated.exit_code == 0 and init.terminated.reason == "Completed"
    c = v.container("classify")
    assert c.running and c.restart_count == 2 and c.last_terminated.describe() == "OOMKilled (exit code 137)"
    assert c.waiting_reason is None


def test_pod_view_tolerates_a_bare_pod():
    v = PodView.parse({"metadata": {"name": "p", "namespace": "n"}})
    assert (v.phase, v.node, v.containers, v.created) == ("Pending", None, (), None)


def test_job_view_conditions_and_counts():
    raw = {"metadata": {"name": "m-distill-g1", "namespace": "team"}, "status": {
        "startTime": ts(0), "active": 0, "failed": 2,
        "conditions": [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
                       {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit", "lastTransitionTime": ts(40)},
                       {"type": "Suspended", "status": "False"}]}}
    j = JobView.parse(raw)
    assert j.failed_condition.reason == "BackoffLimitExceeded" and j.finished and not j.complete
    assert not j.suspended and (j.active, j.succeeded, j.failed, j.start_time) == (0, 0, 2, T0)
    assert JobView.parse({"metadata": {"name": "j"}}).finished is False


def test_daemonset_and_deployment_views():
    ds = DaemonSetView.parse({
        "metadata": {"name": "m-classifier", "namespace": "team", "generation": 3},
        "spec": {"template": {"spec": {"nodeSelector": {"node-role.kubernetes.io/edge": ""}}}},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "updatedNumberScheduled": 1,
                   "numberReady": 1, "numberAvailable": 1, "numberUnavailable": 1, "observedGeneration": 2}})
    assert (ds.desired, ds.updated, ds.ready, ds.available, ds.observed) == (2, 1, 1, 1, False)
    assert ds.node_selector == {"node-role.kubernetes.io/edge": ""}
    dep = DeploymentView.parse({"metadata": {"name": "m-teacher", "generation": 1}, "spec": {"replicas": 2},
                                "status": {"observedGeneration": 1, "readyReplicas": 1, "availableReplicas": 1,
                                           "updatedReplicas": 2}})
    assert (dep.replicas, dep.updated, dep.ready, dep.available) == (2, 2, 1, 1)


def test_event_view_reads_series_and_legacy_times():
    legacy = EventView.parse(event("FailedMount", "MountVolume.SetUp failed", 12, count=4))
    assert (legacy.type, legacy.reason, legacy.last, legacy.count) == ("Warning", "FailedMount", at(12), 4)
    series = EventView.parse({"type": "Warning", "reason": "Unhealthy", "message": "x", "eventTime": ts(1),
                              "series": {"count": 9, "lastObservedTime": ts(50)}})
    assert (series.last, series.count) == (at(50), 9)


# ---- pod problems --------------------------------------------------------------------------------

def test_unschedulable_carries_the_schedulers_message():
    raw = pod(node=None, conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                      "message": UNSCHEDULABLE_MSG, "lastProbeTime": None,
                                      "lastTransitionTime": ts(1)}])
    p = problem_of(raw)
    assert (p.reason, p.ref, p.node, p.container, p.component) == (
        "Unschedulable", "team/m-distill-g1-x7k2p", None, None, "distill")
    assert 'persistentvolumeclaim "logdistill-artifacts" not found' in p.message
    assert p.describe().startswith("pod team/m-distill-g1-x7k2p: Unschedulable: 0/1 nodes are available")


@pytest.mark.parametrize("reason, message", [
    ("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"'),
    ("ErrImagePull", f'failed to pull and unpack image "{IMAGE}": not found'),
    ("ErrImageNeverPull", f'Container image "{IMAGE}" is not present with pull policy of Never'),
    ("InvalidImageName", 'Failed to apply default image tag "Bad:Image": invalid reference format'),
    ("CreateContainerConfigError", 'secret "llm-api-key" not found'),
    ("CreateContainerError", "context deadline exceeded"),
    ("RunContainerError", "failed to create containerd task: exec: \"logdistill\": executable file not found"),
])
def test_waiting_reasons_are_reported_as_the_kubelet_says(reason, message):
    raw = pod(component="classifier", conditions=[scheduled(), ready("False", 2, "ContainersNotReady")],
              containers=[waiting("classify", reason, message)])
    p = problem_of(raw)
    assert (p.reason, p.container, p.node, p.message) == (reason, "classify", "edge-1", message)
    assert p.describe() == f"pod team/m-distill-g1-x7k2p (container classify, node edge-1): {reason}: {message}"


def test_crash_loop_names_the_last_exit_and_oom_wins():
    crash = pod(component="classifier", phase="Running", conditions=[scheduled(), ready("False")],
                containers=[waiting("classify", "CrashLoopBackOff",
                                    "back-off 40s restarting failed container=classify pod=m-classifier-abc_team(u)",
                                    restarts=3, last=terminated(1, "Error", "no log source readable"))])
    p = problem_of(crash)
    assert p.reason == "CrashLoopBackOff"
    assert "last exit Error (exit code 1), restarted 3 times: no log source readable" == p.message
    oom = copy.deepcopy(crash)
    oom["status"]["containerStatuses"][0]["lastState"]["terminated"] = terminated(137, "OOMKilled")
    p = problem_of(oom)
    assert p.reason == "OOMKilled" and p.message.startswith("OOMKilled (exit code 137), restarted 3 times")


def test_a_crash_loop_between_restarts_is_still_the_crash_loop_and_one_problem():
    up = pod(component="classifier", phase="Running", conditions=[scheduled(), ready("False", 35)],
             containers=[running("classify", restarts=4, last=terminated(2, "Error", finished_s=34), started_s=35)])
    p = problem_of(up, now_s=40)
    assert p.reason == "CrashLoopBackOff" and "exit code 2" in p.message
    down = pod(component="classifier", phase="Running", conditions=[scheduled(), ready("False", 35)],
               containers=[waiting("classify", "CrashLoopBackOff", "back-off", restarts=4,
                                   last=terminated(2, "Error", finished_s=34))])
    assert problem_of(down, now_s=40).key == p.key
    pull = problem_of(pod(conditions=[scheduled()], containers=[waiting("distill", "ErrImagePull", "x")]))
    backoff = problem_of(pod(conditions=[scheduled()], containers=[waiting("distill", "ImagePullBackOff", "y")]))
    assert pull.key == backoff.key and pull.reason != backoff.reason
    # Ready again well after the last crash: healed.
    healed = pod(component="classifier", phase="Running", conditions=[scheduled(), ready("True", 36)],
                 containers=[running("classify", True, restarts=4, last=terminated(2, "Error", finished_s=34))])
    assert problem_of(healed, now_s=40) is None


def test_failed_job_pod_oom_killed():
    raw = pod(phase="Failed", conditions=[scheduled()],
              containers=[{"name": "distill", "ready": False, "restartCount": 0, "image": IMAGE, "imageID": "",
                           "state": {"terminated": terminated(137, "OOMKilled")}}])
    p = problem_of(raw)
    assert (p.reason, p.container) == ("OOMKilled", "distill") and "exit code 137" in p.message
    plain = copy.deepcopy(raw)
    plain["status"]["containerStatuses"][0]["state"]["terminated"] = terminated(1, "Error")
    assert problem_of(plain) is None  # an ordinary failure: the Job's outcome reports it


def test_init_container_problems_come_first():
    raw = pod(conditions=[scheduled(), {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"}],
              init=[waiting("prepare-storage", "CreateContainerConfigError", 'configmap "m-spec-g1" not found')],
              containers=[waiting("distill", "PodInitializing")])
    p = problem_of(raw)
    assert (p.reason, p.container) == ("CreateContainerConfigError", "prepare-storage")


def test_container_creating_reads_failed_mount_events_after_the_grace():
    raw = pod(component="classifier", conditions=[scheduled(1)], containers=[waiting("classify", "ContainerCreating")])
    view = PodView.parse(raw)
    assert not needs_events(view, at(3))  # still within the grace: no API call
    assert needs_events(view, at(7))
    assert problem_of(raw, now_s=7) is None  # no events, not past the deadline
    mount = event("FailedMount", 'MountVolume.SetUp failed for volume "logs-0" : hostPath type check failed: '
                  "/var/log/pods is not a directory", 6)
    old_sched = event("FailedScheduling", "0/3 nodes are available", 0)
    p = problem_of(raw, now_s=7, events=[old_sched, mount])
    assert p.reason == "FailedMount" and p.container is None and p.node == "edge-1"
    assert p.message == ('FailedMount: MountVolume.SetUp failed for volume "logs-0" : hostPath type check failed: '
                         "/var/log/pods is not a directory")
    sandbox = event("FailedCreatePodSandBox", "failed to setup network for sandbox", 6)
    assert problem_of(raw, now_s=7, events=[sandbox]).reason == "ContainerWaiting"
    assert problem_of(raw, now_s=7, events=[old_sched]) is None  # the scheduler's events are history here


def test_pending_too_long_after_the_configurable_deadline():
    raw = pod(conditions=[scheduled(1)], containers=[waiting("distill", "ContainerCreating")])
    assert problem_of(raw, now_s=299) is None
    p = problem_of(raw, now_s=301)
    assert p.reason == "PendingTooLong" and p.message == "pending for 5m01s (containers ContainerCreating)"
    assert problem_of(raw, now_s=61, deadline=60).reason == "PendingTooLong"
    unbound = pod(node=None)
    assert problem_of(unbound, now_s=400).message == "pending for 6m40s, not scheduled yet"
    # An init container at work (a teacher trained before the distillation) is progress, not a stall.
    training = pod(conditions=[scheduled(1)], init=[running("teacher", started_s=2)],
                   containers=[waiting("distill", "PodInitializing")])
    assert problem_of(training, now_s=3600) is None
    assert not needs_events(PodView.parse(training), at(3600))
    assert pod_problems([PodView.parse(training)], at(3600)).recheck_in is None


def test_not_ready_after_the_grace_with_the_probe_message():
    raw = pod(component="classifier", phase="Running", conditions=[scheduled(), ready("False", 10)],
              containers=[running("classify")])
    unhealthy = event("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", 60)
    assert problem_of(raw, now_s=30, events=[unhealthy]) is None  # starting: within the grace
    p = problem_of(raw, now_s=75, events=[unhealthy])
    assert (p.reason, p.container) == ("NotReady", "classify")
    assert p.message == "not ready for 1m05s: Readiness probe failed: HTTP probe failed with statuscode: 503"
    ok = pod(component="classifier", phase="Running", conditions=[scheduled(), ready("True", 10)],
             containers=[running("classify", True)])
    assert problem_of(ok, now_s=500) is None


def test_pod_problems_sorts_and_says_when_to_look_again():
    stuck = pod(name="a", node=None, conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                  "message": UNSCHEDULABLE_MSG}])
    creating = pod(name="b", conditions=[scheduled(10)], containers=[waiting("distill", "ContainerCreating")],
                   created=10)
    done = pod(name="c", phase="Succeeded", conditions=[scheduled()])
    gone = pod(name="d", node=None, deletionTimestamp=ts(5), conditions=stuck["status"]["conditions"])
    health = pod_problems([PodView.parse(p) for p in (creating, stuck, done, gone)], at(12), 300)
    assert [(p.pod, p.reason) for p in health.problems] == [("a", "Unschedulable")]
    assert health.recheck_in == pytest.approx(3.5)  # b's ContainerCreating grace ends at 15 s
    assert pod_problems([], at(0)).recheck_in is None
    assert set(REASONS) >= {p.reason for p in health.problems}


def test_pod_events_looks_up_only_the_stuck_pods():
    stuck = pod(name="s", component="classifier", conditions=[scheduled(1)],
                containers=[waiting("classify", "ContainerCreating")])
    fine = pod(name="f", component="classifier", phase="Running", conditions=[scheduled(), ready("True")],
               containers=[running("classify", True)])
    asked = []

    def list_warnings(ns, name):
        asked.append((ns, name))
        return [event("FailedMount", "boom", 9)]

    got = pod_events([PodView.parse(stuck), PodView.parse(fine)], at(10), list_warnings)
    assert asked == [("team", "s")] and got["s"][0].reason == "FailedMount"


# ---- observe: the Job and the rollout through the views --------------------------------------------

def job(cond_type=None, reason=None, message=None):
    status = {"active": 1} if cond_type is None else {
        "conditions": [{"type": cond_type, "status": "True", "reason": reason, "message": message}]}
    return JobView.parse({"metadata": {"name": "m-distill-g1", "namespace": "team"}, "status": status})


def test_observe_job_reads_the_summary_and_the_engine_error():
    summary = {"version": "v1", "sha256": "a" * 64, "artifact": "/artifacts/x", "retention": 0.9, "gatePassed": True,
               "teacher": {"accuracy": 0.9, "macroF1": 0.8}, "student": {"accuracy": 0.88, "macroF1": 0.72}}
    done = pod(phase="Succeeded", conditions=[scheduled()],
               containers=[{"name": "distill", "ready": False, "restartCount": 0, "image": IMAGE, "imageID": "",
                            "state": {"terminated": terminated(0, "Completed", json.dumps(summary))}}])
    outcome, s, err, _ = observe_job(job("Complete"), [PodView.parse(done)], 1, DistilledModelStatus())
    assert outcome.phase == "Succeeded" and s.version == "v1" and err is None
    failed = copy.deepcopy(done)
    failed["status"]["phase"] = "Failed"
    failed["status"]["containerStatuses"][0]["state"]["terminated"] = terminated(
        1, "Error", json.dumps({"error": "teacher checkpoint /t not found"}))
    outcome, *_ = observe_job(job("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                              [PodView.parse(failed)], 1, DistilledModelStatus())
    assert outcome.phase == "Failed" and "teacher checkpoint /t not found" in outcome.message
    assert observe_job(job(), [PodView.parse(pod(conditions=[scheduled()]))], 1,
                       DistilledModelStatus())[0].phase == "Pending"


def test_a_job_pod_oom_killed_is_the_failure_reason():
    raw = pod(phase="Failed", containers=[{"name": "distill", "ready": False, "restartCount": 0, "image": IMAGE,
                                           "imageID": "", "state": {"terminated": terminated(137, "OOMKilled")}}])
    reason, message = pod_failure(PodView.parse(raw))
    assert reason == "OOMKilled" and "exit code 137" in message and "spec.job.resources" in message
    outcome, *_ = observe_job(job("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                              [PodView.parse(raw)], 1, DistilledModelStatus())
    assert outcome.reason == "OOMKilled"
    init_oom = pod(phase="Failed", init=[{"name": "teacher", "ready": False, "restartCount": 0, "image": IMAGE,
                                          "imageID": "", "state": {"terminated": terminated(137, "OOMKilled")}}],
                   containers=[waiting("distill", "PodInitializing")])
    reason, message = pod_failure(PodView.parse(init_oom))
    assert reason == "OOMKilled" and message.startswith("OOMKilled (exit code 137): the teacher container")
    init_err = copy.deepcopy(init_oom)
    init_err["status"]["initContainerStatuses"][0]["state"]["terminated"] = terminated(2, "Error")
    assert pod_failure(PodView.parse(init_err)) == ("PodFailed", "init container teacher: Error, exit code 2")


def daemonset(desired=2, updated=2, ready_=2, available=2, selector=None):
    return {"metadata": {"name": "m-classifier", "namespace": "team", "generation": 1},
            "spec": {"template": {"metadata": {"annotations": {names.VERSION_ANNOTATION: "v1", names.GENERATION_LABEL: "1",
                                                               names.ARTIFACT_ANNOTATION: "models/m/g1"}},
                                  "spec": {"nodeSelector": selector or {"node-role.kubernetes.io/edge": ""}}}},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": desired, "updatedNumberScheduled": updated,
                       "numberReady": ready_, "numberAvailable": available}}


def test_rollout_state_names_the_unready_classifier_pods_and_why():
    mount = pod(name="m-classifier-a", component="classifier", node="edge-2", conditions=[scheduled(1)],
                containers=[waiting("classify", "ContainerCreating")])
    probe = pod(name="m-classifier-b", component="classifier", phase="Running", node="edge-1",
                conditions=[scheduled(), ready("False", 8)], containers=[running("classify")])
    fine = pod(name="m-classifier-c", component="classifier", phase="Running", node="edge-3",
               conditions=[scheduled(), ready("True")], containers=[running("classify", True)])
    pods = [PodView.parse(p) for p in (mount, probe, fine)]
    events = {"m-classifier-a": [EventView.parse(event("FailedMount", "hostPath type check failed", 9))],
              "m-classifier-b": [EventView.parse(event("Unhealthy", "Readiness probe failed: HTTP probe failed "
                                                       "with statuscode: 503", 9))]}
    health = pod_problems(pods, at(10), 300, events)
    state = rollout_state(daemonset(3, 3, 1, 1), pods, health, events)
    assert not state.complete and (state.desired, state.ready) == (3, 1)
    assert state.unready == (
        "node edge-1, pod team/m-classifier-b: readiness probe failing: Readiness probe failed: HTTP probe failed "
        "with statuscode: 503",
        "node edge-2, pod team/m-classifier-a: FailedMount: FailedMount: hostPath type check failed",
    )
    assert "not ready: node edge-1" in state.describe()
    assert rollout_state(daemonset(2, 2, 2, 2), [], health).complete
    assert not rollout_state(daemonset(2, 2, 1, 2), [], health).complete  # available but not ready: no


def test_no_matching_node_is_not_ready_and_says_the_selector():
    state = rollout_state(daemonset(0, 0, 0, 0, {"node-role.kubernetes.io/edge": "", "zone": "a"}))
    assert not state.complete
    assert state.describe() == "version v1: no node matches rollout.nodeSelector {node-role.kubernetes.io/edge, zone: 'a'}"


def test_the_problem_counter_exports_every_reason_from_zero():
    from logdistill.operator.metrics import OperatorMetrics

    metrics = OperatorMetrics()
    values = {r: metrics.registry.get_sample_value("logdistill_operator_pod_problems_total", {"reason": r})
              for r in REASONS}
    assert values == {r: 0.0 for r in REASONS} and len(REASONS) == 14


def test_a_job_pod_training_its_teacher_in_an_init_container_is_running_not_waiting():
    training = pod(conditions=[scheduled()], init=[running("teacher", started_s=5)],
                   containers=[waiting("distill", "PodInitializing")])
    outcome, *_ = observe_job(job(), [PodView.parse(training)], 1, DistilledModelStatus())
    assert (outcome.phase, outcome.reason) == ("Running", "InitContainerTeacher")
    assert "init container teacher running since" in outcome.message and training["metadata"]["name"] in outcome.message
    waiting_pod = pod(conditions=[scheduled()], containers=[waiting("distill", "ContainerCreating")])
    assert observe_job(job(), [PodView.parse(waiting_pod)], 1, DistilledModelStatus())[0].phase == "Pending"


def test_progress_is_read_from_the_container_that_runs_now():
    from logdistill.operator.observe import parse_progress, working_container

    teacher_stage = PodView.parse(pod(phase="Pending", init=[running("teacher")], containers=[waiting("distill", "PodInitializing")]))
    assert working_container([teacher_stage]) == (teacher_stage.name, "teacher")
    distilling = PodView.parse(pod(phase="Running", init=[{**running("teacher"), "state": {"terminated": terminated(0, "Completed")}}],
                                   containers=[running("distill")]))
    assert working_container([distilling]) == (distilling.name, "distill")
    assert working_container([PodView.parse(pod(containers=[waiting("distill", "ContainerCreating")]))]) is None
    # rank 0 of an Indexed Job reports; other ranks' logs carry no progress
    rank1 = PodView.parse(pod(name="r1", containers=[running("distill")],
                              annotations={"batch.kubernetes.io/job-completion-index": "1"}))
    assert working_container([rank1]) is None
    progress = parse_progress('{"stage": "teacher-training", "epoch": 1, "epochs": 2}', 3, "x")
    assert (progress.stage, progress.epoch, progress.generation) == ("teacher-training", 1, 3)
    assert parse_progress("{cut", 3, "x") is None
