"""The operator on a real control plane (kube-apiserver, etcd, controllers, scheduler, kwok nodes).

The operator runs in-process (kopf in a background thread, one per test, watching only the
test's namespace); the distillation Job's pod is run for real by LocalKubelet (its command, from
the pod spec, as a local process that writes a real artifact), and kwok marks the DaemonSet's pods
Running/Ready on the edge nodes. Every wait is a condition with a timeout.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers.kubelet import LocalKubelet
from logdistill.operator import names
from logdistill.operator.crd import CRD_NAME, CRD_PATH
from logdistill.operator.main import OperatorThread
from logdistill.operator.manifests import claims, common
from logdistill.operator.names import GROUP, PLURAL, VERSION
from logdistill.spec import DistilledModelSpec, SpecError, parse_spec

ROOT = Path(__file__).resolve().parent.parent
BGL_2K = ROOT / "model" / "data" / "BGL_2k.log"
EDGE_NODES = {"edge-1", "edge-2"}
BASE = {"teacher": {"checkpoint": "/artifacts/teachers/t"}}

# (id, spec patch, field the API server's error must name)
INVALID = [
    ("two-teacher-sources", {"teacher": {"checkpoint": "/t", "endpoint": {"url": "http://x/v1", "model": "m"}}},
     "teacher"),
    ("no-teacher-source", {"teacher": {}}, "teacher"),
    ("ensemble-of-one", {"teacher": {"ensemble": [{"checkpoint": "/a"}]}}, "ensemble"),
    ("endpoint-url-scheme", {"teacher": {"endpoint": {"url": "ftp://x", "model": "m"}}}, "url"),
    ("hidden-not-multiple-of-heads", {"student": {"hidden": 130, "heads": 4}}, "hidden"),
    ("pretrained-missing", {"student": {"init": "pretrained"}}, "pretrained"),
    ("layers-zero", {"student": {"layers": 0}}, "layers"),
    ("layers-wrong-type", {"student": {"layers": "two"}}, "layers"),
    ("init-enum", {"student": {"init": "random"}}, "init"),
    ("unknown-student-field", {"student": {"depth": 3}}, "depth"),
    ("fractions-sum", {"data": {"testFraction": 0.5, "devFraction": 0.45}}, "testFraction"),
    ("data-format-enum", {"data": {"format": "xml"}}, "format"),
    ("alpha-above-one", {"training": {"alpha": 1.5}}, "alpha"),
    ("temperature-zero", {"training": {"temperature": 0}}, "temperature"),
    ("epochs-zero", {"training": {"epochs": 0}}, "epochs"),
    ("gate-f1-zero", {"gate": {"minMacroF1": 0}}, "minMacroF1"),
    ("gate-retention-above-one", {"gate": {"minRetention": 1.5}}, "minRetention"),
    ("unknown-top-level-field", {"foo": 1}, "foo"),
    ("backoff-too-high", {"job": {"backoffLimit": 11}}, "backoffLimit"),
    ("deadline-too-short", {"job": {"activeDeadlineSeconds": 10}}, "activeDeadlineSeconds"),
    ("pull-policy-enum", {"job": {"imagePullPolicy": "Sometimes"}}, "imagePullPolicy"),
    ("cpu-quantity", {"job": {"resources": {"requests": {"cpu": "lots"}}}}, "cpu"),
    ("toleration-exists-with-value", {"job": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}},
     "value"),
    ("toleration-effect-enum", {"rollout": {"tolerations": [{"key": "k", "effect": "Sometimes"}]}}, "effect"),
    ("node-selector-key", {"rollout": {"nodeSelector": {"bad key!": ""}}}, "nodeSelector"),
    ("log-path-relative", {"rollout": {"logPaths": ["var/log/x.log"]}}, "logPaths"),
    ("port-privileged", {"rollout": {"port": 80}}, "port"),
    ("max-unavailable-zero", {"rollout": {"maxUnavailable": 0}}, "maxUnavailable"),
    ("api-port-is-the-metrics-port", {"rollout": {"port": 9500, "apiPort": 9500}}, "apiPort"),
    ("teacher-metrics-port-is-its-api-port", {"escalation": {"port": 8000, "metricsPort": 8000}}, "metricsPort"),
    ("subpath-parent", {"storage": {"persistentVolumeClaim": {"subPath": "a/../etc"}}}, "subPath"),
    ("claim-name", {"storage": {"persistentVolumeClaim": {"claimName": "Bad_Name"}}}, "claimName"),
]


def merged(patch: dict) -> dict:
    spec = copy.deepcopy(BASE)
    for key, value in patch.items():
        spec[key] = value
    return spec


def cr(name: str, spec: dict) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DistilledModel", "metadata": {"name": name}, "spec": spec}


# ---- the same cases through pydantic (no cluster): both layers refuse them ---------------------

@pytest.mark.parametrize("case, patch, field", [c for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_spec_is_refused_by_the_models(case, patch, field):
    with pytest.raises(SpecError) as err:
        parse_spec(merged(patch), DistilledModelSpec)
    assert field in str(err.value)


# ---- fixtures ----------------------------------------------------------------------------------

def wait_established(cluster, crd_name: str) -> None:
    """`kubectl wait` errors out when the CRD has no status yet: poll the condition instead."""
    ext = client.ApiextensionsV1Api(cluster.api_client())

    def established():
        conditions = ext.read_custom_resource_definition(crd_name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    cluster.wait_for(established, 30, 0.05, f"CRD {crd_name} Established")


@pytest.fixture(scope="module")
def cluster(control_plane):
    """The control plane with the generated CRD installed and KUBECONFIG pointing at it."""
    control_plane.kubectl("apply", "-f", ROOT / CRD_PATH)
    wait_established(control_plane, CRD_NAME)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(control_plane.kubeconfig))  # kopf's login reads it
        from kubernetes import config

        config.load_kube_config(config_file=str(control_plane.kubeconfig))
        yield control_plane


@pytest.fixture
def apis(cluster):
    api = cluster.api_client()
    return {"custom": client.CustomObjectsApi(api), "batch": client.BatchV1Api(api),
            "core": client.CoreV1Api(api), "apps": client.AppsV1Api(api)}


@pytest.fixture
def storage(cluster, namespace, apis):
    """A pre-bound PV + PVC named like the spec default, bound before the test starts, so pods using
    it schedule and the scheduler's words are about the test's own cause.

    The PV controller binds a claim only once its informer has the volume; a claim that arrives
    first waits for the controller's 15 s resync. So: the volume, seen (Available), then the claim."""
    pv_name = f"pv-{namespace}"[:63]
    apis["core"].create_persistent_volume({
        "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "manual",
                 "hostPath": {"path": f"/tmp/{pv_name}"}, "persistentVolumeReclaimPolicy": "Retain",
                 "claimRef": {"namespace": namespace, "name": "logdistill-artifacts"}},
    })
    cluster.wait_for(lambda: apis["core"].read_persistent_volume(pv_name).status.phase == "Available", 30, 0.05,
                     f"PersistentVolume {pv_name} seen by the PV controller")
    apis["core"].create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "logdistill-artifacts"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual", "volumeName": pv_name,
                 "resources": {"requests": {"storage": "1Gi"}}},
    })
    cluster.wait_for(lambda: apis["core"].read_namespaced_persistent_volume_claim(
        "logdistill-artifacts", namespace).status.phase == "Bound", 30, 0.05, "the artifacts claim bound")
    yield
    apis["core"].delete_persistent_volume(pv_name)


@pytest.fixture
def operator(cluster, namespace, storage):
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    op = OperatorThread(namespaces=[namespace], api_client=api).start()
    yield op
    op.stop()


_TEACHERS: dict[str, Path] = {}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A real tiny teacher trained on the bundled BGL 2k sample (seconds; built once per session and
    shared with the modules that import this fixture)."""
    pytest.importorskip("torch")
    from helpers.tiny_models import build_tiny_teacher
    from logdistill.model.runtime.data import read_logs

    if "bgl" not in _TEACHERS:
        records = read_logs(BGL_2K, "loghub").records
        _TEACHERS["bgl"] = build_tiny_teacher(tmp_path_factory.mktemp("teacher"), [r.label for r in records],
                                              [r.text for r in records], epochs=3)
    return _TEACHERS["bgl"]


def service_account_kubeconfig(cluster, namespace, name, rules, path: Path) -> Path:
    """A ServiceAccount bound to exactly ``rules`` in ``namespace``, and a kubeconfig with its token."""
    api = cluster.api_client()
    rbac, core = client.RbacAuthorizationV1Api(api), client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
    token = core.create_namespaced_service_account_token(name, namespace,
                                                         {"spec": {"expirationSeconds": 3600}}).status.token
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {"server": cluster.server,
                                               "certificate-authority": str(cluster.ca_file)}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": namespace}}],
    }))
    return path


@pytest.fixture
def kubelet(cluster, namespace, tmp_path):
    """Runs Job pods locally with the credentials of a ServiceAccount bound to rbac.JOB_RULES only
    (what spec.job.serviceAccountName should grant), so progress publishing is tested under them."""
    from logdistill.operator.rbac import JOB_RULES

    job_kubeconfig = service_account_kubeconfig(cluster, namespace, "distiller", JOB_RULES, tmp_path / "job.kubeconfig")
    with LocalKubelet(cluster.api_client(), namespace, volume_map={"artifacts": tmp_path / "artifacts"},
                      env_overrides={"KUBECONFIG": str(job_kubeconfig)}) as k:
        yield k


def tiny_spec(teacher: Path, **gate) -> dict:
    return {
        "teacher": {"checkpoint": str(teacher)},
        "student": {"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64, "maxLength": 32, "init": "scratch"},
        "data": {"path": str(BGL_2K)},
        "training": {"epochs": 1, "batchSize": 64, "threads": 1},
        "gate": {"minMacroF1": 0.01, "minRetention": 0.01, **gate},
        "job": {"backoffLimit": 0},  # one pod per Job: the test runs it
    }


# ---- helpers -----------------------------------------------------------------------------------

def get_cr(apis, ns, name) -> dict:
    return apis["custom"].get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def create_cr(apis, ns, name, spec) -> dict:
    return apis["custom"].create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, cr(name, spec))


def jobs_of(apis, ns, name) -> list:
    return apis["batch"].list_namespaced_job(ns, label_selector=f"{names.MODEL_LABEL}={name}").items


def wait_phase(cluster, apis, ns, name, phases, timeout=90, generation=None) -> dict:
    phases = {phases} if isinstance(phases, str) else set(phases)
    seen = {}

    def check():
        body = get_cr(apis, ns, name)
        status = body.get("status") or {}
        seen["status"] = status
        if generation is not None and status.get("observedGeneration") != generation:
            return None
        return body if status.get("phase") in phases else None

    try:
        return cluster.wait_for(check, timeout, 0.1, f"{ns}/{name} phase in {sorted(phases)}")
    except TimeoutError as err:
        raise TimeoutError(f"{err}; last status: {json.dumps(seen.get('status'), indent=1)}") from None


def wait_job(cluster, apis, ns, name, generation, timeout=20):
    job_name = common.job_name(name, generation)
    return cluster.wait_for(lambda: apis["batch"].read_namespaced_job(job_name, ns), timeout, 0.05,
                            f"Job {job_name}", ignore=(ApiException,))


def run_job_pod(kubelet, name, generation, timeout=300, retrain=0) -> int:
    pod = kubelet.find_pod(f"job-name={common.job_name(name, generation, retrain)}", timeout=30)
    kubelet.wait_running(pod, timeout=30)
    return kubelet.run_pod(pod, timeout=timeout)


def condition(body, kind) -> dict:
    return next(c for c in body["status"]["conditions"] if c["type"] == kind)


def event_reasons(apis, ns, name) -> set[str]:
    events = apis["core"].list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    return {e.reason for e in events}


def wait_events(cluster, apis, ns, name, expected: set[str], timeout=15) -> set[str]:
    """kopf posts Events from a background queue: wait for them rather than read once."""
    seen: set[str] = set()

    def posted():
        seen.clear()
        seen.update(event_reasons(apis, ns, name))
        return expected <= seen

    try:
        cluster.wait_for(posted, timeout, 0.1, f"Events {sorted(expected)} on {ns}/{name}")
    except TimeoutError as err:
        raise TimeoutError(f"{err}; seen: {sorted(seen)}") from None
    return seen


# ---- invalid objects are refused by the API server -------------------------------------------

@pytest.mark.parametrize("case, patch, field", [c for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_cr_is_refused_by_the_api_server(cluster, apis, namespace, case, patch, field):
    with pytest.raises(ApiException) as err:
        apis["custom"].create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cr("bad", merged(patch)),
                                                       dry_run="All", field_validation="Strict")
    assert err.value.status in (400, 422), err.value.body
    assert field in err.value.body, err.value.body


def test_name_too_long_is_refused(cluster, apis, namespace):
    with pytest.raises(ApiException) as err:
        apis["custom"].create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cr("n" * 53, BASE),
                                                       dry_run="All")
    assert "metadata.name" in err.value.body


def test_valid_cr_gets_the_schema_defaults(cluster, apis, namespace):
    body = apis["custom"].create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cr("ok", BASE),
                                                         dry_run="All", field_validation="Strict")
    spec = body["spec"]
    assert spec["rollout"]["nodeSelector"] == {"node-role.kubernetes.io/edge": ""}
    assert spec["student"]["hidden"] == 128 and spec["storage"]["persistentVolumeClaim"]["subPath"] == "models"
    parse_spec(spec, DistilledModelSpec)  # what the API server stores, the operator accepts


# ---- the contract --------------------------------------------------------------------------------

def test_contract_example_gets_an_owned_job_and_status_within_10s(cluster, apis, namespace, operator):
    started = time.monotonic()
    cluster.kubectl("apply", "-n", namespace, "-f", ROOT / "examples" / "distilledmodel.yaml")
    name = yaml.safe_load((ROOT / "examples" / "distilledmodel.yaml").read_text())["metadata"]["name"]

    def ready():
        body = get_cr(apis, namespace, name)
        status = body.get("status") or {}
        jobs = [j for j in jobs_of(apis, namespace, name)
                if any(r.uid == body["metadata"]["uid"] and r.kind == "DistilledModel"
                       for r in j.metadata.owner_references or [])]
        ok = jobs and "phase" in status and status.get("conditions") and "observedGeneration" in status
        return (body, jobs) if ok else None

    body, jobs = cluster.wait_for(ready, 10, 0.05, "an owned Job and a status within 10 s")
    assert time.monotonic() - started < 10
    assert [j.metadata.name for j in jobs] == [f"{name}-distill-g1"]
    assert body["status"]["observedGeneration"] == 1
    # no finalizer: the CR stays deletable while the operator is down
    assert not get_cr(apis, namespace, name)["metadata"].get("finalizers")


def test_cli_operator_with_peering_liveness_and_clean_shutdown(cluster, apis, namespace, storage, tmp_path):
    """`logdistill operator` as a process: kubeconfig, one namespace, kopf peering, liveness, SIGTERM."""
    import signal
    import subprocess
    import sys
    import urllib.request

    from helpers.controlplane import free_ports

    peering = subprocess.run([sys.executable, "-P", "-m", "logdistill", "operator", "crd", "--peering"],
                             capture_output=True, text=True, check=True, cwd="/").stdout
    cluster.kubectl("apply", "-f", "-", input=peering)
    wait_established(cluster, "kopfpeerings.kopf.dev")
    # kopf never creates the peering object itself: `logdistill operator` does (else kopf would wait).
    port, metrics_port = free_ports(2)
    log = open(tmp_path / "operator.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "logdistill", "operator", "--namespace", namespace, "--kubeconfig",
         str(cluster.kubeconfig), "--liveness", f"http://127.0.0.1:{port}/healthz", "--peering", "logdistill",
         "--metrics-port", str(metrics_port)],
        stdout=log, stderr=subprocess.STDOUT, cwd="/")
    try:
        def alive():
            assert proc.poll() is None, (tmp_path / "operator.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                    return resp.status == 200
            except OSError:
                return False

        cluster.wait_for(alive, 30, 0.1, "the operator's liveness endpoint")
        create_cr(apis, namespace, "cli", BASE)
        wait_job(cluster, apis, namespace, "cli", 1, timeout=15)
        wait_phase(cluster, apis, namespace, "cli", {"Pending", "Distilling"}, timeout=15)
        peering_obj = apis["custom"].get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings",
                                                                   "logdistill")
        assert peering_obj.get("status"), "the operator announces itself in the peering object"

        def scraped():
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as resp:
                text = resp.read().decode()
            counted = [f'logdistill_operator_distilledmodels{{namespace="{namespace}",phase="{p}"}} 1.0'
                       for p in ("Pending", "Distilling")]
            return text if any(c in text for c in counted) else None

        text = cluster.wait_for(scraped, 15, 0.2, "the CR counted by phase on /metrics", ignore=(OSError,))
        assert "logdistill_operator_reconcile_seconds_count" in text
        assert 'logdistill_operator_distillations_total{result="passed"} 0.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "operator.log").read_text()


# ---- whole scenarios -----------------------------------------------------------------------------

@pytest.mark.torch
def test_create_distil_gate_rollout_ready_degrade_then_delete(cluster, apis, namespace, operator, kubelet, teacher):
    create_cr(apis, namespace, "bgl", tiny_spec(teacher))
    wait_job(cluster, apis, namespace, "bgl", 1)
    wait_phase(cluster, apis, namespace, "bgl", {"Pending", "Distilling"})
    seen, stop = [], threading.Event()

    def watch_progress():  # what `kubectl get dm -w` would show while the Job runs
        while not stop.wait(0.2):
            progress = (get_cr(apis, namespace, "bgl").get("status") or {}).get("progress")
            if progress and progress not in seen:
                seen.append(progress)

    watcher = threading.Thread(target=watch_progress, daemon=True)
    watcher.start()
    try:
        assert run_job_pod(kubelet, "bgl", 1) == 0, kubelet.logs(kubelet.find_pod("job-name=bgl-distill-g1"))
    finally:
        stop.set()
        watcher.join()
    # progress reached the status while the Job ran (job runner -> pod annotation -> operator)
    assert any(p.get("stage") != "done" for p in seen), seen

    body = wait_phase(cluster, apis, namespace, "bgl", "Ready", timeout=60)
    status = body["status"]
    ev = status["evaluation"]
    assert ev["generation"] == 1 and ev["gatePassed"] is True and 0 <= ev["student"]["macroF1"] <= 1
    assert status["servingVersion"] == ev["version"] and status["servingGeneration"] == 1
    assert condition(body, "GatePassed")["status"] == "True"
    assert condition(body, "RolledOut")["status"] == "True"
    assert condition(body, "Ready")["observedGeneration"] == 1
    assert [h["version"] for h in status["history"]] == [ev["version"]]
    # progress was published by the job runner into the pod and copied into the status
    assert status["progress"]["percent"] == 100.0 and status["progress"]["generation"] == 1
    # the artifact really exists where the DaemonSet will read it
    assert (kubelet.volume_map["artifacts"] / "models" / "bgl" / "g1" / "manifest.json").is_file()

    table = cluster.kubectl("get", "dm", "bgl", "-n", namespace).stdout.split()
    assert table[:6] == ["NAME", "PHASE", "TEACHER-F1", "STUDENT-F1", "SERVING", "AGE"], table
    assert table[6:11] == ["bgl", "Ready", str(ev["teacher"]["macroF1"]), str(ev["student"]["macroF1"]),
                           ev["version"]], table
    ds = apis["apps"].read_namespaced_daemon_set("bgl-classifier", namespace)
    assert ds.spec.template.metadata.annotations[names.VERSION_ANNOTATION] == ev["version"]
    assert "/artifacts/models/bgl/g1" in ds.spec.template.spec.containers[0].command
    pods = apis["core"].list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=classifier").items
    assert {p.spec.node_name for p in pods} == EDGE_NODES  # exactly the edge-labelled nodes
    apis["core"].read_namespaced_service("bgl-classifier-metrics", namespace)
    wait_events(cluster, apis, namespace, "bgl", {"JobCreated", "RolloutStarted", "PhaseReady"})

    # a Service lost behind the operator's back is re-created by the next reconcile
    apis["core"].delete_namespaced_service("bgl-classifier-metrics", namespace)

    # a new generation that fails the gate: Degraded, the DaemonSet keeps serving generation 1
    apis["custom"].patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "bgl",
                                                  {"spec": {"gate": {"minMacroF1": 1.0}}})
    wait_job(cluster, apis, namespace, "bgl", 2)

    def service_back():
        try:
            return apis["core"].read_namespaced_service("bgl-classifier-metrics", namespace) is not None
        except ApiException:
            return False

    cluster.wait_for(service_back, 30, 0.2, "the deleted classifier Service to be re-created")
    assert run_job_pod(kubelet, "bgl", 2) == 0
    body = wait_phase(cluster, apis, namespace, "bgl", "Degraded", timeout=60, generation=2)
    status = body["status"]
    assert status["servingVersion"] == ev["version"] and status["servingGeneration"] == 1
    assert condition(body, "GatePassed")["status"] == "False"
    assert [h["gatePassed"] for h in status["history"]] == [True, False]
    ds = apis["apps"].read_namespaced_daemon_set("bgl-classifier", namespace)
    assert "/artifacts/models/bgl/g1" in ds.spec.template.spec.containers[0].command

    # deletion cascades through owner references
    apis["custom"].delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "bgl")

    def gone():
        left = (jobs_of(apis, namespace, "bgl")
                + apis["apps"].list_namespaced_daemon_set(namespace, label_selector=f"{names.MODEL_LABEL}=bgl").items
                + apis["core"].list_namespaced_config_map(namespace, label_selector=f"{names.MODEL_LABEL}=bgl").items)
        return not left

    cluster.wait_for(gone, 60, 0.2, "the CR's Job, ConfigMap and DaemonSet to be garbage-collected")


@pytest.mark.torch
def test_failing_gate_keeps_no_rollout(cluster, apis, namespace, operator, kubelet, teacher):
    create_cr(apis, namespace, "strict", tiny_spec(teacher, minMacroF1=1.0, minRetention=1.0))
    wait_job(cluster, apis, namespace, "strict", 1)
    assert run_job_pod(kubelet, "strict", 1) == 0
    body = wait_phase(cluster, apis, namespace, "strict", "Failed", timeout=60)
    gate = condition(body, "GatePassed")
    assert gate["status"] == "False" and gate["reason"] == "BelowThreshold"
    assert "min 1" in gate["message"] and "macro-F1" in gate["message"]
    assert body["status"]["evaluation"]["gatePassed"] is False
    assert body["status"].get("servingVersion") is None
    with pytest.raises(ApiException) as err:
        apis["apps"].read_namespaced_daemon_set("strict-classifier", namespace)
    assert err.value.status == 404
    wait_events(cluster, apis, namespace, "strict", {"GatePassedFalse", "PhaseFailed"})


@pytest.mark.torch
def test_failing_job_reports_the_engine_error(cluster, apis, namespace, operator, kubelet, tmp_path):
    create_cr(apis, namespace, "broken", tiny_spec(tmp_path / "no-such-teacher"))
    wait_job(cluster, apis, namespace, "broken", 1)
    assert run_job_pod(kubelet, "broken", 1) != 0
    body = wait_phase(cluster, apis, namespace, "broken", "Failed", timeout=60)
    distilled = condition(body, "Distilled")
    assert distilled["status"] == "False" and distilled["reason"] == "DistillationError"
    assert "no-such-teacher" in distilled["message"]
    assert "servingVersion" not in body["status"] or body["status"]["servingVersion"] is None


def test_job_succeeding_without_a_summary_is_a_failure(cluster, apis, namespace, operator, kubelet, teacher):
    create_cr(apis, namespace, "mute", tiny_spec(teacher))
    wait_job(cluster, apis, namespace, "mute", 1)
    pod = kubelet.find_pod("job-name=mute-distill-g1")
    kubelet.wait_running(pod)
    # A container that exits 0 and writes nothing to its termination-message path.
    prepared = kubelet.prepare(pod)
    kubelet.write_terminated(prepared, 0, "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z")
    body = wait_phase(cluster, apis, namespace, "mute", "Failed", timeout=60)
    distilled = condition(body, "Distilled")
    assert distilled["status"] == "False" and distilled["reason"] == "SummaryMissing"
    with pytest.raises(ApiException):
        apis["apps"].read_namespaced_daemon_set("mute-classifier", namespace)


@pytest.mark.torch
def test_spec_update_mid_run_supersedes_the_running_job(cluster, apis, namespace, operator, kubelet, teacher):
    create_cr(apis, namespace, "moving", tiny_spec(teacher))
    wait_job(cluster, apis, namespace, "moving", 1)
    kubelet.wait_running(kubelet.find_pod("job-name=moving-distill-g1"))
    wait_phase(cluster, apis, namespace, "moving", "Distilling")
    apis["custom"].patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "moving",
                                                  {"spec": {"gate": {"minMacroF1": 0.02}}})
    wait_job(cluster, apis, namespace, "moving", 2)

    def old_job_gone():
        return [j.metadata.name for j in jobs_of(apis, namespace, "moving")] == ["moving-distill-g2"]

    cluster.wait_for(old_job_gone, 30, 0.1, "the generation-1 Job to be deleted (superseded)")
    assert run_job_pod(kubelet, "moving", 2) == 0
    body = wait_phase(cluster, apis, namespace, "moving", "Ready", timeout=60, generation=2)
    assert body["status"]["servingGeneration"] == 2 and body["status"]["evaluation"]["generation"] == 2
    wait_events(cluster, apis, namespace, "moving", {"JobSuperseded"})


@pytest.mark.torch
def test_operator_restart_mid_reconcile_creates_no_second_job(cluster, apis, namespace, operator, kubelet, tmp_path):
    create_cr(apis, namespace, "restart", tiny_spec(tmp_path / "missing-teacher"))
    wait_job(cluster, apis, namespace, "restart", 1)
    wait_phase(cluster, apis, namespace, "restart", {"Pending", "Distilling"})
    operator.stop()
    # While the operator is down the Job runs and fails.
    assert run_job_pod(kubelet, "restart", 1) != 0
    from kubernetes import config

    second = OperatorThread(namespaces=[namespace],
                            api_client=config.new_client_from_config(config_file=str(cluster.kubeconfig))).start()
    try:
        body = wait_phase(cluster, apis, namespace, "restart", "Failed", timeout=60)
        assert [j.metadata.name for j in jobs_of(apis, namespace, "restart")] == ["restart-distill-g1"]
        assert body["status"]["observedGeneration"] == 1
        assert condition(body, "Distilled")["reason"] == "DistillationError"
    finally:
        second.stop()


# ---- least privilege -----------------------------------------------------------------------------

SYNTHETIC_SUMMARY = {
    "sha256": "0" * 64, "artifact": "/artifacts/x",
    "teacher": {"accuracy": 0.9, "macroF1": 0.8, "latencyMsP50": 5.0},
    "student": {"accuracy": 0.9, "macroF1": 0.75, "latencyMsP50": 0.3}, "retention": 0.94, "gatePassed": True,
}


def complete_job_pod(cluster, apis, ns, job_name, version):
    """What a kubelet reports for a distillation container that exited 0 with a summary."""
    def running():
        pods = apis["core"].list_namespaced_pod(ns, label_selector=f"job-name={job_name}").items
        return [p for p in pods if p.status.phase == "Running" and p.status.pod_ip]

    pod = cluster.wait_for(running, 30, 0.05, f"the pod of {job_name} Running")[0]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    message = json.dumps({**SYNTHETIC_SUMMARY, "version": version})
    apis["core"].patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {
        "phase": "Succeeded",
        "containerStatuses": [{"name": "distill", "image": "x", "imageID": "", "ready": False, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message,
                                                        "startedAt": now, "finishedAt": now}}}],
    }})


def test_operator_runs_under_the_least_privilege_rules(cluster, apis, namespace, storage, tmp_path):
    """The CLI operator with a ServiceAccount token bound to exactly rbac.operator_rules("namespaced"): create,
    supersede (delete), evaluate, roll out (create), roll out again (update), and never a 403."""
    import signal
    import subprocess
    import sys

    from helpers.controlplane import free_ports
    from logdistill.operator.rbac import operator_rules

    peering = subprocess.run([sys.executable, "-P", "-m", "logdistill", "operator", "crd", "--peering"],
                             capture_output=True, text=True, check=True, cwd="/").stdout
    cluster.kubectl("apply", "-f", "-", input=peering)
    wait_established(cluster, "kopfpeerings.kopf.dev")
    kubeconfig = service_account_kubeconfig(cluster, namespace, "operator", operator_rules("namespaced"),
                                            tmp_path / "operator.kubeconfig")
    port, = free_ports(1)
    log_path = tmp_path / "operator.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "logdistill", "operator", "--namespace", namespace, "--kubeconfig",
         str(kubeconfig), "--liveness", f"http://127.0.0.1:{port}/healthz"],
        stdout=log, stderr=subprocess.STDOUT, cwd="/")
    try:
        create_cr(apis, namespace, "rbac", BASE)
        wait_job(cluster, apis, namespace, "rbac", 1, timeout=30)
        apis["custom"].patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "rbac",
                                                      {"spec": {"training": {"epochs": 3}}})
        wait_job(cluster, apis, namespace, "rbac", 2)
        cluster.wait_for(lambda: [j.metadata.name for j in jobs_of(apis, namespace, "rbac")] == ["rbac-distill-g2"],
                         30, 0.1, "the superseded Job deleted")
        complete_job_pod(cluster, apis, namespace, "rbac-distill-g2", "v2")
        wait_phase(cluster, apis, namespace, "rbac", "Ready", timeout=60, generation=2)
        apis["custom"].patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "rbac",
                                                      {"spec": {"training": {"epochs": 4}}})
        wait_job(cluster, apis, namespace, "rbac", 3)
        complete_job_pod(cluster, apis, namespace, "rbac-distill-g3", "v3")
        body = wait_phase(cluster, apis, namespace, "rbac", "Ready", timeout=60, generation=3)
        assert body["status"]["servingVersion"] == "v3"
        assert [h["version"] for h in body["status"]["history"]] == ["v2", "v3"]
        wait_events(cluster, apis, namespace, "rbac", {"PhaseReady", "RolloutStarted"})
        # a CR naming a missing claim: the operator creates it (get + create on persistentvolumeclaims)
        create_cr(apis, namespace, "fresh", {**BASE, "storage": {"persistentVolumeClaim": {"claimName": "fresh"}}})
        cluster.wait_for(lambda: apis["core"].read_namespaced_persistent_volume_claim("fresh", namespace), 30, 0.1,
                         "the claim created", ignore=(ApiException,))
        wait_job(cluster, apis, namespace, "fresh", 1, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        log.close()
    text = log_path.read_text()
    assert code == 0, text
    assert "forbidden" not in text.lower(), text


# ---- storage the operator provides, and the in-cluster teacher --------------------------------------

def test_missing_claim_gets_a_host_path_volume_and_writers_prepare_it(cluster, apis, namespace, tmp_path):
    """--artifacts-host-path: a missing claim is created (no owner) with its own hostPath PV, which the
    PV controller binds; the Job's pod chowns the folder first (prepare-storage), then trains the teacher."""
    from kubernetes import config

    settings = claims.StorageSettings(host_path=str(tmp_path / "artifacts-root"), size="2Gi")
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    pv_name = claims.persistent_volume_name(namespace, "logdistill-artifacts")
    op = OperatorThread(namespaces=[namespace], api_client=api, storage=settings).start()
    try:
        create_cr(apis, namespace, "trained", {"teacher": {"train": {"epochs": 2}},
                                               "escalation": {"enabled": True}})
        pvc = cluster.wait_for(lambda: apis["core"].read_namespaced_persistent_volume_claim(
            "logdistill-artifacts", namespace), 30, 0.1, "the claim", ignore=(ApiException,))
        assert not pvc.metadata.owner_references  # it outlives the CR: shared teachers
        assert pvc.metadata.labels["app.kubernetes.io/managed-by"] == names.MANAGED_BY
        assert pvc.spec.volume_name == pv_name and pvc.spec.storage_class_name == ""
        pv = apis["core"].read_persistent_volume(pv_name)
        assert pv.spec.host_path.path == f"{tmp_path}/artifacts-root/{namespace}/logdistill-artifacts"
        assert pv.spec.host_path.type == "DirectoryOrCreate" and pv.spec.capacity == {"storage": "2Gi"}
        assert (pv.spec.claim_ref.namespace, pv.spec.claim_ref.name) == (namespace, "logdistill-artifacts")
        cluster.wait_for(lambda: apis["core"].read_namespaced_persistent_volume_claim(
            "logdistill-artifacts", namespace).status.phase == "Bound", 60, 0.2, "the claim Bound")
        job = wait_job(cluster, apis, namespace, "trained", 1)
        pod = job.spec.template.spec
        assert [c.name for c in pod.init_containers] == ["prepare-storage", "teacher"]
        assert pod.init_containers[0].security_context.capabilities.add == ["CHOWN"]
        folder = common.trained_teacher_dir(parse_spec({"teacher": {"train": {"epochs": 2}}}, DistilledModelSpec))
        assert pod.init_containers[1].command[5:7] == ["--out", folder]
        engine = yaml.safe_load(apis["core"].read_namespaced_config_map("trained-spec-g1", namespace).data["spec.yaml"])
        assert engine["teacher"] == {"checkpoint": folder}
        # the teacher service serves that folder once the Job has published it
        deployment = cluster.wait_for(lambda: apis["apps"].read_namespaced_deployment("trained-teacher", namespace),
                                      30, 0.1, "the teacher Deployment", ignore=(ApiException,))
        served = deployment.spec.template.spec
        assert [c.name for c in served.init_containers] == ["prepare-storage", "wait-teacher"]
        assert served.containers[0].command[3] == folder
        assert pod.security_context.run_as_user == 10001 and pod.security_context.fs_group == 10001
    finally:
        op.stop()
        apis["core"].delete_persistent_volume(pv_name)


def test_claims_are_left_alone_when_the_operator_may_not_create_them(cluster, apis, namespace):
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    op = OperatorThread(namespaces=[namespace], api_client=api,
                        storage=claims.StorageSettings(create=False, default_claim="team-claim")).start()
    try:
        create_cr(apis, namespace, "byo", BASE)
        job = wait_job(cluster, apis, namespace, "byo", 1)
        volumes = {v.name: v for v in job.spec.template.spec.volumes}
        assert volumes["artifacts"].persistent_volume_claim.claim_name == "team-claim"
        assert not job.spec.template.spec.init_containers
        assert apis["core"].list_namespaced_persistent_volume_claim(namespace).items == []
    finally:
        op.stop()


# ---- who may call the model's APIs: the token Secret and the teacher's NetworkPolicy ----------------

def test_api_token_secret_and_teacher_network_policy_under_least_privilege(cluster, apis, namespace, storage,
                                                                            tmp_path):
    """Under exactly rbac.OPERATOR_RULES: a CR with escalation gets an owned token Secret (random, kept
    across spec changes: never regenerated) mounted by the teacher, and an owned NetworkPolicy that
    follows the teacher's ports and goes with the teacher service."""
    import base64

    from kubernetes import config

    from logdistill.operator.rbac import OPERATOR_RULES

    kubeconfig = service_account_kubeconfig(cluster, namespace, "operator", OPERATOR_RULES,
                                            tmp_path / "operator.kubeconfig")
    op = OperatorThread(namespaces=[namespace], api_client=config.new_client_from_config(str(kubeconfig))).start()
    networking = client.NetworkingV1Api(cluster.api_client())
    try:
        body = create_cr(apis, namespace, "guarded", {**BASE, "escalation": {"enabled": True}})
        uid = body["metadata"]["uid"]
        secret = cluster.wait_for(lambda: apis["core"].read_namespaced_secret("guarded-api-token", namespace), 30,
                                  0.1, "the token Secret", ignore=(ApiException,))
        policy = cluster.wait_for(lambda: networking.read_namespaced_network_policy("guarded-teacher", namespace),
                                  30, 0.1, "the teacher NetworkPolicy", ignore=(ApiException,))
        for child in (secret, policy):
            (ref,) = child.metadata.owner_references
            assert (ref.kind, ref.uid, ref.controller) == ("DistilledModel", uid, True)
        token = base64.b64decode(secret.data["token"]).decode()
        assert len(token) >= 40  # secrets.token_urlsafe(32)
        ingress = policy.spec.ingress
        assert [p.port for p in ingress[0].ports] == [8000] and [p.port for p in ingress[1].ports] == [8001]
        assert ingress[0]._from[0].pod_selector.match_labels[names.COMPONENT_LABEL] == "classifier"
        deployment = cluster.wait_for(lambda: apis["apps"].read_namespaced_deployment("guarded-teacher", namespace),
                                      30, 0.1, "the teacher Deployment", ignore=(ApiException,))
        volumes = {v.name: v for v in deployment.spec.template.spec.volumes}
        assert volumes["api-token"].secret.secret_name == "guarded-api-token"

        # A spec change (new teacher port, and a new training run): the policy follows, the Secret stays.
        apis["custom"].patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "guarded", {"spec": {
            "escalation": {"enabled": True, "port": 8100}, "training": {"epochs": 3}}})
        wait_job(cluster, apis, namespace, "guarded", 2)
        cluster.wait_for(lambda: networking.read_namespaced_network_policy(
            "guarded-teacher", namespace).spec.ingress[0].ports[0].port == 8100, 30, 0.1, "the policy on port 8100")
        again = apis["core"].read_namespaced_secret("guarded-api-token", namespace)
        assert base64.b64decode(again.data["token"]).decode() == token
        assert again.metadata.resource_version == secret.metadata.resource_version  # not even rewritten

        # A user-rotated token is never overwritten either.
        apis["core"].patch_namespaced_secret("guarded-api-token", namespace, {"stringData": {"token": "rotated"}})
        apis["custom"].patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "guarded",
                                                      {"spec": {"escalation": {"enabled": False}}})
        cluster.wait_for(lambda: not networking.list_namespaced_network_policy(namespace).items, 30, 0.1,
                         "the policy deleted with the teacher service")
        cluster.wait_for(lambda: (get_cr(apis, namespace, "guarded").get("status") or {}).get("observedGeneration") == 3,
                         30, 0.1, "generation 3 reconciled")
        rotated = apis["core"].read_namespaced_secret("guarded-api-token", namespace)
        assert base64.b64decode(rotated.data["token"]).decode() == "rotated"
    finally:
        op.stop()
