"""Pure manifest builders: names, owner references, labels, mounts, args, scheduling."""

from __future__ import annotations

import yaml

from logdistill.operator import builders as b
from logdistill.spec import DistilledModelSpec, parse_spec

OWNER = b.Owner(name="bgl", namespace="edge-ai", uid="1234-uid", generation=3)
IMAGES = b.Images(job="registry/logdistill:1", edge="registry/logdistill-edge:1")


def spec(**sections) -> DistilledModelSpec:
    return parse_spec({"teacher": {"checkpoint": "/artifacts/teachers/t"}, **sections}, DistilledModelSpec)


def _owned(manifest):
    ref, = manifest["metadata"]["ownerReferences"]
    assert ref == {"apiVersion": "logdistill.io/v1alpha1", "kind": "DistilledModel", "name": "bgl",
                   "uid": "1234-uid", "controller": True, "blockOwnerDeletion": True}
    assert manifest["metadata"]["namespace"] == "edge-ai"
    assert manifest["metadata"]["labels"][b.MODEL_LABEL] == "bgl"


def test_names_are_deterministic_per_generation():
    assert b.job_name("bgl", 3) == "bgl-distill-g3"
    assert b.configmap_name("bgl", 3) == "bgl-spec-g3"
    assert b.daemonset_name("bgl") == "bgl-classifier"
    assert b.service_name("bgl") == "bgl-classifier-metrics"
    s = spec()
    assert b.build_job(OWNER, s, IMAGES) == b.build_job(OWNER, s, IMAGES)


def test_configmap_holds_the_whole_spec_for_the_engine():
    s = spec(training={"epochs": 2})
    cm = b.build_configmap(OWNER, s)
    _owned(cm)
    assert cm["metadata"]["name"] == "bgl-spec-g3"
    loaded = yaml.safe_load(cm["data"]["spec.yaml"])
    # the engine's loader accepts it and gets the same spec back
    assert parse_spec(loaded, DistilledModelSpec) == s
    assert loaded["training"]["epochs"] == 2


def test_job_runs_the_runner_with_spec_storage_and_termination_message():
    s = spec(job={"backoffLimit": 2, "activeDeadlineSeconds": 600, "serviceAccountName": "distiller",
                  "nodeSelector": {"pool": "gpu"}, "resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
                  "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]},
             storage={"persistentVolumeClaim": {"claimName": "models-pvc", "subPath": "team/a"}})
    job = b.build_job(OWNER, s, IMAGES)
    _owned(job)
    assert job["metadata"]["name"] == "bgl-distill-g3"
    assert job["metadata"]["labels"][b.GENERATION_LABEL] == "3"
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["activeDeadlineSeconds"] == 600
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "distiller"
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    c, = pod["containers"]
    assert c["image"] == "registry/logdistill:1"
    assert c["command"] == ["logdistill", "operator", "job-run", "--config", "/etc/logdistill/spec.yaml",
                            "--out", "/artifacts/team/a/bgl/g3", "--summary-file", "/dev/termination-log"]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"}}
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["spec"] == {"name": "spec", "mountPath": "/etc/logdistill", "readOnly": True}
    assert mounts["artifacts"]["mountPath"] == "/artifacts" and not mounts["artifacts"].get("readOnly")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["spec"]["configMap"]["name"] == "bgl-spec-g3"
    assert volumes["artifacts"]["persistentVolumeClaim"] == {"claimName": "models-pvc"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_job_image_from_spec_wins_and_endpoint_secret_is_mapped():
    s = spec(teacher={"endpoint": {"url": "http://llm:8000/v1", "model": "m", "secretRef": {"name": "llm-key"}}},
             job={"image": "mine:2"})
    job = b.build_job(OWNER, s, IMAGES)
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "mine:2"
    env = {e["name"]: e for e in c["env"]}
    assert env["LOGDISTILL_TEACHER_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm-key", "key": "apiKey"}


def test_daemonset_serves_the_release_on_edge_nodes():
    s = spec(rollout={"logPaths": ["/var/log/bgl/*.log", "/var/log/bgl/sub/x.log", "/srv/app.log"],
                      "maxUnavailable": 2, "port": 9500,
                      "tolerations": [{"key": "edge", "operator": "Equal", "value": "true", "effect": "NoExecute"}]})
    release = b.Release(version="v-abc", generation=3, artifact="models/bgl/g3", sha256="f" * 64)
    ds = b.build_daemonset(OWNER, s, release, IMAGES)
    _owned(ds)
    assert ds["metadata"]["name"] == "bgl-classifier"
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}
    tpl = ds["spec"]["template"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= tpl["metadata"]["labels"].items()
    pod = tpl["spec"]
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/edge": ""}
    assert pod["tolerations"][0]["effect"] == "NoExecute"
    c, = pod["containers"]
    assert c["image"] == "registry/logdistill-edge:1"
    assert c["command"] == ["logdistill", "classify", "--model", "/artifacts/models/bgl/g3", "--port", "9500",
                            "--paths", "/var/log/bgl/*.log", "/var/log/bgl/sub/x.log", "/srv/app.log"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["ports"] == [{"name": "metrics", "containerPort": 9500, "protocol": "TCP"}]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/artifacts"]["readOnly"] is True
    assert mounts["/var/log/bgl"]["readOnly"] is True and mounts["/srv"]["readOnly"] is True
    assert "/var/log/bgl/sub" not in mounts  # inside an already mounted folder
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["artifacts"]["persistentVolumeClaim"]["readOnly"] is True
    host = sorted(v["hostPath"]["path"] for v in volumes.values() if "hostPath" in v)
    assert host == ["/srv", "/var/log/bgl"]
    assert b.release_of(ds) == release


def test_daemonset_hash_changes_only_with_content():
    s = spec()
    r1 = b.Release(version="v1", generation=1, artifact="models/bgl/g1", sha256="a" * 64)
    r2 = b.Release(version="v2", generation=2, artifact="models/bgl/g2", sha256="b" * 64)
    h = lambda r: b.build_daemonset(OWNER, s, r, IMAGES)["metadata"]["annotations"][b.APPLIED_HASH_ANNOTATION]  # noqa: E731
    assert h(r1) == h(r1) and h(r1) != h(r2)


def test_service_selects_the_classifier_pods():
    svc = b.build_service(OWNER, spec(rollout={"port": 9600}))
    _owned(svc)
    assert svc["metadata"]["name"] == "bgl-classifier-metrics"
    assert svc["spec"]["selector"] == b.selector_labels("bgl")
    assert svc["spec"]["ports"][0]["port"] == 9600 and svc["spec"]["clusterIP"] == "None"


def test_log_directories():
    assert b.log_directories(["/var/log/*.log"]) == ["/var/log"]
    assert b.log_directories(["/a/b/c.log", "/a/*/d.log", "/a/b/e.log"]) == ["/a"]
    assert b.log_directories(["/x.log"]) == ["/"]


def test_teacher_deployment_passes_the_alert_bar_only_when_set():
    plain = b.build_teacher_deployment(OWNER, spec(escalation={"enabled": True}), IMAGES)
    command = plain["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["logdistill", "serve-teacher"] and "--alert-below" not in command
    barred = b.build_teacher_deployment(OWNER, spec(escalation={"enabled": True, "teacherAlertBelow": 0.5}), IMAGES)
    command = barred["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--alert-below") + 1] == "0.5"
    _owned(barred)
