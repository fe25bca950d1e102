"""Pure manifest builders: names, owner references, labels, mounts, args, scheduling."""

from __future__ import annotations

import re

import pytest
import yaml

from logdistill.operator import names
from logdistill.operator.manifests import claims, common, daemonset, distill, teacher_service
from logdistill.spec import DistilledModelSpec, parse_spec

OWNER = common.Owner(name="bgl", namespace="edge-ai", uid="1234-uid", generation=3)
IMAGES = common.Images(job="registry/logdistill:1", edge="registry/logdistill-edge:1")


def spec(**sections) -> DistilledModelSpec:
    return parse_spec({"teacher": {"checkpoint": "/artifacts/teachers/t"}, **sections}, DistilledModelSpec)


def _owned(manifest):
    ref, = manifest["metadata"]["ownerReferences"]
    assert ref == {"apiVersion": "logdistill.io/v1alpha1", "kind": "DistilledModel", "name": "bgl",
                   "uid": "1234-uid", "controller": True, "blockOwnerDeletion": True}
    assert manifest["metadata"]["namespace"] == "edge-ai"
    assert manifest["metadata"]["labels"][names.MODEL_LABEL] == "bgl"


def test_names_are_deterministic_per_generation():
    assert common.job_name("bgl", 3) == "bgl-distill-g3"
    assert common.configmap_name("bgl", 3) == "bgl-spec-g3"
    assert common.daemonset_name("bgl") == "bgl-classifier"
    assert common.service_name("bgl") == "bgl-classifier-metrics"
    s = spec()
    assert distill.build_job(OWNER, s, IMAGES) == distill.build_job(OWNER, s, IMAGES)


def test_configmap_holds_the_whole_spec_for_the_engine():
    s = spec(training={"epochs": 2})
    cm = distill.build_configmap(OWNER, s)
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
    job = distill.build_job(OWNER, s, IMAGES)
    _owned(job)
    assert job["metadata"]["name"] == "bgl-distill-g3"
    assert job["metadata"]["labels"][names.GENERATION_LABEL] == "3"
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["activeDeadlineSeconds"] == 600
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "distiller"
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    c, = pod["containers"]
    assert c["image"] == "registry/logdistill:1"
    assert c["command"] == ["logdistill", "operator", "job-run", "--config", "/etc/logdistill/spec.yaml",
                            "--out", "/artifacts/team/a/bgl/g3", "--summary-file", "/dev/termination-log",
                            "--keep-versions", "3"]
    # the served version's folder survives the run's pruning
    served = distill.build_job(OWNER, s, IMAGES, serving="team/a/bgl/g1-r2")
    assert served["spec"]["template"]["spec"]["containers"][0]["command"][-4:] == [
        "--keep-versions", "3", "--protect", "g1-r2"]
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
    job = distill.build_job(OWNER, s, IMAGES)
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "mine:2"
    env = {e["name"]: e for e in c["env"]}
    assert env["LOGDISTILL_TEACHER_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm-key", "key": "apiKey"}


def test_daemonset_serves_the_release_on_edge_nodes():
    s = spec(rollout={"logPaths": ["/var/log/bgl/*.log", "/var/log/bgl/sub/x.log", "/srv/app.log"],
                      "maxUnavailable": 2, "port": 9500,
                      "tolerations": [{"key": "edge", "operator": "Equal", "value": "true", "effect": "NoExecute"}]})
    release = daemonset.Release(version="v-abc", generation=3, artifact="models/bgl/g3", sha256="f" * 64)
    ds = daemonset.build_daemonset(OWNER, s, release, IMAGES, log_roots=("/var/log", "/srv"))
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
    assert c["command"] == ["logdistill", "classify", "--model", "/artifacts/models/bgl/g3", "--port", "9402",
                            "--metrics-port", "9500", "--token-file", "/var/run/secrets/logdistill/api/token",
                            "--state-dir", "/var/lib/logdistill/state", "--exclude-pod-uid", "$(POD_UID)",
                            "--paths", "/var/log/bgl/*.log", "/var/log/bgl/sub/x.log", "/srv/app.log"]
    assert c["imagePullPolicy"] == "IfNotPresent"
    # The edge budget by default (a Burstable pod whose page cache is reclaimed at the limit); a spec overrides it.
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "150Mi"}}
    custom = spec(rollout={"resources": {"limits": {"memory": "300Mi"}}})
    (other,) = daemonset.build_daemonset(OWNER, custom, release, IMAGES)["spec"]["template"]["spec"]["containers"]
    assert other["resources"] == {"limits": {"memory": "300Mi"}}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["ports"] == [{"name": "metrics", "containerPort": 9500, "protocol": "TCP"},
                          {"name": "api", "containerPort": 9402, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"]["port"] == c["livenessProbe"]["httpGet"]["port"] == "metrics"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/artifacts"]["readOnly"] is True
    assert mounts["/var/log/bgl"]["readOnly"] is True and mounts["/srv"]["readOnly"] is True
    assert "/var/log/bgl/sub" not in mounts  # inside an already mounted folder
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["artifacts"]["persistentVolumeClaim"]["readOnly"] is True
    host = sorted(v["hostPath"]["path"] for v in volumes.values() if "hostPath" in v)
    assert host == ["/srv", "/var/lib/logdistill/state/edge-ai_bgl", "/var/log/bgl"]
    assert daemonset.release_of(ds) == release


def test_daemonset_hash_changes_only_with_content():
    s = spec()
    r1 = daemonset.Release(version="v1", generation=1, artifact="models/bgl/g1", sha256="a" * 64)
    r2 = daemonset.Release(version="v2", generation=2, artifact="models/bgl/g2", sha256="b" * 64)
    h = lambda r: daemonset.build_daemonset(OWNER, s, r, IMAGES)["metadata"]["annotations"][names.APPLIED_HASH_ANNOTATION]  # noqa: E731
    assert h(r1) == h(r1) and h(r1) != h(r2)


def test_service_selects_the_classifier_pods():
    svc = daemonset.build_service(OWNER, spec(rollout={"port": 9600}))
    _owned(svc)
    assert svc["metadata"]["name"] == "bgl-classifier-metrics"
    assert svc["spec"]["selector"] == daemonset.selector_labels("bgl")
    assert svc["spec"]["ports"][0]["port"] == 9600 and svc["spec"]["clusterIP"] == "None"


def test_log_directories():
    assert daemonset.log_directories(["/var/log/*.log"]) == ["/var/log"]
    assert daemonset.log_directories(["/var/log/pods/*/*/*.log", "/var/log/syslog"]) == ["/var/log"]
    assert daemonset.log_directories(["/a/b/c.log", "/a/*/d.log", "/a/b/e.log"], roots=("/a",)) == ["/a"]


@pytest.mark.parametrize("path, folder", [
    ("/x.log", "/"),                      # the host's root
    ("/var/lo*/x.log", "/var"),           # a parent of the root, through a wildcard
    ("/var/*/x.log", "/var"),
    ("/etc/shadow", "/etc"),              # beside the root
    ("/var/lib/kubelet/pods/*/volumes/*/*/token", "/var/lib/kubelet/pods"),
    ("/var/logs/x.log", "/var/logs"),     # a sibling sharing the root's name as a prefix
])
def test_log_directories_never_mount_a_folder_outside_the_roots(path, folder):
    with pytest.raises(ValueError, match=f"host folder '{re.escape(folder)}', outside the log roots /var/log"):
        daemonset.log_directories([path])


def test_teacher_deployment_passes_the_alert_bar_only_when_set():
    plain = teacher_service.build_teacher_deployment(OWNER, spec(escalation={"enabled": True}), IMAGES)
    command = plain["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["logdistill", "serve-teacher"] and "--alert-below" not in command
    barred = teacher_service.build_teacher_deployment(OWNER, spec(escalation={"enabled": True, "teacherAlertBelow": 0.5}), IMAGES)
    command = barred["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--alert-below") + 1] == "0.5"
    _owned(barred)


# ---- identity, pull policy, storage, trained teacher, classifier state -------------------------

def _pod(manifest) -> dict:
    return manifest["spec"]["template"]["spec"]


def test_every_pod_runs_as_the_images_user():
    s = spec(escalation={"enabled": True})
    release = daemonset.Release(version="v", generation=1, artifact="models/bgl/g1", sha256="a" * 64)
    for manifest in (distill.build_job(OWNER, s, IMAGES), teacher_service.build_teacher_deployment(OWNER, s, IMAGES),
                     daemonset.build_daemonset(OWNER, s, release, IMAGES)):
        ctx = _pod(manifest)["securityContext"]
        assert (ctx["runAsUser"], ctx["runAsGroup"], ctx["fsGroup"]) == (10001, 10001, 10001)
        assert ctx["runAsNonRoot"] is True


def test_operator_pull_policy_reaches_every_child_unless_the_spec_sets_one():
    never = common.Images(job="j", edge="e", pull_policy="Never", edge_pull_policy="Never")
    s = spec(escalation={"enabled": True}, storage={"persistentVolumeClaim": {"claimName": "c"}})
    release = daemonset.Release(version="v", generation=1, artifact="models/bgl/g1", sha256="a" * 64)
    volume = claims.ArtifactVolume(claim="c", prepare=True)
    manifests = [distill.build_job(OWNER, s, never, volume=volume), teacher_service.build_teacher_deployment(OWNER, s, never, volume),
                 daemonset.build_daemonset(OWNER, s, release, never, volume),
                 distill.build_label_job(OWNER, spec(job={"workers": 2}), never, volume)]
    for manifest in manifests:
        pod = _pod(manifest)
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert c["imagePullPolicy"] == "Never", (manifest["metadata"]["name"], c["name"])
    own = distill.build_job(OWNER, spec(job={"imagePullPolicy": "Always"}), never)
    assert _pod(own)["containers"][0]["imagePullPolicy"] == "Always"
    assert spec().job.image_pull_policy is None
    import pytest

    with pytest.raises(ValueError, match="pull policy"):
        common.Images(job="j", edge="e", pull_policy="Sometimes")
    # The classifier follows the edge image's own policy, the Job the full image's.
    split = common.Images(job="j", edge="e", pull_policy="Always", edge_pull_policy="Never")
    ds = _pod(daemonset.build_daemonset(OWNER, spec(), release, split))
    assert {c["imagePullPolicy"] for c in ds["initContainers"] + ds["containers"]} == {"Never"}
    assert _pod(distill.build_job(OWNER, spec(), split))["containers"][0]["imagePullPolicy"] == "Always"


def test_claim_name_defaults_to_the_operators_claim():
    assert claims.claim_name(spec()) == "logdistill-artifacts"
    assert claims.claim_name(spec(), claims.StorageSettings(default_claim="shared")) == "shared"
    named = spec(storage={"persistentVolumeClaim": {"claimName": "mine"}})
    assert claims.claim_name(named, claims.StorageSettings(default_claim="shared")) == "mine"
    job = distill.build_job(OWNER, spec(), IMAGES, volume=claims.artifact_volume(spec(), None, claims.StorageSettings(
        default_claim="shared")))
    assert {v["name"]: v for v in _pod(job)["volumes"]}["artifacts"]["persistentVolumeClaim"] == {
        "claimName": "shared"}


def test_created_claim_is_unowned_and_sized_by_the_operator_settings():
    settings = claims.StorageSettings(size="20Gi", storage_class="fast", access_modes=("ReadWriteMany",))
    pvc = claims.build_claim("edge-ai", "logdistill-artifacts", settings)
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert pvc["metadata"]["name"] == "logdistill-artifacts" and pvc["metadata"]["namespace"] == "edge-ai"
    assert "ownerReferences" not in pvc["metadata"]  # shared by CRs and generations
    assert pvc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == names.MANAGED_BY
    assert pvc["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "20Gi"}},
                           "storageClassName": "fast"}
    # no class given: the field is left out, so the cluster's default StorageClass provisions it
    assert "storageClassName" not in claims.build_claim("ns", "c", claims.StorageSettings())["spec"]
    assert claims.artifact_volume(spec(), pvc) == claims.ArtifactVolume(claim="logdistill-artifacts", prepare=False)


def test_host_path_claim_gets_its_own_persistent_volume():
    settings = claims.StorageSettings(host_path="/var/lib/logdistill/artifacts")
    pvc = claims.build_claim("default", "logdistill-artifacts", settings)
    pv = claims.build_host_path_volume("default", "logdistill-artifacts", settings)
    assert pv["metadata"]["name"] == "logdistill-default-logdistill-artifacts"
    assert "namespace" not in pv["metadata"] and "ownerReferences" not in pv["metadata"]
    assert pv["spec"]["hostPath"] == {"path": "/var/lib/logdistill/artifacts/default/logdistill-artifacts",
                                      "type": "DirectoryOrCreate"}
    assert pv["spec"]["storageClassName"] == "" and pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "default",
                                      "name": "logdistill-artifacts"}
    assert pv["spec"]["capacity"] == {"storage": "10Gi"} and pv["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"] and pvc["spec"]["storageClassName"] == ""
    assert claims.artifact_volume(spec(), pvc, settings).prepare is True
    long = claims.persistent_volume_name("n" * 63, "c" * 253)
    assert len(long) <= 253 and long != claims.persistent_volume_name("n" * 63, "c" * 252 + "d")
    import pytest

    with pytest.raises(ValueError, match="absolute"):
        claims.StorageSettings(host_path="relative/dir")
    with pytest.raises(ValueError, match="access modes"):
        claims.StorageSettings(access_modes=("ReadWriteSometimes",))


def test_prepare_storage_runs_first_only_on_operator_made_host_path_volumes():
    s = spec(storage={"persistentVolumeClaim": {"subPath": "team/a"}})
    plain = _pod(distill.build_job(OWNER, s, IMAGES, volume=claims.ArtifactVolume("logdistill-artifacts")))
    assert "initContainers" not in plain
    pod = _pod(distill.build_job(OWNER, s, IMAGES, volume=claims.ArtifactVolume("logdistill-artifacts", prepare=True)))
    first = pod["initContainers"][0]
    assert first["name"] == "prepare-storage" and first["image"] == IMAGES.job
    assert first["command"][-1] == "/artifacts/team/a" and "os.chown(d, 10001, 10001)" in first["command"][2]
    sec = first["securityContext"]
    assert sec["runAsUser"] == 0 and sec["runAsNonRoot"] is False and sec["allowPrivilegeEscalation"] is False
    assert sec["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert sec["seccompProfile"] == {"type": "RuntimeDefault"}
    assert first["volumeMounts"] == [{"name": "artifacts", "mountPath": "/artifacts"}]
    teacher = _pod(teacher_service.build_teacher_deployment(OWNER, spec(escalation={"enabled": True}), IMAGES,
                                              claims.ArtifactVolume("logdistill-artifacts", prepare=True)))
    assert [c["name"] for c in teacher["initContainers"]] == ["prepare-storage"]


def test_trained_teacher_folder_is_content_addressed():
    s = spec(teacher={"train": {}})
    recipe = common.teacher_train_spec(s)
    assert recipe == {"base": "minilm", "data": s.data.model_dump(by_alias=True, mode="json"), "epochs": 3,
                      "learningRate": 0.0001, "seed": 13, "input": "light"}
    folder = common.trained_teacher_dir(s)
    assert folder.startswith("/artifacts/models/teachers/") and len(folder.rsplit("/", 1)[1]) == 16
    # the same recipe from another CR, a later generation or other student settings: the same folder
    assert common.trained_teacher_dir(spec(teacher={"train": {"epochs": 3}}, student={"layers": 1})) == folder
    # defaults follow the distillation's data and seed (the same split)
    assert common.trained_teacher_dir(spec(teacher={"train": {}}, training={"seed": 7})) != folder
    assert common.trained_teacher_dir(spec(teacher={"train": {"input": "template"}})) != folder
    assert common.teacher_train_spec(spec(teacher={"train": {}}, training={"seed": 7}))["seed"] == 7
    assert common.teacher_train_spec(spec(teacher={"train": {"maxPerTemplate": 3}}))["data"]["maxPerTemplate"] == 3
    assert common.trained_teacher_dir(spec(teacher={"train": {"epochs": 15}})) != folder
    assert teacher_service.teacher_checkpoint(s) == folder
    assert common.teacher_train_spec(spec()) is None


def test_trained_teacher_runs_as_an_init_container_and_the_engine_gets_its_folder():
    import json

    s = spec(teacher={"train": {"epochs": 4}}, job={"resources": {"limits": {"memory": "4Gi"}}})
    pod = _pod(distill.build_job(OWNER, s, IMAGES, volume=claims.ArtifactVolume("logdistill-artifacts", prepare=True)))
    assert [c["name"] for c in pod["initContainers"]] == ["prepare-storage", "teacher"]
    teacher = pod["initContainers"][1]
    folder = common.trained_teacher_dir(s)
    assert teacher["command"][:8] == ["logdistill", "operator", "job-run", "--engine", "teacher", "--out", folder,
                                      "--summary-file"]
    assert json.loads(teacher["command"][-1]) == common.teacher_train_spec(s)
    assert teacher["resources"] == {"limits": {"memory": "4Gi"}}
    assert teacher["securityContext"] == pod["containers"][0]["securityContext"]
    assert {m["name"] for m in teacher["volumeMounts"]} == {"artifacts", "tmp"}
    engine = yaml.safe_load(distill.build_configmap(OWNER, s)["data"]["spec.yaml"])
    assert engine["teacher"] == {"checkpoint": folder}
    # workers > 1: every label pod ensures the teacher (the first to finish publishes it)
    label = _pod(distill.build_label_job(OWNER, spec(teacher={"train": {}}, job={"workers": 2}), IMAGES))
    assert [c["name"] for c in label["initContainers"]] == ["teacher"]
    served = _pod(teacher_service.build_teacher_deployment(OWNER, spec(teacher={"train": {}}, escalation={"enabled": True}),
                                             IMAGES))
    wait, = served["initContainers"]
    assert wait["name"] == "wait-teacher" and wait["command"][-1].endswith("/manifest.json")
    assert served["containers"][0]["command"][3] == common.trained_teacher_dir(spec(teacher={"train": {}}))


def test_classifier_reads_pod_logs_keeps_state_and_skips_itself():
    s = spec()
    assert s.rollout.log_paths == ["/var/log/pods/*/*/*.log"]
    release = daemonset.Release(version="v", generation=1, artifact="models/bgl/g1", sha256="a" * 64)
    pod = _pod(daemonset.build_daemonset(OWNER, s, release, IMAGES))
    assert pod["securityContext"]["supplementalGroups"] == [0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["logs-0"]["hostPath"] == {"path": "/var/log/pods", "type": "Directory"}
    assert volumes["state"]["hostPath"] == {"path": "/var/lib/logdistill/state/edge-ai_bgl",
                                            "type": "DirectoryOrCreate"}
    init, = pod["initContainers"]
    assert init["name"] == "prepare-state" and init["image"] == IMAGES.edge
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert init["securityContext"]["runAsUser"] == 0
    assert init["command"][-1] == "/var/lib/logdistill/state"
    c, = pod["containers"]
    assert {"name": "state", "mountPath": "/var/lib/logdistill/state"} in c["volumeMounts"]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_UID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"
    i = c["command"].index("--exclude-pod-uid")
    assert c["command"][i + 1] == "$(POD_UID)"
