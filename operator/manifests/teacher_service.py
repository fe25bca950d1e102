"""The teacher service of escalation: its Deployment (after ``wait-teacher`` for a trained teacher)
and Service. The API needs the model's token (:mod:`.apitoken`); probes and /metrics have their own port."""

from __future__ import annotations

import posixpath

from logdistill.operator.manifests.apitoken import TOKEN_FILE, token_mount, token_volume
from logdistill.operator.manifests.claims import ArtifactVolume, artifact_volume, prepare_storage_container
from logdistill.operator.manifests.common import (
    ARTIFACT_MOUNT,
    Images,
    Owner,
    _container_security,
    _env,
    _metadata,
    _pod_security,
    _resources,
    _tolerations,
    job_pull_policy,
    labels,
    manifest_hash,
    teacher_labels_dir,
    teacher_name,
    trained_teacher_dir,
)
from logdistill.operator.names import APPLIED_HASH_ANNOTATION, COMPONENT_LABEL
from logdistill.spec import DistilledModelSpec


WAIT_TEACHER = "wait-teacher"


def teacher_url(owner: Owner, spec: DistilledModelSpec) -> str:
    return f"http://{teacher_name(owner.name)}.{owner.namespace}.svc:{spec.escalation.port}"


def teacher_checkpoint(spec: DistilledModelSpec) -> str:
    """The checkpoint the teacher service loads: the teacher (a trained one's content-addressed folder),
    or the first (heaviest) ensemble member."""
    if spec.teacher.checkpoint:
        return spec.teacher.checkpoint
    if spec.teacher.train is not None:
        return trained_teacher_dir(spec)
    members = sorted(spec.teacher.ensemble or [], key=lambda m: -m.weight)
    if not members:
        raise ValueError("escalation needs teacher.checkpoint or teacher.ensemble")
    return members[0].checkpoint


def teacher_selector(owner_name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "logdistill", "app.kubernetes.io/instance": owner_name,
            COMPONENT_LABEL: "teacher"}


def wait_for_teacher_container(spec: DistilledModelSpec, image: str, pull_policy: str) -> dict:
    """``wait-teacher``: the teacher service of a ``teacher.train`` CR starts once the run's Job has
    published the trained teacher (its manifest), instead of crash-looping until then."""
    manifest = posixpath.join(trained_teacher_dir(spec), "manifest.json")
    code = "import os, sys, time\nwhile not os.path.isfile(sys.argv[1]):\n    time.sleep(5)"
    return {
        "name": WAIT_TEACHER,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": ["python", "-c", code, manifest],
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "artifacts", "mountPath": ARTIFACT_MOUNT, "readOnly": True}],
    }


def build_teacher_deployment(owner: Owner, spec: DistilledModelSpec, images: Images,
                             volume: ArtifactVolume | None = None) -> dict:
    esc = spec.escalation
    volume = volume or artifact_volume(spec)
    image, pull_policy = esc.image or spec.job.image or images.job, job_pull_policy(spec, images)
    probe = lambda path, period: {  # noqa: E731
        "httpGet": {"path": path, "port": "metrics"}, "periodSeconds": period, "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    container = {
        "name": "teacher",
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": [
            "logdistill", "serve-teacher",
            "--model", teacher_checkpoint(spec),
            "--port", str(esc.port),
            "--metrics-port", str(esc.metrics_port),
            "--token-file", TOKEN_FILE,
            "--store", teacher_labels_dir(spec, owner.name),
            *(["--alert-below", str(esc.teacher_alert_below)] if esc.teacher_alert_below is not None else []),
        ],
        "env": _env(spec),
        "ports": [{"name": "http", "containerPort": esc.port, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": esc.metrics_port, "protocol": "TCP"}],
        "readinessProbe": probe("/readyz", 5),
        "livenessProbe": probe("/healthz", 10),
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "artifacts", "mountPath": ARTIFACT_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
            token_mount(),
        ],
    }
    if esc.resources is not None:
        container["resources"] = _resources(esc.resources)
    init: list[dict] = []
    if volume.prepare:  # it writes what it labels (--store) to the volume
        init.append(prepare_storage_container(spec, image, pull_policy))
    if spec.teacher.train is not None:
        init.append(wait_for_teacher_container(spec, image, pull_policy))
    pod_spec: dict = {
        "securityContext": _pod_security(),
        **({"initContainers": init} if init else {}),
        "containers": [container],
        "volumes": [
            {"name": "artifacts", "persistentVolumeClaim": {"claimName": volume.claim}},
            {"name": "tmp", "emptyDir": {}},
            token_volume(owner.name),
        ],
    }
    # Same identity as the Job: it patches its own pod (the agreement annotation).
    if spec.job.service_account_name:
        pod_spec["serviceAccountName"] = spec.job.service_account_name
    if spec.job.node_selector:
        pod_spec["nodeSelector"] = dict(spec.job.node_selector)
    if spec.job.tolerations:
        pod_spec["tolerations"] = _tolerations(spec.job.tolerations)
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**_metadata(owner, teacher_name(owner.name), "teacher"), "annotations": {}},
        "spec": {
            "replicas": esc.replicas,
            "selector": {"matchLabels": teacher_selector(owner.name)},
            "template": {"metadata": {"labels": labels(owner, "teacher")}, "spec": pod_spec},
        },
    }
    manifest["metadata"]["annotations"] = {APPLIED_HASH_ANNOTATION: manifest_hash(manifest["spec"])}
    return manifest


def build_teacher_service(owner: Owner, spec: DistilledModelSpec) -> dict:
    port = spec.escalation.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, teacher_name(owner.name), "teacher"),
        "spec": {
            "selector": teacher_selector(owner.name),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
