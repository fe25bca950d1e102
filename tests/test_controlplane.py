"""Smoke tests of the test infrastructure itself: the real control plane, kwok nodes and LocalKubelet."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers.controlplane import CommandError, ControlPlane, ControlPlaneError
from helpers.kubelet import LocalKubelet, _expand, _PathRewriter

EDGE = "node-role.kubernetes.io/edge"


def manifest(obj: dict) -> str:
    return json.dumps(obj)


# ---- no cluster needed ----------------------------------------------------------------------


def test_missing_binaries_fail_with_instructions(tmp_path):
    with pytest.raises(ControlPlaneError, match="make cluster-bin") as info:
        ControlPlane(bin_path=tmp_path).start()
    assert "kube-apiserver" in str(info.value)


@pytest.mark.cluster  # needs the binaries, not the shared control plane
def test_a_component_that_dies_fails_startup_with_its_log():
    with pytest.raises(ControlPlaneError, match=r"(?s)kube-apiserver exited with \d+.*no-such-flag"):
        with ControlPlane(extra_args={"kube-apiserver": ["--no-such-flag"]}):
            pass


def test_path_rewriter_maps_whole_components_longest_first(tmp_path):
    rewrite = _PathRewriter({"/data": tmp_path / "d", "/data/out": tmp_path / "o",
                             "/dev/termination-log": tmp_path / "t"})
    assert rewrite("--in=/data/x.log --out /data/out/model") == f"--in={tmp_path}/d/x.log --out {tmp_path}/o/model"
    assert rewrite("/mnt/data /database open('/dev/termination-log','w')") == (
        f"/mnt/data /database open('{tmp_path}/t','w')"
    )


def test_env_expansion_follows_kubernetes_rules():
    assert _expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"


# ---- on the real control plane --------------------------------------------------------------


def test_nodes_are_ready_with_their_labels(control_plane):
    nodes = client.CoreV1Api(control_plane.api_client()).list_node().items
    ready = {n.metadata.name for n in nodes if any(c.type == "Ready" and c.status == "True"
                                                    for c in n.status.conditions or [])}
    assert ready == {"edge-1", "edge-2", "core-1"}
    edge = {n.metadata.name for n in nodes if EDGE in (n.metadata.labels or {})}
    assert edge == {"edge-1", "edge-2"}


def test_crd_cel_rule_rejects_a_bad_object(control_plane, namespace):
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "ranges.smoke.logdistill.io"},
        "spec": {
            "group": "smoke.logdistill.io",
            "names": {"kind": "Range", "plural": "ranges", "singular": "range"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                    "type": "object",
                    "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                    "x-kubernetes-validations": [{"rule": "self.min <= self.max",
                                                  "message": "min must not exceed max"}],
                }}}},
            }],
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=manifest(crd))
    try:
        control_plane.kubectl("wait", "--for=condition=Established", "crd/ranges.smoke.logdistill.io", "--timeout=30s")

        def obj(name, lo, hi):
            return manifest({"apiVersion": "smoke.logdistill.io/v1", "kind": "Range",
                             "metadata": {"name": name, "namespace": namespace}, "spec": {"min": lo, "max": hi}})

        control_plane.kubectl("apply", "-f", "-", input=obj("good", 1, 2))
        with pytest.raises(CommandError, match="min must not exceed max"):
            control_plane.kubectl("apply", "-f", "-", input=obj("bad", 3, 2))
    finally:
        control_plane.kubectl("delete", "crd", "ranges.smoke.logdistill.io", "--wait=false")


def test_daemonset_with_edge_selector_lands_on_exactly_the_edge_nodes(control_plane, namespace):
    labels = {"app": "probe"}
    ds = {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "probe", "namespace": namespace},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"nodeSelector": {EDGE: ""},
                     "containers": [{"name": "probe", "image": "registry.invalid/probe:0", "command": ["true"]}]},
        }},
    }
    control_plane.kubectl("apply", "-f", "-", input=manifest(ds))
    apps = client.AppsV1Api(control_plane.api_client())
    core = client.CoreV1Api(control_plane.api_client())
    control_plane.wait_for(lambda: (apps.read_namespaced_daemon_set_status("probe", namespace).status.number_ready
                                    or 0) == 2, 30, what="2 ready DaemonSet pods")
    pods = core.list_namespaced_pod(namespace, label_selector="app=probe").items
    assert sorted(p.spec.node_name for p in pods) == ["edge-1", "edge-2"]
    assert apps.read_namespaced_daemon_set_status("probe", namespace).status.desired_number_scheduled == 2


def _job(namespace: str, name: str, script: str, policy: str = "File") -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": namespace},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "main", "image": "registry.invalid/logdistill:0",
                "command": ["python", "-c", script],
                "args": ["/etc/smoke/greeting", "$(POD_NAME)"],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "MOOD", "valueFrom": {"configMapKeyRef": {"name": "smoke", "key": "mood"}}},
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "smoke", "key": "token"}}}],
                "volumeMounts": [{"name": "config", "mountPath": "/etc/smoke"}],
                "terminationMessagePolicy": policy,
            }],
            "volumes": [{"name": "config", "configMap": {"name": "smoke"}}],
        }}},
    }


def _smoke_config(core: client.CoreV1Api, namespace: str, greeting: str, mood: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "smoke"},
                                                  "data": {"greeting": greeting, "mood": mood}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "smoke"}, "stringData": {"token": "s3cret"}})


def _condition(batch: client.BatchV1Api, namespace: str, name: str, kind: str) -> bool:
    conditions = batch.read_namespaced_job_status(name, namespace).status.conditions or []
    return any(c.type == kind and c.status == "True" for c in conditions)


def test_job_completes_with_termination_message_through_local_kubelet(control_plane, namespace):
    core = client.CoreV1Api(control_plane.api_client())
    batch = client.BatchV1Api(control_plane.api_client())
    _smoke_config(core, namespace, "hello", "calm")
    script = ("import os, sys; greeting = open(sys.argv[1]).read(); env = os.environ; "
              "message = f'{greeting} from {sys.argv[2]} ({env[\"MOOD\"]}, {env[\"TOKEN\"]})'; "
              "open('/dev/termination-log', 'w').write(message)")
    control_plane.kubectl("apply", "-f", "-", input=manifest(_job(namespace, "smoke", script)))
    with LocalKubelet(control_plane.api_client(), namespace) as kubelet:
        pod_name = kubelet.find_pod("job-name=smoke")
        assert kubelet.run_pod(pod_name) == 0, kubelet.logs(pod_name)
    started = time.monotonic()
    control_plane.wait_for(lambda: _condition(batch, namespace, "smoke", "Complete"), 30, what="Job smoke Complete")
    completion_s = time.monotonic() - started
    terminated = core.read_namespaced_pod(pod_name, namespace).status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert terminated.message == f"hello from {pod_name} (calm, s3cret)"
    assert completion_s < 30


def test_failed_job_falls_back_to_log_tail(control_plane, namespace):
    core = client.CoreV1Api(control_plane.api_client())
    batch = client.BatchV1Api(control_plane.api_client())
    _smoke_config(core, namespace, "x", "m")
    script = "import sys; print('step 1 ok'); print('boom: no such model', file=sys.stderr); sys.exit(3)"
    control_plane.kubectl("apply", "-f", "-",
                          input=manifest(_job(namespace, "crash", script, policy="FallbackToLogsOnError")))
    with LocalKubelet(control_plane.api_client(), namespace) as kubelet:
        pod_name, exit_code = kubelet.run_job("crash")
        assert exit_code == 3
    control_plane.wait_for(lambda: _condition(batch, namespace, "crash", "Failed"), 30, what="Job crash Failed")
    pod = core.read_namespaced_pod(pod_name, namespace)
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Failed"
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert terminated.message == "step 1 ok\nboom: no such model\n"


def test_long_running_pod_serves_on_a_mapped_port(control_plane, namespace):
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server", "namespace": namespace},
        "spec": {"nodeName": "edge-1", "containers": [{
            "name": "http", "image": "registry.invalid/http:0",
            "command": ["python", "-m", "http.server", "--bind", "127.0.0.1", "--directory", "/srv", "8080"],
            "ports": [{"containerPort": 8080}],
            "volumeMounts": [{"name": "site", "mountPath": "/srv"}],
        }], "volumes": [{"name": "site", "emptyDir": {}}]},
    }
    control_plane.kubectl("apply", "-f", "-", input=manifest(pod))
    with LocalKubelet(control_plane.api_client(), namespace) as kubelet:
        handle = kubelet.start_pod("server")
        (handle.prepared.mounts["/srv"] / "index.html").write_text("served")
        assert handle.wait_http(8080, "/index.html") == b"served"
        assert handle.stop() == 128 + 15  # SIGTERM, as a container runtime reports it
        assert not handle.alive()


def test_restricted_namespace_refuses_a_privileged_pod(control_plane, namespace):
    control_plane.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    core = client.CoreV1Api(control_plane.api_client())

    def pod(name: str, security: dict, pod_security: dict | None = None) -> dict:
        return {"metadata": {"name": name}, "spec": {
            "securityContext": pod_security or {},
            "containers": [{"name": "c", "image": "registry.invalid/c:0", "securityContext": security}]}}

    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod(namespace, pod("privileged", {"privileged": True}))
    assert info.value.status == 403 and "violates PodSecurity" in info.value.body
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    core.create_namespaced_pod(namespace, pod("restricted", restricted,
                                              {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}))
