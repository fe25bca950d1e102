"""Pure manifest builders: CR (name, uid, spec) in, Kubernetes manifests (plain dicts) out.

No API calls and no clock here, so every manifest is unit-tested and a handler that runs twice
builds the same objects (deterministic names: the second create is a 409, not a duplicate).
Every child carries an owner reference to its DistilledModel, so deleting the CR deletes them.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass

import yaml

from logdistill.contracts import AGREEMENT_ANNOTATION, PROGRESS_ANNOTATION  # noqa: F401 - re-exported
from logdistill.operator.crd import GROUP, KIND, VERSION
from logdistill.spec import DistilledModelSpec, Resources, Toleration

# Sections whose change needs a new distillation; the others (rollout, escalation, retrain) only
# update the running workloads.
TRAINING_SECTIONS = ("teacher", "student", "data", "training", "gate", "job", "storage")

SPEC_MOUNT = "/etc/logdistill"
SPEC_FILE = "spec.yaml"
ARTIFACT_MOUNT = "/artifacts"
TERMINATION_LOG = "/dev/termination-log"
MANAGED_BY = "logdistill-operator"
# Labels and annotations under our own prefix.
MODEL_LABEL = f"{GROUP}/model"
GENERATION_LABEL = f"{GROUP}/generation"
COMPONENT_LABEL = "app.kubernetes.io/component"
VERSION_ANNOTATION = f"{GROUP}/version"
ARTIFACT_ANNOTATION = f"{GROUP}/artifact"
SHA256_ANNOTATION = f"{GROUP}/sha256"
APPLIED_HASH_ANNOTATION = f"{GROUP}/applied-hash"
RUN_LABEL = f"{GROUP}/run"
# Set on the CR by a user: each new value starts one re-distillation.
RETRAIN_REQUEST_ANNOTATION = f"{GROUP}/retrain-request"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
RDZV_PORT = 29500
GPU_RESOURCE = "nvidia.com/gpu"
# Pod and container identity of the workloads (non-root; fsGroup makes the PVC writable).
RUN_AS = 65532


@dataclass(frozen=True)
class Owner:
    """The DistilledModel a manifest belongs to."""

    name: str
    namespace: str
    uid: str
    generation: int

    @classmethod
    def from_body(cls, body) -> "Owner":
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], generation=int(meta["generation"]))


@dataclass(frozen=True)
class Images:
    """Images the operator falls back to when the spec names none."""

    job: str
    edge: str


# --- names ----------------------------------------------------------------------------------

def configmap_name(name: str, generation: int) -> str:
    return f"{name}-spec-g{generation}"


def run_suffix(generation: int, retrain: int = 0) -> str:
    """A distillation run: a spec generation, and its re-distillations ``-r1``, ``-r2``, ..."""
    return f"g{generation}" + (f"-r{retrain}" if retrain else "")


def job_name(name: str, generation: int, retrain: int = 0) -> str:
    return f"{name}-distill-{run_suffix(generation, retrain)}"


def label_job_name(name: str, generation: int) -> str:
    """The Indexed Job that computes a generation's soft targets (workers > 1); re-distillations reuse them."""
    return f"{name}-label-g{generation}"


def teacher_name(name: str) -> str:
    return f"{name}-teacher"


def daemonset_name(name: str) -> str:
    return f"{name}-classifier"


def service_name(name: str) -> str:
    return f"{name}-classifier-metrics"


def artifact_relpath(spec: DistilledModelSpec, name: str, generation: int, retrain: int = 0) -> str:
    """Where a run's artifact lives inside the storage volume."""
    return posixpath.join(spec.storage.persistent_volume_claim.sub_path, name, run_suffix(generation, retrain))


def soft_targets_dir(spec: DistilledModelSpec, name: str, generation: int) -> str:
    """Absolute path (as the pods see it) of a generation's sharded soft targets."""
    return posixpath.join(ARTIFACT_MOUNT, spec.storage.persistent_volume_claim.sub_path, name, f"g{generation}",
                          "soft-targets")


def teacher_labels_dir(spec: DistilledModelSpec, name: str) -> str:
    """Absolute path of what the teacher service labelled (the extra data of a re-distillation)."""
    return posixpath.join(ARTIFACT_MOUNT, spec.storage.persistent_volume_claim.sub_path, name, "teacher-labels")


def training_hash(spec: DistilledModelSpec) -> str:
    """Digest of the sections that need a new distillation when they change."""
    data = spec.model_dump(by_alias=True, mode="json", include=set(TRAINING_SECTIONS))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# --- shared pieces --------------------------------------------------------------------------

def owner_reference(owner: Owner) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "logdistill",
        "app.kubernetes.io/instance": owner.name,
        COMPONENT_LABEL: component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        MODEL_LABEL: owner.name,
    }


def _metadata(owner: Owner, name: str, component: str, extra_labels: dict | None = None) -> dict:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**labels(owner, component), **(extra_labels or {})},
        "ownerReferences": [owner_reference(owner)],
    }


def _tolerations(items: list[Toleration]) -> list[dict]:
    return [t.model_dump(by_alias=True, exclude_none=True) for t in items]


def _resources(res: Resources | None) -> dict:
    return res.model_dump(by_alias=True, exclude_none=True) if res is not None else {}


def _container_security() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security(supplemental_groups: list[int] | None = None) -> dict:
    ctx = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if supplemental_groups:
        ctx["supplementalGroups"] = supplemental_groups
    return ctx


def manifest_hash(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


# --- the distillation Job -------------------------------------------------------------------

def spec_yaml(spec: DistilledModelSpec) -> str:
    """The whole CR spec as the engine's config file (it reads only its own sections)."""
    return yaml.safe_dump(spec.model_dump(by_alias=True, exclude_none=True, mode="json"), sort_keys=False)


def build_configmap(owner: Owner, spec: DistilledModelSpec) -> dict:
    meta = _metadata(owner, configmap_name(owner.name, owner.generation), "distill",
                     {GENERATION_LABEL: str(owner.generation)})
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {SPEC_FILE: spec_yaml(spec)}}


def job_command(spec: DistilledModelSpec, owner: Owner, retrain: int = 0, extra: list[str] | None = None) -> list[str]:
    out = posixpath.join(ARTIFACT_MOUNT, artifact_relpath(spec, owner.name, owner.generation, retrain))
    command = [
        "logdistill", "operator", "job-run",
        "--config", posixpath.join(SPEC_MOUNT, SPEC_FILE),
        "--out", out,
        "--summary-file", TERMINATION_LOG,
    ]
    return command + ["--", *extra] if extra else command


def engine_extra_args(spec: DistilledModelSpec, owner: Owner, retrain: int) -> list[str]:
    """Arguments for ``logdistill distill`` beyond config/out: precomputed soft targets (workers > 1)
    and, for a re-distillation with escalation on, the lines the teacher service labelled."""
    extra: list[str] = []
    if spec.job.workers > 1:
        extra += ["--soft-targets", soft_targets_dir(spec, owner.name, owner.generation)]
    if retrain and spec.escalation.enabled:
        extra += ["--extra-data", teacher_labels_dir(spec, owner.name)]
    return extra


def distributed_command(spec: DistilledModelSpec, owner: Owner, retrain: int = 0) -> list[str]:
    """torchrun on each worker pod: static rendezvous at pod 0 (``<job>-0.<service>``), node rank =
    completion index, so global rank 0 (which evaluates and writes the summary) is pod 0."""
    job = job_name(owner.name, owner.generation, retrain)
    return [
        "torchrun", f"--nnodes={spec.job.workers}", "--nproc-per-node=1",
        "--node-rank=$(JOB_COMPLETION_INDEX)", "--rdzv-backend=static",
        f"--rdzv-endpoint={job}-0.{job}:{RDZV_PORT}", "--max-restarts=0", "--no-python",
        *job_command(spec, owner, retrain, engine_extra_args(spec, owner, retrain)),
    ]


def label_command(spec: DistilledModelSpec, owner: Owner) -> list[str]:
    return [
        "logdistill", "label",
        "--config", posixpath.join(SPEC_MOUNT, SPEC_FILE),
        "--shard-index", "$(JOB_COMPLETION_INDEX)",
        "--shards", str(spec.job.workers),
        "--out", soft_targets_dir(spec, owner.name, owner.generation),
    ]


def _worker_resources(spec: DistilledModelSpec) -> dict:
    res = _resources(spec.job.resources)
    if spec.job.gpu:
        res["limits"] = {**res.get("limits", {}), GPU_RESOURCE: str(spec.job.gpu)}
    return res


def _env(spec: DistilledModelSpec) -> list[dict]:
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "HOME", "value": "/tmp"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
    ]
    endpoint = spec.teacher.endpoint
    if endpoint is not None and endpoint.secret_ref is not None:
        env.append({"name": endpoint.api_key_env, "valueFrom": {"secretKeyRef": {
            "name": endpoint.secret_ref.name, "key": endpoint.secret_ref.key}}})
    return env


def _job_manifest(owner: Owner, spec: DistilledModelSpec, images: Images, *, name: str, component: str,
                  command: list[str], run: str, workers: int = 1, subdomain: str | None = None) -> dict:
    job = spec.job
    run_labels = {GENERATION_LABEL: str(owner.generation), RUN_LABEL: run}
    meta = _metadata(owner, name, component, run_labels)
    container = {
        "name": "distill",
        "image": job.image or images.job,
        "imagePullPolicy": job.image_pull_policy,
        "command": command,
        "env": _env(spec),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True},
            {"name": "artifacts", "mountPath": ARTIFACT_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    resources = _worker_resources(spec)
    if resources:
        container["resources"] = resources
    if subdomain:
        container["ports"] = [{"name": "rdzv", "containerPort": RDZV_PORT, "protocol": "TCP"}]
    pod_spec: dict = {
        "restartPolicy": "Never",
        "securityContext": _pod_security(),
        "containers": [container],
        "volumes": [
            {"name": "spec", "configMap": {"name": configmap_name(owner.name, owner.generation)}},
            {"name": "artifacts",
             "persistentVolumeClaim": {"claimName": spec.storage.persistent_volume_claim.claim_name}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if subdomain:
        pod_spec["subdomain"] = subdomain
    if job.service_account_name:
        pod_spec["serviceAccountName"] = job.service_account_name
    if job.node_selector:
        pod_spec["nodeSelector"] = dict(job.node_selector)
    if job.tolerations:
        pod_spec["tolerations"] = _tolerations(job.tolerations)
    job_spec: dict = {
        "backoffLimit": job.backoff_limit,
        "activeDeadlineSeconds": job.active_deadline_seconds,
        "template": {"metadata": {"labels": {**labels(owner, component), **run_labels}}, "spec": pod_spec},
    }
    if workers > 1 or component == "label":
        job_spec.update(completionMode="Indexed", completions=workers, parallelism=workers)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


def build_job(owner: Owner, spec: DistilledModelSpec, images: Images, retrain: int = 0) -> dict:
    """The distillation Job of a run: one pod, or (workers > 1) an Indexed Job of torchrun workers."""
    name = job_name(owner.name, owner.generation, retrain)
    run = run_suffix(owner.generation, retrain)
    workers = spec.job.workers
    if workers == 1:
        return _job_manifest(owner, spec, images, name=name, component="distill", run=run,
                             command=job_command(spec, owner, retrain, engine_extra_args(spec, owner, retrain)))
    manifest = _job_manifest(owner, spec, images, name=name, component="distill", run=run, workers=workers,
                             subdomain=name, command=distributed_command(spec, owner, retrain))
    # A lost worker breaks the collective: fail the whole Job at once, with the pod named in its reason.
    manifest["spec"]["backoffLimit"] = 0
    manifest["spec"]["podFailurePolicy"] = {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "distill", "operator": "NotIn", "values": [0]}},
        {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]}
    return manifest


def build_label_job(owner: Owner, spec: DistilledModelSpec, images: Images) -> dict:
    """The Indexed Job that labels one shard of the training lines per completion index; a failed
    index is retried on its own (backoffLimitPerIndex) and rewrites only its shard."""
    manifest = _job_manifest(owner, spec, images, name=label_job_name(owner.name, owner.generation),
                             component="label", run=run_suffix(owner.generation), workers=spec.job.workers,
                             command=label_command(spec, owner))
    job_spec = manifest["spec"]
    job_spec.pop("backoffLimit")
    job_spec["backoffLimitPerIndex"] = spec.job.backoff_limit
    return manifest


def build_rendezvous_service(owner: Owner, spec: DistilledModelSpec, retrain: int = 0) -> dict:
    """Headless Service giving each distillation worker a stable DNS name (``<job>-<i>.<service>``)."""
    name = job_name(owner.name, owner.generation, retrain)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, name, "distill", {GENERATION_LABEL: str(owner.generation)}),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"job-name": name},
            "ports": [{"name": "rdzv", "port": RDZV_PORT, "targetPort": RDZV_PORT, "protocol": "TCP"}],
        },
    }


# --- the teacher service (escalation) -------------------------------------------------------

def teacher_url(owner: Owner, spec: DistilledModelSpec) -> str:
    return f"http://{teacher_name(owner.name)}.{owner.namespace}.svc:{spec.escalation.port}"


def teacher_checkpoint(spec: DistilledModelSpec) -> str:
    """The checkpoint the teacher service loads: the teacher, or the first (heaviest) ensemble member."""
    if spec.teacher.checkpoint:
        return spec.teacher.checkpoint
    members = sorted(spec.teacher.ensemble or [], key=lambda m: -m.weight)
    if not members:
        raise ValueError("escalation needs teacher.checkpoint or teacher.ensemble")
    return members[0].checkpoint


def teacher_selector(owner_name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "logdistill", "app.kubernetes.io/instance": owner_name,
            COMPONENT_LABEL: "teacher"}


def build_teacher_deployment(owner: Owner, spec: DistilledModelSpec, images: Images) -> dict:
    esc = spec.escalation
    probe = lambda path, period: {  # noqa: E731
        "httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": 3,
    }
    container = {
        "name": "teacher",
        "image": esc.image or spec.job.image or images.job,
        "imagePullPolicy": spec.job.image_pull_policy,
        "command": [
            "logdistill", "serve-teacher",
            "--model", teacher_checkpoint(spec),
            "--port", str(esc.port),
            "--store", teacher_labels_dir(spec, owner.name),
            *(["--alert-below", str(esc.teacher_alert_below)] if esc.teacher_alert_below is not None else []),
        ],
        "env": _env(spec),
        "ports": [{"name": "http", "containerPort": esc.port, "protocol": "TCP"}],
        "readinessProbe": probe("/readyz", 5),
        "livenessProbe": probe("/healthz", 10),
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "artifacts", "mountPath": ARTIFACT_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if esc.resources is not None:
        container["resources"] = _resources(esc.resources)
    pod_spec: dict = {
        "securityContext": _pod_security(),
        "containers": [container],
        "volumes": [
            {"name": "artifacts",
             "persistentVolumeClaim": {"claimName": spec.storage.persistent_volume_claim.claim_name}},
            {"name": "tmp", "emptyDir": {}},
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


# --- the edge classifier --------------------------------------------------------------------

def log_directories(log_paths: list[str]) -> list[str]:
    """The host folders to mount for some paths/globs: each one's folder part before any wildcard."""
    dirs: list[str] = []
    for path in log_paths:
        parts = path.split("/")
        fixed = []
        for part in parts[:-1]:
            if any(ch in part for ch in "*?["):
                break
            fixed.append(part)
        folder = "/".join(fixed) or "/"
        if folder not in dirs:
            dirs.append(folder)
    # A folder inside another mounted folder is already visible.
    return [d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in dirs)]


@dataclass(frozen=True)
class Release:
    """The artifact a DaemonSet serves."""

    version: str
    generation: int
    artifact: str  # path inside the storage volume
    sha256: str


def selector_labels(owner_name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "logdistill",
        "app.kubernetes.io/instance": owner_name,
        COMPONENT_LABEL: "classifier",
    }


def escalation_args(owner: Owner, spec: DistilledModelSpec) -> list[str]:
    esc = spec.escalation
    if not esc.enabled:
        return []
    return [
        "--teacher-url", teacher_url(owner, spec),
        "--escalate-below", f"{esc.confidence_threshold:g}",
        "--sample-rate", f"{esc.sample_rate:g}",
        "--escalation-queue", str(esc.queue_size),
        "--escalation-rps", f"{esc.rate_limit:g}",
    ]


def build_daemonset(owner: Owner, spec: DistilledModelSpec, release: Release, images: Images) -> dict:
    rollout = spec.rollout
    log_dirs = log_directories(rollout.log_paths)
    mounts = [{"name": "artifacts", "mountPath": ARTIFACT_MOUNT, "readOnly": True}]
    volumes: list[dict] = [{"name": "artifacts", "persistentVolumeClaim": {
        "claimName": spec.storage.persistent_volume_claim.claim_name, "readOnly": True}}]
    for i, folder in enumerate(log_dirs):
        mounts.append({"name": f"logs-{i}", "mountPath": folder, "readOnly": True})
        volumes.append({"name": f"logs-{i}", "hostPath": {"path": folder, "type": "Directory"}})
    volumes.append({"name": "tmp", "emptyDir": {}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    probe = lambda path, period: {  # noqa: E731 - two probes differing only in path and period
        "httpGet": {"path": path, "port": "metrics"}, "periodSeconds": period, "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    container = {
        "name": "classify",
        "image": rollout.image or images.edge,
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "logdistill", "classify",
            "--model", posixpath.join(ARTIFACT_MOUNT, release.artifact),
            "--port", str(rollout.port),
            "--paths", *rollout.log_paths,
            *escalation_args(owner, spec),
        ],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "HOME", "value": "/tmp"},
        ],
        "ports": [{"name": "metrics", "containerPort": rollout.port, "protocol": "TCP"}],
        "readinessProbe": probe("/readyz", 5),
        "livenessProbe": probe("/healthz", 10),
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    if rollout.resources is not None:
        container["resources"] = _resources(rollout.resources)
    pod_spec: dict = {
        # adm (4) reads /var/log on Debian-family hosts without running as root.
        "securityContext": _pod_security(supplemental_groups=[4]),
        "nodeSelector": dict(rollout.node_selector),
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": False,
    }
    if rollout.tolerations:
        pod_spec["tolerations"] = _tolerations(rollout.tolerations)
    release_annotations = {
        VERSION_ANNOTATION: release.version,
        GENERATION_LABEL: str(release.generation),
        ARTIFACT_ANNOTATION: release.artifact,
        SHA256_ANNOTATION: release.sha256,
    }
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {**_metadata(owner, daemonset_name(owner.name), "classifier"), "annotations": {}},
        "spec": {
            "selector": {"matchLabels": selector_labels(owner.name)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": rollout.max_unavailable}},
            "template": {
                "metadata": {"labels": labels(owner, "classifier"), "annotations": release_annotations},
                "spec": pod_spec,
            },
        },
    }
    manifest["metadata"]["annotations"] = {
        **release_annotations, APPLIED_HASH_ANNOTATION: manifest_hash(manifest["spec"]),
    }
    return manifest


def build_service(owner: Owner, spec: DistilledModelSpec) -> dict:
    """A headless Service over the classifier pods, so Prometheus can scrape each node's /metrics."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, service_name(owner.name), "classifier"),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(owner.name),
            "ports": [{"name": "metrics", "port": spec.rollout.port, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


def release_of(daemonset: dict | None) -> Release | None:
    """The release a DaemonSet manifest (built here or read from the API) serves, from its template."""
    if not daemonset:
        return None
    ann = ((daemonset.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
    if VERSION_ANNOTATION not in ann:
        return None
    try:
        generation = int(ann.get(GENERATION_LABEL, "0"))
    except ValueError:
        generation = 0
    return Release(version=ann[VERSION_ANNOTATION], generation=generation,
                   artifact=ann.get(ARTIFACT_ANNOTATION, ""), sha256=ann.get(SHA256_ANNOTATION, ""))
