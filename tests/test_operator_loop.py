"""The closed loop (issue 9), operator side, and the rollout-only update path.

Pure rules (agreement over teacher pods, the condition, when a re-distillation is due) as unit
tests; on the real control plane: the teacher Deployment/Service and the classifier's escalation
arguments, a rollout/escalation-only change that updates the workloads without retraining, and the
loop end to end: the teacher pod run for real (``serve-teacher``) publishes a low agreement, the
operator raises the condition and starts a re-distillation with ``--extra-data`` (run for real,
gated, rolled out); then a ``retrain-request`` annotation starts one more.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from kubernetes import config
from kubernetes.client.rest import ApiException

from logdistill import contracts
from logdistill.operator import loop, names
from logdistill.operator.main import OperatorThread
from logdistill.operator.manifests import apitoken, common, daemonset, distill, teacher_service
from logdistill.operator.names import GROUP, PLURAL, VERSION
from logdistill.operator.status import Agreement, LastRetrain
from logdistill.spec import DistilledModelSpec, SpecError, parse_spec

from test_operator_cluster import (  # noqa: F401 - fixtures
    BGL_2K, apis, cluster, complete_job_pod, condition, create_cr, get_cr, jobs_of, kubelet, operator, storage,
    teacher, wait_events, wait_phase,
)

OWNER = common.Owner(name="bgl", namespace="edge-ai", uid="1234-uid", generation=1)
IMAGES = common.Images(job="registry/logdistill:1", edge="registry/logdistill-edge:1")
TEACHER = {"checkpoint": "/artifacts/teachers/t"}
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
LOOP = {"escalation": {"enabled": True, "confidenceThreshold": 0.7, "sampleRate": 0.05, "queueSize": 500,
                       "rateLimit": 10, "port": 8002, "replicas": 2},
        "retrain": {"enabled": True, "agreementThreshold": 0.9, "windowSeconds": 60, "minIntervalSeconds": 300,
                    "minSamples": 100}}


def spec(**sections) -> DistilledModelSpec:
    return parse_spec({"teacher": TEACHER, **sections}, DistilledModelSpec)


def pod(report: dict | str | None) -> dict:
    annotations = {} if report is None else {
        contracts.AGREEMENT_ANNOTATION: report if isinstance(report, str) else json.dumps(report)}
    return {"metadata": {"name": "t", "annotations": annotations}}


# ---- spec --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sections, field", [
    ({"escalation": {"replicas": 0}}, "replicas"),
    ({"escalation": {"replicas": 21}}, "replicas"),
    ({"escalation": {"confidenceThreshold": 0}}, "confidenceThreshold"),
    ({"escalation": {"sampleRate": 1.5}}, "sampleRate"),
    ({"escalation": {"rateLimit": 0}}, "rateLimit"),
    ({"retrain": {"windowSeconds": 59}}, "windowSeconds"),
    ({"retrain": {"minIntervalSeconds": 299}}, "minIntervalSeconds"),
    ({"retrain": {"agreementThreshold": 1.5}}, "agreementThreshold"),
])
def test_loop_sections_are_validated(sections, field):
    with pytest.raises(SpecError, match=field):
        spec(**sections)


def test_escalation_needs_a_checkpoint_teacher():
    with pytest.raises(SpecError, match="escalation.enabled"):
        parse_spec({"teacher": {"endpoint": {"url": "http://llm/v1", "model": "m"}},
                    "escalation": {"enabled": True}}, DistilledModelSpec)


def test_endpoint_teacher_with_escalation_is_refused_by_the_api_server(cluster, apis, namespace):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DistilledModel", "metadata": {"name": "bad"},
            "spec": {"teacher": {"endpoint": {"url": "http://llm/v1", "model": "m"}}, "escalation": {"enabled": True}}}
    with pytest.raises(ApiException) as err:
        apis["custom"].create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, dry_run="All")
    assert "escalation.enabled" in err.value.body


INTERMEDIATE_ACROSS_PODS = {"training": {"intermediate": {"enabled": True}}, "job": {"workers": 2}}


def test_the_intermediate_loss_across_worker_pods_is_refused():
    with pytest.raises(SpecError, match="training.intermediate.enabled needs job.workers: 1"):
        parse_spec({"teacher": {"train": {}}, **INTERMEDIATE_ACROSS_PODS}, DistilledModelSpec)
    one_pod = {**INTERMEDIATE_ACROSS_PODS, "job": {"workers": 1}}
    assert parse_spec({"teacher": {"train": {}}, **one_pod}, DistilledModelSpec).training.intermediate.enabled


def test_the_intermediate_loss_across_worker_pods_is_refused_by_the_api_server(cluster, apis, namespace):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DistilledModel", "metadata": {"name": "bad"},
            "spec": {"teacher": {"train": {}}, **INTERMEDIATE_ACROSS_PODS}}
    with pytest.raises(ApiException) as err:
        apis["custom"].create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, dry_run="All")
    assert "training.intermediate.enabled needs job.workers: 1" in err.value.body
    body["spec"]["job"]["workers"] = 1
    apis["custom"].create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, dry_run="All")


def test_closed_loop_example_is_accepted_by_both_layers(cluster, apis, namespace):
    import yaml

    path = Path(__file__).resolve().parent.parent / "examples" / "distilledmodel-closed-loop.yaml"
    body = yaml.safe_load(path.read_text())
    parsed = parse_spec(body["spec"], DistilledModelSpec, source=str(path))
    assert parsed.job.workers == 3 and parsed.escalation.enabled and parsed.retrain.enabled
    stored = apis["custom"].create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, dry_run="All",
                                                           field_validation="Strict")
    assert parse_spec(stored["spec"], DistilledModelSpec) == parsed


# ---- pure builders -----------------------------------------------------------------------------

def test_training_hash_ignores_rollout_escalation_and_retrain():
    base = common.training_hash(spec())
    assert common.training_hash(spec(rollout={"logPaths": ["/var/log/x/*.log"]}, **LOOP)) == base
    for changed in ({"training": {"epochs": 3}}, {"gate": {"minMacroF1": 0.7}}, {"job": {"workers": 2}},
                    {"student": {"layers": 1}}, {"data": {"split": "chronological"}}):
        assert common.training_hash(spec(**changed)) != base, changed


def test_teacher_deployment_service_and_classifier_arguments():
    s = spec(job={"serviceAccountName": "distiller"}, **LOOP)
    dep = teacher_service.build_teacher_deployment(OWNER, s, IMAGES)
    assert dep["metadata"]["name"] == "bgl-teacher" and dep["spec"]["replicas"] == 2
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "1234-uid"
    pod_spec = dep["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == "distiller"  # patches its own pod, like the Job
    container = pod_spec["containers"][0]
    assert container["command"] == ["logdistill", "serve-teacher", "--model", "/artifacts/teachers/t", "--port",
                                    "8002", "--metrics-port", "8001", "--token-file", apitoken.TOKEN_FILE,
                                    "--store", "/artifacts/models/bgl/teacher-labels"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    svc = teacher_service.build_teacher_service(OWNER, s)
    assert svc["spec"]["ports"][0]["port"] == 8002 and svc["spec"]["selector"] == teacher_service.teacher_selector("bgl")
    release = daemonset.Release(version="v1", generation=1, artifact="models/bgl/g1", sha256="0" * 64)
    command = daemonset.build_daemonset(OWNER, s, release, IMAGES)["spec"]["template"]["spec"]["containers"][0]["command"]
    tail = command[command.index("--teacher-url"):]
    assert tail == ["--teacher-url", "http://bgl-teacher.edge-ai.svc:8002", "--escalate-below", "0.7",
                    "--sample-rate", "0.05", "--escalation-queue", "500", "--escalation-rps", "10"]
    plain = daemonset.build_daemonset(OWNER, spec(), release, IMAGES)["spec"]["template"]["spec"]["containers"][0]
    assert "--teacher-url" not in plain["command"]


def test_a_redistillation_adds_the_teacher_labels():
    s = spec(**LOOP)
    assert common.job_name("bgl", 1, 2) == "bgl-distill-g1-r2"
    job = distill.build_job(OWNER, s, IMAGES, retrain=2)
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--out") + 1] == "/artifacts/models/bgl/g1-r2"
    assert command[command.index("--") + 1:] == ["--extra-data", "/artifacts/models/bgl/teacher-labels"]
    assert job["metadata"]["labels"][names.RUN_LABEL] == "g1-r2"
    first = distill.build_job(OWNER, s, IMAGES)["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--extra-data" not in first


# ---- pure loop rules ---------------------------------------------------------------------------

def test_agreement_is_sample_weighted_over_teacher_pods_and_remembers_since_when_it_is_low():
    s = spec(**LOOP)
    reports = [pod({"ratio": 0.5, "samples": 100, "windowSeconds": 600, "updated": "2026-01-01T11:59:00Z"}),
               pod({"ratio": 1.0, "samples": 300, "windowSeconds": 600, "updated": "2026-01-01T11:59:30Z"}),
               pod(None), pod("{not json"), pod({"ratio": 3, "samples": 5})]
    a = loop.agreement_from(reports, s, None, NOW)
    assert a.ratio == pytest.approx(0.875) and a.samples == 400 and a.window_seconds == 600
    assert a.updated == "2026-01-01T11:59:30Z" and a.below_since == "2026-01-01T12:00:00Z"
    later = loop.agreement_from(reports, s, a, NOW + timedelta(seconds=30))
    assert later.below_since == a.below_since  # still low: the window keeps its start
    high = loop.agreement_from([pod({"ratio": 0.95, "samples": 400})], s, a, NOW)
    assert high.below_since is None
    few = loop.agreement_from([pod({"ratio": 0.1, "samples": 99})], s, a, NOW)
    assert few.below_since is None  # under minSamples: not trusted
    assert loop.agreement_from([pod(None)], s, a, NOW) is None
    assert loop.agreement_condition(s, None)[1:3] == ("Unknown", "NoEstimate")
    assert loop.agreement_condition(s, few)[1:3] == ("Unknown", "NotEnoughSamples")
    assert loop.agreement_condition(s, high)[1:3] == ("False", "AgreementAboveThreshold")
    kind, status, reason, message = loop.agreement_condition(s, a)
    assert (status, reason) == ("True", "AgreementBelowThreshold") and "0.8750" in message and "400" in message
    assert loop.agreement_condition(spec(), a) is None  # escalation off: no condition


def test_retrain_decision():
    s = spec(**LOOP)
    low = Agreement(ratio=0.5, samples=500, below_since="2026-01-01T12:00:00Z")
    at = lambda seconds: NOW + timedelta(seconds=seconds)  # noqa: E731
    assert loop.retrain_decision(s, low, None, None, True, at(30)).wake_in == pytest.approx(30)
    due = loop.retrain_decision(s, low, None, None, True, at(61))
    assert due.due and due.reason == "AgreementBelowThreshold"
    assert not loop.retrain_decision(s, low, None, None, False, at(61)).due  # the current run first
    recent = LastRetrain(reason="AgreementBelowThreshold", at="2026-01-01T11:58:00Z", job="j", token="t1")
    waiting = loop.retrain_decision(s, low, recent, "t1", True, at(61))
    assert not waiting.due and waiting.wake_in == pytest.approx(300 - 181)  # minIntervalSeconds
    assert loop.retrain_decision(s, low, recent, "t1", True, at(200)).due
    assert loop.retrain_decision(s, low, None, None, True, at(2), time_scale=0.01).due
    off = spec(escalation=LOOP["escalation"])
    assert not loop.retrain_decision(off, low, None, None, True, at(1000)).due
    request = loop.retrain_decision(off, None, recent, "t2", True, NOW)
    assert request.due and request.reason == "Requested" and request.token == "t2"
    assert not loop.retrain_decision(off, None, recent, "t1", True, NOW).due


# ---- on the real control plane -----------------------------------------------------------------

SCALE = 0.02  # windowSeconds 60 -> 1.2 s, minIntervalSeconds 300 -> 6 s


@pytest.fixture
def loop_operator(cluster, namespace, storage):
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    op = OperatorThread(namespaces=[namespace], api_client=api, retrain_time_scale=SCALE).start()
    yield op
    op.stop()


def patch_spec(apis, ns, name, spec_patch):
    apis["custom"].patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": spec_patch})


def classifier_command(apis, ns, name):
    ds = apis["apps"].read_namespaced_daemon_set(f"{name}-classifier", ns)
    return ds.spec.template.spec.containers[0].command


def test_rollout_or_escalation_change_updates_workloads_without_retraining(cluster, apis, namespace, operator):
    ns = namespace
    create_cr(apis, ns, "steady", {"teacher": TEACHER, "gate": {"minMacroF1": 0.1, "minRetention": 0.1}})
    complete_job_pod(cluster, apis, ns, "steady-distill-g1", "v1")
    wait_phase(cluster, apis, ns, "steady", "Ready", timeout=60)
    metrics = operator.ctx.metrics.registry
    assert metrics.get_sample_value("logdistill_operator_distillations_total", {"result": "passed"}) == 1
    assert metrics.get_sample_value("logdistill_operator_distilledmodels", {"namespace": ns, "phase": "Ready"}) == 1

    patch_spec(apis, ns, "steady", {"rollout": {"logPaths": ["/var/log/other/*.log"]}})
    cluster.wait_for(lambda: "/var/log/other/*.log" in classifier_command(apis, ns, "steady"), 30, 0.1,
                     "the DaemonSet updated with the new log paths")
    body = wait_phase(cluster, apis, ns, "steady", "Ready", timeout=30, generation=2)
    assert body["status"]["servingVersion"] == "v1" and body["status"]["distillGeneration"] == 1
    assert "/artifacts/models/steady/g1" in classifier_command(apis, ns, "steady")

    patch_spec(apis, ns, "steady", {"escalation": {"enabled": True, "port": 8002}})
    dep = cluster.wait_for(lambda: apis["apps"].read_namespaced_deployment("steady-teacher", ns), 30, 0.1,
                           "the teacher Deployment", ignore=(ApiException,))
    assert dep.metadata.owner_references[0].uid == body["metadata"]["uid"]
    assert dep.spec.template.spec.containers[0].command[:4] == ["logdistill", "serve-teacher", "--model",
                                                                TEACHER["checkpoint"]]
    svc = cluster.wait_for(lambda: apis["core"].read_namespaced_service("steady-teacher", ns), 10, 0.05,
                           "the teacher Service (created right after the Deployment)", ignore=(ApiException,))
    assert svc.spec.ports[0].port == 8002
    cluster.wait_for(lambda: f"http://steady-teacher.{ns}.svc:8002" in classifier_command(apis, ns, "steady"),
                     30, 0.1, "the classifier pointed at the teacher")
    body = wait_phase(cluster, apis, ns, "steady", {"Ready", "RollingOut"}, timeout=30, generation=3)
    assert [j.metadata.name for j in jobs_of(apis, ns, "steady")] == ["steady-distill-g1"]  # no retraining
    assert condition(body, "AgreementBelowGate")["reason"] in ("NoEstimate", "NotEnoughSamples")

    # turning escalation off removes the teacher; a training change does distil again
    patch_spec(apis, ns, "steady", {"escalation": {"enabled": False}, "training": {"epochs": 2}})
    cluster.wait_for(lambda: apis["batch"].read_namespaced_job("steady-distill-g4", ns), 30, 0.1,
                     "a new Job for a training change", ignore=(ApiException,))

    def teacher_gone():
        try:
            apis["apps"].read_namespaced_deployment("steady-teacher", ns)
            return False
        except ApiException as err:
            return err.status == 404

    cluster.wait_for(teacher_gone, 30, 0.1, "the teacher Deployment deleted")
    wait_events(cluster, apis, ns, "steady", {"TeacherStarted", "TeacherRemoved", "RolloutStarted"})


def publish_agreement(cluster, apis, ns, name, ratio, samples):
    """What serve-teacher does on each of its pods: patch the agreement annotation."""
    def teacher_pods():
        return apis["core"].list_namespaced_pod(
            ns, label_selector=f"app.kubernetes.io/instance={name},app.kubernetes.io/component=teacher").items

    pods = cluster.wait_for(teacher_pods, 30, 0.1, "the teacher pod (created by the Deployment)")
    value = json.dumps({"ratio": ratio, "samples": samples, "windowSeconds": 600,
                        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    apis["core"].patch_namespaced_pod(pods[0].metadata.name, ns,
                                      {"metadata": {"annotations": {contracts.AGREEMENT_ANNOTATION: value}}})


def wait_condition(cluster, apis, ns, name, kind, status, timeout=30):
    def check():
        body = get_cr(apis, ns, name)
        cond = next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)
        return body if cond is not None and cond["status"] == status else None

    return cluster.wait_for(check, timeout, 0.1, f"condition {kind}={status} on {ns}/{name}")


@pytest.mark.torch
@pytest.mark.slow  # 40-90 s here: the real engine under the operator; -m "not slow" skips it
def test_real_teacher_service_publishes_agreement_that_drives_a_redistillation(cluster, apis, namespace,
                                                                                loop_operator, kubelet, teacher):
    """The teacher Deployment's pod run for real (`logdistill serve-teacher`, under the Job's
    ServiceAccount rules): sampled verdicts that disagree with it lower the agreement it publishes on
    its pod; the operator raises the condition and re-distils with what the teacher stored."""
    import shutil
    import tempfile
    import urllib.request

    from test_operator_cluster import tiny_spec

    ns = namespace
    # A checkpoint path outside the pods' mounts (/tmp, /artifacts), so the same literal path works in
    # the teacher pod's command (which LocalKubelet rewrites) and in the Job's mounted spec (which it does not).
    home = Path(tempfile.mkdtemp(prefix="logdistill-teacher-", dir="/var/tmp"))
    shutil.copytree(teacher, home / "tiny")
    spec_body = {**tiny_spec(home / "tiny"), "escalation": {"enabled": True, "port": 8002},
                 # minIntervalSeconds x 0.02 = 60 s: no second automatic run before the request below
                 "retrain": {"enabled": True, "agreementThreshold": 0.9, "windowSeconds": 60,
                             "minIntervalSeconds": 3000, "minSamples": 20}}
    try:
        _real_loop(cluster, apis, ns, kubelet, spec_body, urllib.request)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _real_loop(cluster, apis, ns, kubelet, spec_body, urllib_request):
    from test_operator_cluster import run_job_pod

    create_cr(apis, ns, "real", spec_body)
    complete_job_pod(cluster, apis, ns, "real-distill-g1", "v1")
    wait_phase(cluster, apis, ns, "real", "Ready", timeout=60)
    pod = kubelet.find_pod("app.kubernetes.io/instance=real,app.kubernetes.io/component=teacher")
    kubelet.wait_running(pod)
    server = kubelet.start_pod(pod)
    server.wait_http(8001, "/readyz", timeout=120)  # probes on escalation.metricsPort, the API needs the token
    token = base64.b64decode(apis["core"].read_namespaced_secret("real-api-token", ns).data["token"]).decode()
    lines = [line.split(" ", 1)[1] for line in BGL_2K.read_text(errors="replace").splitlines()[:60] if " " in line]
    request = json.dumps({"lines": lines, "student": ["NOT-A-LABEL"] * len(lines)}).encode()
    with urllib_request.urlopen(urllib_request.Request(server.url(8002, "/v1/classify"), data=request,
                                                       headers={"Content-Type": "application/json",
                                                                "Authorization": f"Bearer {token}"}),
                                timeout=60) as resp:
        assert len(json.loads(resp.read())["results"]) == len(lines)
    # serve-teacher publishes every 10 s; the operator copies it and starts the window
    body = wait_condition(cluster, apis, ns, "real", "AgreementBelowGate", "True", timeout=40)
    agreement = body["status"]["agreement"]
    assert agreement["ratio"] == 0.0 and agreement["samples"] == len(lines), agreement
    job = cluster.wait_for(lambda: apis["batch"].read_namespaced_job("real-distill-g1-r1", ns), 30, 0.1,
                           "the re-distillation Job", ignore=(ApiException,))
    command = job.spec.template.spec.containers[0].command
    store = command[command.index("--extra-data") + 1]
    assert store == "/artifacts/models/real/teacher-labels"
    stored = list((kubelet.volume_map["artifacts"] / "models" / "real" / "teacher-labels").glob("*.jsonl"))
    assert stored and stored[0].read_text().count("\n") >= 1, "the teacher kept what it labelled"
    assert server.alive(), server.logs()[-2000:]
    # the re-distillation runs for real (logdistill distill --extra-data <what the teacher stored>)
    assert run_job_pod(kubelet, "real", 1, retrain=1) == 0, kubelet.logs(
        kubelet.find_pod("job-name=real-distill-g1-r1"))
    def redistilled_served():
        body = get_cr(apis, ns, "real")
        return body if body["status"].get("servingVersion") not in (None, "v1") else None

    body = cluster.wait_for(redistilled_served, 60, 0.1, "the re-distilled student served")
    assert body["status"]["lastRetrain"]["reason"] == "AgreementBelowThreshold"
    assert "/artifacts/models/real/g1-r1" in classifier_command(apis, ns, "real")
    assert (kubelet.volume_map["artifacts"] / "models" / "real" / "g1-r1" / "manifest.json").is_file()
    wait_events(cluster, apis, ns, "real", {"RetrainStarted", "AgreementBelowGateTrue"})

    # the agreement recovers (as a teacher pod would publish it); then on demand: one re-distillation
    # per new token (minIntervalSeconds does not hold a request back), none for a handled token
    publish_agreement(cluster, apis, ns, "real", 0.99, 800)
    wait_condition(cluster, apis, ns, "real", "AgreementBelowGate", "False")
    apis["custom"].patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "real", {
        "metadata": {"annotations": {names.RETRAIN_REQUEST_ANNOTATION: "please-1"}}})
    cluster.wait_for(lambda: apis["batch"].read_namespaced_job("real-distill-g1-r2", ns), 30, 0.1,
                     "the requested re-distillation", ignore=(ApiException,))
    last = cluster.wait_for(lambda: (get_cr(apis, ns, "real")["status"].get("lastRetrain") or {}).get("token")
                            and get_cr(apis, ns, "real")["status"]["lastRetrain"],
                            10, 0.05, "status.lastRetrain of the request")
    assert last["reason"] == "Requested" and last["token"] == "please-1" and last["job"] == "real-distill-g1-r2"
    complete_job_pod(cluster, apis, ns, "real-distill-g1-r2", "v3")
    cluster.wait_for(lambda: get_cr(apis, ns, "real")["status"].get("servingVersion") == "v3", 60, 0.1,
                     "the requested version served")
    job_names = sorted(j.metadata.name for j in jobs_of(apis, ns, "real"))
    assert job_names == ["real-distill-g1", "real-distill-g1-r1", "real-distill-g1-r2"]
