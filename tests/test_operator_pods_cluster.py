"""Status that tells the truth about pods, on the real control plane (scheduler included):
a Job pod the scheduler cannot place, a classifier pod that cannot pull its image, a rollout
whose nodeSelector matches no node. Every wait is a condition with a deadline."""

from __future__ import annotations

import json
import time

from logdistill.operator.manifests import common, daemonset

from test_operator_cluster import (  # noqa: F401 - fixtures
    BASE, apis, cluster, complete_job_pod, condition, create_cr, get_cr, operator, storage, wait_events, wait_phase,
)

NOWHERE = {"logdistill.io/test-nowhere": "yes"}


def wait_status(cluster, apis, ns, name, check, timeout, what):
    seen = {}

    def probe():
        body = get_cr(apis, ns, name)
        seen["status"] = body.get("status") or {}
        return body if check(seen["status"]) else None

    try:
        return cluster.wait_for(probe, timeout, 0.1, what)
    except TimeoutError as err:
        raise TimeoutError(f"{err}; last status: {json.dumps(seen.get('status'), indent=1)}") from None


def problems(status) -> list[dict]:
    return status.get("podProblems") or []


def test_an_unschedulable_job_pod_reaches_the_status_and_an_event_within_10s(cluster, apis, namespace, operator):
    started = time.monotonic()
    create_cr(apis, namespace, "nowhere", {**BASE, "job": {"nodeSelector": NOWHERE}})

    def told(status):
        return any(p["reason"] == "Unschedulable" for p in problems(status)) and "Unschedulable" in status.get(
            "message", "")

    body = wait_status(cluster, apis, namespace, "nowhere", told, 10, "the Unschedulable Job pod in the status")
    assert time.monotonic() - started < 10
    status = body["status"]
    assert status["phase"] == "Pending"  # still pending, but it says why
    (problem,) = problems(status)
    pod = apis["core"].list_namespaced_pod(namespace, label_selector=f"job-name={common.job_name('nowhere', 1)}").items[0]
    assert problem["pod"] == f"{namespace}/{pod.metadata.name}" and problem["component"] == "distill"
    # The scheduler's own words (the storage fixture's claim is bound: only the selector stands in the way).
    assert problem["message"].startswith("0/3 nodes are available: ") and "node affinity/selector" in problem["message"]
    assert status["message"].startswith(f"Job nowhere-distill-g1 is waiting to start: pod {namespace}/{pod.metadata.name}")
    pods_healthy = condition(body, "PodsHealthy")
    assert (pods_healthy["status"], pods_healthy["reason"]) == ("False", "Unschedulable")
    assert condition(body, "Distilled")["reason"] == "Unschedulable"
    wait_events(cluster, apis, namespace, "nowhere", {"PodUnschedulable"}, timeout=10 - (time.monotonic() - started) + 5)
    events = [e for e in apis["core"].list_namespaced_event(
        namespace, field_selector="involvedObject.name=nowhere").items if e.reason == "PodUnschedulable"]
    assert len(events) == 1 and events[0].type == "Warning" and pod.metadata.name in events[0].message
    registry = operator.ctx.metrics.registry
    assert registry.get_sample_value("logdistill_operator_pod_problems_total", {"reason": "Unschedulable"}) == 1

    # The pod becomes schedulable (the Job's selector cannot change: delete the pod, the Job makes a
    # new one on no node either) - instead, label a node so the scheduler places it: the problem clears.
    node = "core-1"
    apis["core"].patch_node(node, {"metadata": {"labels": NOWHERE}})
    try:
        wait_status(cluster, apis, namespace, "nowhere", lambda s: not problems(s) and s.get("phase") in (
            "Pending", "Distilling"), 20, "the problem cleared once the pod is scheduled")
        body = get_cr(apis, namespace, "nowhere")
        assert condition(body, "PodsHealthy")["status"] == "True"
    finally:
        apis["core"].patch_node(node, {"metadata": {"labels": {k: None for k in NOWHERE}}})


def test_a_classifier_pod_that_cannot_pull_its_image_is_named(cluster, apis, namespace, operator):
    create_cr(apis, namespace, "pull", BASE)
    complete_job_pod(cluster, apis, namespace, common.job_name("pull", 1), "v1")
    wait_phase(cluster, apis, namespace, "pull", "Ready", timeout=60)
    selector = ",".join(f"{k}={v}" for k, v in daemonset.selector_labels("pull").items())
    pod = cluster.wait_for(lambda: apis["core"].list_namespaced_pod(namespace, label_selector=selector).items, 10,
                           0.1, "a classifier pod")[0]
    image = pod.spec.containers[0].image
    message = f'Back-off pulling image "{image}": ErrImagePull: failed to resolve reference "{image}": not found'
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # What the kubelet reports for an image it cannot pull (kwok's stages only act on fresh pods).
    apis["core"].patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                        "message": "containers with unready status: [classify]", "lastTransitionTime": now},
                       {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady",
                        "lastTransitionTime": now}],
        "containerStatuses": [{"name": "classify", "image": image, "imageID": "", "ready": False, "restartCount": 0,
                               "started": False, "state": {"waiting": {"reason": "ImagePullBackOff",
                                                                       "message": message}}}],
    }})
    started = time.monotonic()

    def told(status):
        return any(p["reason"] == "ImagePullBackOff" and p["pod"].endswith(pod.metadata.name)
                   for p in problems(status)) and status.get("phase") == "RollingOut"

    body = wait_status(cluster, apis, namespace, "pull", told, 10, "the ImagePullBackOff classifier pod in the status")
    assert time.monotonic() - started < 10
    status = body["status"]
    assert f"pod {namespace}/{pod.metadata.name}: ImagePullBackOff" in status["message"]
    assert f"node {pod.spec.node_name}" in status["message"]
    assert condition(body, "Ready")["status"] == "False"
    assert condition(body, "RolledOut")["reason"] == "ImagePullBackOff"
    wait_events(cluster, apis, namespace, "pull", {"PodImagePullBackOff"})


def test_a_rollout_selector_matching_no_node_is_not_ready(cluster, apis, namespace, operator):
    create_cr(apis, namespace, "lonely", {**BASE, "rollout": {"nodeSelector": NOWHERE}})
    complete_job_pod(cluster, apis, namespace, common.job_name("lonely", 1), "v1")

    def told(status):
        # The DaemonSet controller's first status (observedGeneration) settles it: before that, the
        # message already says so but RolledOut is still a RollingUpdate.
        rolled = [c for c in status.get("conditions") or [] if c["type"] == "RolledOut"]
        return "no node matches rollout.nodeSelector" in status.get("message", "") \
            and bool(rolled) and rolled[0]["reason"] == "NoMatchingNodes"

    body = wait_status(cluster, apis, namespace, "lonely", told, 30, "the empty rollout explained")
    status = body["status"]
    assert status["phase"] == "RollingOut" and status["servingVersion"] == "v1"
    assert status["message"] == "version v1: no node matches rollout.nodeSelector {logdistill.io/test-nowhere: 'yes'}"
    assert condition(body, "RolledOut")["reason"] == "NoMatchingNodes"
    assert condition(body, "Ready")["status"] == "False"


def test_a_classifier_pod_whose_volume_does_not_mount_is_named_from_its_events(cluster, apis, namespace, operator):
    """A volume that does not mount leaves the pod in ContainerCreating; only its Warning events say
    why. The operator reads them (events list, in rbac.OPERATOR_RULES) once the grace has passed."""
    create_cr(apis, namespace, "mount", BASE)
    complete_job_pod(cluster, apis, namespace, common.job_name("mount", 1), "v1")
    wait_phase(cluster, apis, namespace, "mount", "Ready", timeout=60)
    selector = ",".join(f"{k}={v}" for k, v in daemonset.selector_labels("mount").items())
    pod = apis["core"].list_namespaced_pod(namespace, label_selector=selector).items[0]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    mount_message = ('MountVolume.SetUp failed for volume "logs-0" : hostPath type check failed: /var/log/pods is '
                     'not a directory')
    apis["core"].create_namespaced_event(namespace, {  # what the kubelet posts
        "metadata": {"name": f"{pod.metadata.name}.failedmount"},
        "involvedObject": {"kind": "Pod", "apiVersion": "v1", "name": pod.metadata.name, "namespace": namespace,
                           "uid": pod.metadata.uid},
        "reason": "FailedMount", "message": mount_message, "type": "Warning",
        "source": {"component": "kubelet", "host": pod.spec.node_name},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1})
    apis["core"].patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {
        "phase": "Pending",
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now},
                       {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady",
                        "lastTransitionTime": now}],
        # The kubelet mounts every volume before the first (init) container: none has run.
        "initContainerStatuses": [{"name": c.name, "image": c.image, "imageID": "", "ready": False,
                                   "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}
                                  for c in pod.spec.init_containers or []],
        "containerStatuses": [{"name": "classify", "image": pod.spec.containers[0].image, "imageID": "",
                               "ready": False, "restartCount": 0, "started": False,
                               "state": {"waiting": {"reason": "ContainerCreating"}}}],
    }})

    def told(status):
        return any(p["reason"] == "FailedMount" for p in problems(status))

    # The grace (5 s) before the events are read, then a debounced reconcile: well within 15 s.
    body = wait_status(cluster, apis, namespace, "mount", told, 15, "the FailedMount classifier pod in the status")
    (problem,) = problems(body["status"])
    assert problem["pod"] == f"{namespace}/{pod.metadata.name}" and problem["node"] == pod.spec.node_name
    assert problem["message"] == f"FailedMount: {mount_message}"
    assert body["status"]["phase"] == "RollingOut" and mount_message in body["status"]["message"]
    wait_events(cluster, apis, namespace, "mount", {"PodFailedMount"})
