"""Scale-out (issue 8), operator side: job.workers > 1 labels soft targets in an Indexed Job, then
trains with torchrun across an Indexed Job of workers behind a headless Service.

Manifests are checked as pure data and on the real control plane (the Job controller creates the
pods, with their hostnames and subdomain); the worker pods are completed through the pod status
as a kubelet would, so the two-phase flow and the rank-0 summary are checked without the engine.
"""

from __future__ import annotations

import json
import time

import pytest
from kubernetes.client.rest import ApiException

from logdistill.operator import names
from logdistill.operator.manifests import common, distill
from logdistill.spec import DistilledModelSpec, SpecError, parse_spec

from test_operator_cluster import (  # noqa: F401 - fixtures
    SYNTHETIC_SUMMARY, apis, cluster, condition, create_cr, get_cr, jobs_of, kubelet, operator, storage, teacher,
    wait_events, wait_phase,
)

OWNER = common.Owner(name="bgl", namespace="edge-ai", uid="1234-uid", generation=2)
IMAGES = common.Images(job="registry/logdistill:1", edge="registry/logdistill-edge:1")
TEACHER = {"checkpoint": "/artifacts/teachers/t"}


def spec(**sections) -> DistilledModelSpec:
    return parse_spec({"teacher": TEACHER, **sections}, DistilledModelSpec)


# ---- pure manifests ----------------------------------------------------------------------------

def test_workers_are_validated():
    for bad in (0, 65, "three"):
        with pytest.raises(SpecError, match="workers"):
            spec(job={"workers": bad})
    with pytest.raises(SpecError, match="gpu"):
        spec(job={"gpu": 0})


def test_one_worker_is_the_single_job_of_before():
    job = distill.build_job(OWNER, spec(), IMAGES)
    assert job["metadata"]["name"] == "bgl-distill-g2"
    assert "completionMode" not in job["spec"] and "podFailurePolicy" not in job["spec"]
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["logdistill", "operator", "job-run"] and "--soft-targets" not in command
    assert "subdomain" not in job["spec"]["template"]["spec"]


def test_label_job_is_indexed_with_one_shard_per_worker():
    s = spec(job={"workers": 3, "backoffLimit": 2, "gpu": 1,
                  "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]})
    job = distill.build_label_job(OWNER, s, IMAGES)
    assert job["metadata"]["name"] == "bgl-label-g2"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "1234-uid"
    js = job["spec"]
    assert (js["completionMode"], js["completions"], js["parallelism"]) == ("Indexed", 3, 3)
    assert js["backoffLimitPerIndex"] == 2 and "backoffLimit" not in js  # a failed index retries alone
    container = js["template"]["spec"]["containers"][0]
    assert container["command"] == [
        "logdistill", "label", "--config", "/etc/logdistill/spec.yaml", "--shard-index", "$(JOB_COMPLETION_INDEX)",
        "--shards", "3", "--out", "/artifacts/models/bgl/g2/soft-targets"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert js["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_distributed_job_runs_torchrun_with_static_rendezvous_at_pod_zero():
    s = spec(job={"workers": 3, "resources": {"requests": {"cpu": "2"}}})
    job = distill.build_job(OWNER, s, IMAGES)
    js = job["spec"]
    assert (js["completionMode"], js["completions"], js["parallelism"]) == ("Indexed", 3, 3)
    assert js["backoffLimit"] == 0
    rules = js["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["operator"] == "NotIn"
    pod = js["template"]["spec"]
    assert pod["subdomain"] == "bgl-distill-g2"
    command = pod["containers"][0]["command"]
    assert command[:9] == [
        "torchrun", "--nnodes=3", "--nproc-per-node=1", "--node-rank=$(JOB_COMPLETION_INDEX)",
        "--rdzv-backend=static", "--rdzv-endpoint=bgl-distill-g2-0.bgl-distill-g2:29500", "--max-restarts=0",
        "--no-python", "logdistill"]
    rest = command[9:]
    assert rest[:2] == ["operator", "job-run"]
    assert rest[rest.index("--") + 1:] == ["--soft-targets", "/artifacts/models/bgl/g2/soft-targets"]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "2"}}
    svc = distill.build_rendezvous_service(OWNER, s)
    assert svc["metadata"]["name"] == "bgl-distill-g2"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {"job-name": "bgl-distill-g2"}


# ---- on the real control plane -----------------------------------------------------------------

def _pods(apis, ns, job_name):
    return apis["core"].list_namespaced_pod(ns, label_selector=f"job-name={job_name}").items


def _index(pod) -> str:
    return pod.metadata.annotations[names.COMPLETION_INDEX_ANNOTATION]


def wait_pods_running(cluster, apis, ns, job_name, count):
    def running():
        pods = _pods(apis, ns, job_name)
        ready = [p for p in pods if p.status.phase == "Running" and p.status.pod_ip]
        return sorted(ready, key=_index) if len(ready) == count else None

    return cluster.wait_for(running, 30, 0.05, f"{count} Running pods of {job_name}")


def complete(apis, ns, pod, message: str = "") -> None:
    """What a kubelet reports for a container that exited 0 (with ``message`` as termination message)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    apis["core"].patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {
        "phase": "Succeeded",
        "containerStatuses": [{"name": "distill", "image": "x", "imageID": "", "ready": False, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message,
                                                        "startedAt": now, "finishedAt": now}}}],
    }})


def test_three_workers_label_then_train_and_the_summary_comes_from_index_0(cluster, apis, namespace, operator):
    ns = namespace
    create_cr(apis, ns, "wide", {"teacher": TEACHER, "job": {"workers": 3},
                                 "gate": {"minMacroF1": 0.1, "minRetention": 0.1}})
    # phase 1: the labelling Indexed Job, its 3 pods created by the Job controller
    label = cluster.wait_for(lambda: apis["batch"].read_namespaced_job("wide-label-g1", ns), 15, 0.05,
                             "the label Job", ignore=(ApiException,))
    body = get_cr(apis, ns, "wide")
    assert label.spec.completion_mode == "Indexed" and label.spec.completions == 3
    assert label.metadata.owner_references[0].uid == body["metadata"]["uid"]
    pods = wait_pods_running(cluster, apis, ns, "wide-label-g1", 3)
    assert [_index(p) for p in pods] == ["0", "1", "2"]
    assert [p.spec.hostname for p in pods] == ["wide-label-g1-0", "wide-label-g1-1", "wide-label-g1-2"]
    env = {e.name for e in pods[0].spec.containers[0].env}
    assert {"JOB_COMPLETION_INDEX", "POD_NAME", "POD_NAMESPACE"} <= env
    wait_phase(cluster, apis, ns, "wide", {"Pending", "Distilling"})
    with pytest.raises(ApiException):  # no training before every shard is labelled
        apis["batch"].read_namespaced_job("wide-distill-g1", ns)
    for pod in pods[:2]:
        complete(apis, ns, pod)
    assert not [j for j in jobs_of(apis, ns, "wide") if j.metadata.name == "wide-distill-g1"]
    complete(apis, ns, pods[2])

    # phase 2: the distributed Indexed Job + headless Service, created once labelling is Complete
    job = cluster.wait_for(lambda: apis["batch"].read_namespaced_job("wide-distill-g1", ns), 30, 0.05,
                           "the distributed Job after labelling", ignore=(ApiException,))
    assert job.spec.completion_mode == "Indexed" and job.spec.parallelism == 3
    assert job.spec.pod_failure_policy.rules[0].action == "FailJob"
    svc = apis["core"].read_namespaced_service("wide-distill-g1", ns)
    assert svc.spec.cluster_ip == "None" and svc.spec.publish_not_ready_addresses is True
    assert svc.spec.selector == {"job-name": "wide-distill-g1"}
    assert svc.metadata.owner_references[0].uid == body["metadata"]["uid"]
    workers = wait_pods_running(cluster, apis, ns, "wide-distill-g1", 3)
    assert [(p.spec.hostname, p.spec.subdomain) for p in workers] == [
        (f"wide-distill-g1-{i}", "wide-distill-g1") for i in range(3)]
    command = workers[1].spec.containers[0].command
    assert command[0] == "torchrun" and "--rdzv-endpoint=wide-distill-g1-0.wide-distill-g1:29500" in command
    assert "--soft-targets" in command
    # rank 0 reports; another worker's termination message must not be read
    wrong = json.dumps({**SYNTHETIC_SUMMARY, "version": "from-index-2", "gatePassed": False})
    complete(apis, ns, workers[2], wrong)
    complete(apis, ns, workers[1])
    complete(apis, ns, workers[0], json.dumps({**SYNTHETIC_SUMMARY, "version": "from-index-0"}))
    body = wait_phase(cluster, apis, ns, "wide", "Ready", timeout=60)
    assert body["status"]["evaluation"]["version"] == "from-index-0"
    assert body["status"]["servingVersion"] == "from-index-0"
    assert condition(body, "GatePassed")["status"] == "True"
    wait_events(cluster, apis, ns, "wide", {"LabellingStarted", "JobCreated", "PhaseReady"})


def test_a_lost_worker_fails_the_run_with_its_reason(cluster, apis, namespace, operator):
    ns = namespace
    create_cr(apis, ns, "lossy", {"teacher": TEACHER, "job": {"workers": 2}})
    cluster.wait_for(lambda: apis["batch"].read_namespaced_job("lossy-label-g1", ns), 15, 0.05, "the label Job",
                     ignore=(ApiException,))
    for pod in wait_pods_running(cluster, apis, ns, "lossy-label-g1", 2):
        complete(apis, ns, pod)
    cluster.wait_for(lambda: apis["batch"].read_namespaced_job("lossy-distill-g1", ns), 30, 0.05,
                     "the distributed Job", ignore=(ApiException,))
    workers = wait_pods_running(cluster, apis, ns, "lossy-distill-g1", 2)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    apis["core"].patch_namespaced_pod_status(workers[1].metadata.name, ns, {"status": {
        "phase": "Failed",
        "containerStatuses": [{"name": "distill", "image": "x", "imageID": "", "ready": False, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "",
                                                        "startedAt": now, "finishedAt": now}}}],
    }})
    body = wait_phase(cluster, apis, ns, "lossy", "Failed", timeout=60)
    distilled = condition(body, "Distilled")
    assert distilled["status"] == "False"
    assert workers[1].metadata.name in distilled["message"] and "137" in distilled["message"], distilled


# ---- the real engine under the operator's manifests ---------------------------------------------

def run_together(kubelet, pods, ports=None, hosts=None, timeout=400):
    """Run the pods' containers at the same time (as the nodes would), then record each outcome in
    its pod status. ``hosts`` stands in for cluster DNS (name -> address in the command line)."""
    import subprocess

    prepared = [kubelet.prepare(pod, ports=ports) for pod in pods]
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    running = []
    for prep in prepared:
        argv = list(prep.argv)
        for name, address in (hosts or {}).items():
            argv = [a.replace(name, address) for a in argv]
        log = open(prep.log_path, "wb")
        running.append((subprocess.Popen(argv, env=prep.env, cwd=prep.cwd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True), log))
    codes = []
    for proc, log in running:
        try:
            codes.append(proc.wait(timeout=timeout))
        finally:
            log.close()
    for prep, code in zip(prepared, codes):
        kubelet.write_terminated(prep, code, started, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    assert codes == [0] * len(pods), "\n".join(f"--- {p.pod.metadata.name}\n{kubelet.logs_of(p)[-3000:]}"
                                                for p in prepared)


@pytest.mark.torch
@pytest.mark.slow  # 40-90 s here: the real engine under the operator; -m "not slow" skips it
def test_two_workers_run_for_real_label_shards_then_torchrun(cluster, apis, namespace, operator, kubelet, teacher):
    """The pods' commands as the operator wrote them: `logdistill label` per completion index, then
    torchrun (static rendezvous, node rank = completion index) around the job runner on 2 pods.
    The one thing not real here is cluster DNS: `<job>-0.<service>` is replaced by 127.0.0.1."""
    from helpers.controlplane import free_ports
    from test_operator_cluster import tiny_spec

    ns = namespace
    spec_body = tiny_spec(teacher)
    spec_body["job"] = {**spec_body["job"], "workers": 2}
    create_cr(apis, ns, "duo", spec_body)
    label_pods = [p.metadata.name for p in wait_pods_running(cluster, apis, ns, "duo-label-g1", 2)]
    run_together(kubelet, label_pods)
    shards = kubelet.volume_map["artifacts"] / "models" / "duo" / "g1" / "soft-targets"
    assert sorted(p.name for p in shards.glob("shard-*.npz")) == ["shard-0-of-2.npz", "shard-1-of-2.npz"]

    workers = [p.metadata.name for p in wait_pods_running(cluster, apis, ns, "duo-distill-g1", 2)]
    port, = free_ports(1)
    run_together(kubelet, workers, ports={distill.RDZV_PORT: port}, hosts={"duo-distill-g1-0.duo-distill-g1": "127.0.0.1"})
    body = wait_phase(cluster, apis, ns, "duo", "Ready", timeout=60)
    ev = body["status"]["evaluation"]
    assert ev["gatePassed"] is True and ev["generation"] == 1
    assert body["status"]["servingVersion"] == ev["version"]
    assert (kubelet.volume_map["artifacts"] / "models" / "duo" / "g1" / "manifest.json").is_file()
