"""Pure manifest builders: CR (name, uid, spec) in, Kubernetes manifests (plain dicts) out.

No API calls and no clock here, so every manifest is unit-tested and a handler that runs twice
builds the same objects (deterministic names: the second create is a 409, not a duplicate).
Every child carries an owner reference to its DistilledModel, so deleting the CR deletes them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import posixpath
from dataclasses import dataclass

import yaml

from logdistill import __version__
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
# Pod and container identity of the workloads: the images' user (Dockerfile: uid/gid 10001);
# fsGroup makes a provisioned PVC writable (not a hostPath one: see prepare_storage_container).
RUN_AS = 10001
# The classifier's read offsets survive pod restarts in a host folder per DistilledModel.
STATE_ROOT = "/var/lib/logdistill/state"
STATE_MOUNT = "/var/lib/logdistill/state"
# Pod log files are root:root 0640 in root-owned 0750/0755 folders: group 0 reads them.
LOG_READER_GROUPS = [0]
DEFAULT_CLAIM = "logdistill-artifacts"
HOST_PATH_ANNOTATION = f"{GROUP}/host-path"
PREPARE_STORAGE = "prepare-storage"
PREPARE_STATE = "prepare-state"
TEACHER_INIT = "teacher"
WAIT_TEACHER = "wait-teacher"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


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
    """Images the operator falls back to when the spec names none, and the pull policy of every
    child pod whose spec sets none (``--image-pull-policy`` for the full image's pods,
    ``--edge-image-pull-policy`` for the classifier's; ``Never`` for images imported by hand)."""

    job: str
    edge: str
    pull_policy: str = "IfNotPresent"
    edge_pull_policy: str = "IfNotPresent"

    def __post_init__(self) -> None:
        for policy in (self.pull_policy, self.edge_pull_policy):
            if policy not in PULL_POLICIES:
                raise ValueError(f"image pull policy {policy!r} is not one of {', '.join(PULL_POLICIES)}")


@dataclass(frozen=True)
class StorageSettings:
    """How the operator provides the artifacts claim a DistilledModel names (operator flags).

    ``create``: create a missing claim in the CR's namespace (no owner reference: it holds
    content-addressed teachers shared by CRs and generations). ``host_path``: for clusters without a
    dynamic provisioner, back each claim it creates with a hostPath PersistentVolume
    ``logdistill-<namespace>-<claim>`` at ``<host_path>/<namespace>/<claim>`` (single-node clusters:
    every pod must run on the node that holds the folder)."""

    default_claim: str = DEFAULT_CLAIM
    create: bool = True
    size: str = "10Gi"
    storage_class: str = ""  # "" = the cluster's default StorageClass (field omitted)
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)
    host_path: str = ""  # "" = off

    def __post_init__(self) -> None:
        bad = [m for m in self.access_modes if m not in ACCESS_MODES]
        if bad or not self.access_modes:
            raise ValueError(f"access modes {list(self.access_modes)}: each must be one of {', '.join(ACCESS_MODES)}")
        if self.host_path and not self.host_path.startswith("/"):
            raise ValueError(f"artifacts host path {self.host_path!r} must be absolute")


ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")


@dataclass(frozen=True)
class ArtifactVolume:
    """The claim a CR's pods mount, and whether it is an operator-made hostPath volume (root-owned
    folders, no fsGroup: the pods that write get the ``prepare-storage`` init container)."""

    claim: str
    prepare: bool = False


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


def claim_name(spec: DistilledModelSpec, settings: StorageSettings | None = None) -> str:
    """The artifacts claim of a CR: ``storage.persistentVolumeClaim.claimName``, else the operator's default."""
    return spec.storage.persistent_volume_claim.claim_name or (settings or StorageSettings()).default_claim


def persistent_volume_name(namespace: str, claim: str) -> str:
    """The hostPath PersistentVolume the operator makes for a claim (cluster-scoped, so the namespace is in it)."""
    name = f"logdistill-{namespace}-{claim}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(f"{namespace}/{claim}".encode()).hexdigest()[:10]
    return f"{name[:242]}-{digest}"


def host_path_of(settings: StorageSettings, namespace: str, claim: str) -> str:
    return posixpath.join(settings.host_path, namespace, claim)


def teacher_train_spec(spec: DistilledModelSpec) -> dict | None:
    """The resolved ``teacher.train`` recipe (every default filled in from the distillation's data and
    seed) as canonical JSON data, or None for other teacher sources. It names the teacher's folder and
    is what ``logdistill teacher ensure --spec-json`` trains."""
    train = spec.teacher.train
    if train is None:
        return None
    data = (train.data or spec.data).model_dump(by_alias=True, mode="json")
    if train.max_per_template is not None:
        data["maxPerTemplate"] = train.max_per_template
    return {
        "base": train.base,
        "data": data,
        "epochs": train.epochs,
        "learningRate": train.learning_rate,
        "seed": train.seed if train.seed is not None else spec.training.seed,
    }


def teacher_digest(spec: DistilledModelSpec) -> str:
    """16 hex digits of sha256 over the resolved train recipe and the logdistill version."""
    recipe = teacher_train_spec(spec)
    if recipe is None:
        raise ValueError("teacher.train is not set")
    canonical = json.dumps({"train": recipe, "version": __version__}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def trained_teacher_dir(spec: DistilledModelSpec) -> str:
    """Absolute path (as the pods see it) of the content-addressed teacher of ``teacher.train``:
    ``/artifacts/<subPath>/teachers/<digest>``, shared by every run and CR with the same recipe."""
    return posixpath.join(ARTIFACT_MOUNT, spec.storage.persistent_volume_claim.sub_path, "teachers",
                          teacher_digest(spec))


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


def _root_security(capabilities: list[str]) -> dict:
    """A short-lived root init container that only fixes ownership: root with just ``capabilities``
    (Pod Security baseline, not restricted), no privilege escalation, read-only root filesystem."""
    return {
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": list(capabilities)},
        "seccompProfile": {"type": "RuntimeDefault"},
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


def _chown_command(folder: str, create: bool) -> list[str]:
    """python (in both images) rather than a shell: create ``folder`` if asked, then hand it to RUN_AS."""
    code = ("import os, sys; d = sys.argv[1]; " + ("os.makedirs(d, exist_ok=True); " if create else "")
            + f"os.chown(d, {RUN_AS}, {RUN_AS})")
    return ["python", "-c", code, folder]


def prepare_storage_container(spec: DistilledModelSpec, image: str, pull_policy: str) -> dict:
    """First init container of the pods that write to an operator-made hostPath volume: the kubelet
    creates hostPath folders root:root 0755 and fsGroup does not apply to hostPath, so this creates
    ``<subPath>`` and chowns it to the images' user (CHOWN only; DAC_OVERRIDE/FOWNER are not needed:
    root owns the folders it creates in)."""
    folder = posixpath.join(ARTIFACT_MOUNT, spec.storage.persistent_volume_claim.sub_path)
    return {
        "name": PREPARE_STORAGE,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": _chown_command(folder, create=True),
        "securityContext": _root_security(["CHOWN"]),
        "volumeMounts": [{"name": "artifacts", "mountPath": ARTIFACT_MOUNT}],
    }


def manifest_hash(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


# --- storage (not owned by a CR: shared by CRs and generations) -------------------------------

def storage_labels() -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "logdistill",
        COMPONENT_LABEL: "artifacts",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def build_claim(namespace: str, claim: str, settings: StorageSettings) -> dict:
    """The artifacts PersistentVolumeClaim the operator creates when a CR names a missing one. No owner
    reference: it holds the content-addressed teachers every CR and generation in the namespace reuses.
    With ``settings.host_path``: bound to its own hostPath PersistentVolume (storageClassName "")."""
    meta: dict = {"name": claim, "namespace": namespace, "labels": storage_labels()}
    spec: dict = {
        "accessModes": list(settings.access_modes),
        "resources": {"requests": {"storage": settings.size}},
    }
    if settings.host_path:
        meta["annotations"] = {HOST_PATH_ANNOTATION: host_path_of(settings, namespace, claim)}
        spec["storageClassName"] = ""
        spec["volumeName"] = persistent_volume_name(namespace, claim)
    elif settings.storage_class:
        spec["storageClassName"] = settings.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


def build_host_path_volume(namespace: str, claim: str, settings: StorageSettings) -> dict:
    """The cluster-scoped hostPath PersistentVolume behind an operator-made claim (``settings.host_path``
    set): ``<host_path>/<namespace>/<claim>``, created by the kubelet (DirectoryOrCreate), reserved for
    that claim (claimRef), kept when the claim goes (Retain)."""
    if not settings.host_path:
        raise ValueError("no artifacts host path configured")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": persistent_volume_name(namespace, claim),
                     "labels": storage_labels(),
                     "annotations": {HOST_PATH_ANNOTATION: host_path_of(settings, namespace, claim)}},
        "spec": {
            "capacity": {"storage": settings.size},
            "accessModes": list(settings.access_modes),
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "volumeMode": "Filesystem",
            "hostPath": {"path": host_path_of(settings, namespace, claim), "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace, "name": claim},
        },
    }


def artifact_volume(spec: DistilledModelSpec, claim: dict | None = None,
                    settings: StorageSettings | None = None) -> ArtifactVolume:
    """What the pods mount, from the claim as read from the API (None: not read)."""
    name = claim_name(spec, settings)
    annotations = ((claim or {}).get("metadata") or {}).get("annotations") or {}
    return ArtifactVolume(claim=name, prepare=HOST_PATH_ANNOTATION in annotations)


# --- the distillation Job -------------------------------------------------------------------

def engine_spec(spec: DistilledModelSpec) -> dict:
    """The whole CR spec as the engine's config (it reads only its own sections), with ``teacher.train``
    resolved to the checkpoint the ``teacher`` init container leaves on the volume."""
    data = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    if spec.teacher.train is not None:
        data["teacher"] = {"checkpoint": trained_teacher_dir(spec)}
    return data


def spec_yaml(spec: DistilledModelSpec) -> str:
    return yaml.safe_dump(engine_spec(spec), sort_keys=False)


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


def job_pull_policy(spec: DistilledModelSpec, images: Images) -> str:
    return spec.job.image_pull_policy or images.pull_policy


def teacher_command(spec: DistilledModelSpec) -> list[str]:
    """The ``teacher`` init container: train the ``teacher.train`` recipe into its content-addressed
    folder unless a verified artifact of that recipe is there (progress published on the pod as
    stages ``teacher-<stage>``, an error in its termination message)."""
    recipe = json.dumps(teacher_train_spec(spec), sort_keys=True, separators=(",", ":"))
    return [
        "logdistill", "operator", "job-run", "--engine", "teacher",
        "--out", trained_teacher_dir(spec),
        "--summary-file", TERMINATION_LOG,
        "--", "--spec-json", recipe,
    ]


def _job_manifest(owner: Owner, spec: DistilledModelSpec, images: Images, *, name: str, component: str,
                  command: list[str], run: str, workers: int = 1, subdomain: str | None = None,
                  volume: ArtifactVolume | None = None) -> dict:
    job = spec.job
    volume = volume or artifact_volume(spec)
    image, pull_policy = job.image or images.job, job_pull_policy(spec, images)
    run_labels = {GENERATION_LABEL: str(owner.generation), RUN_LABEL: run}
    meta = _metadata(owner, name, component, run_labels)
    mounts = [
        {"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True},
        {"name": "artifacts", "mountPath": ARTIFACT_MOUNT},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    container = {
        "name": "distill",
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": command,
        "env": _env(spec),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    resources = _worker_resources(spec)
    if resources:
        container["resources"] = resources
    if subdomain:
        container["ports"] = [{"name": "rdzv", "containerPort": RDZV_PORT, "protocol": "TCP"}]
    init: list[dict] = []
    if volume.prepare:
        init.append(prepare_storage_container(spec, image, pull_policy))
    if spec.teacher.train is not None:
        teacher = {**copy.deepcopy(container), "name": TEACHER_INIT, "command": teacher_command(spec),
                   "volumeMounts": [dict(m) for m in mounts if m["name"] != "spec"]}
        teacher.pop("ports", None)
        init.append(teacher)
    pod_spec: dict = {
        "restartPolicy": "Never",
        "securityContext": _pod_security(),
        **({"initContainers": init} if init else {}),
        "containers": [container],
        "volumes": [
            {"name": "spec", "configMap": {"name": configmap_name(owner.name, owner.generation)}},
            {"name": "artifacts", "persistentVolumeClaim": {"claimName": volume.claim}},
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


def build_job(owner: Owner, spec: DistilledModelSpec, images: Images, retrain: int = 0,
              volume: ArtifactVolume | None = None) -> dict:
    """The distillation Job of a run: one pod, or (workers > 1) an Indexed Job of torchrun workers.
    With ``teacher.train`` its pods first run the ``teacher`` init container (a no-op once trained)."""
    name = job_name(owner.name, owner.generation, retrain)
    run = run_suffix(owner.generation, retrain)
    workers = spec.job.workers
    if workers == 1:
        return _job_manifest(owner, spec, images, name=name, component="distill", run=run, volume=volume,
                             command=job_command(spec, owner, retrain, engine_extra_args(spec, owner, retrain)))
    manifest = _job_manifest(owner, spec, images, name=name, component="distill", run=run, workers=workers,
                             subdomain=name, command=distributed_command(spec, owner, retrain), volume=volume)
    # A lost worker breaks the collective: fail the whole Job at once, with the pod named in its reason.
    manifest["spec"]["backoffLimit"] = 0
    manifest["spec"]["podFailurePolicy"] = {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "distill", "operator": "NotIn", "values": [0]}},
        {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]}
    return manifest


def build_label_job(owner: Owner, spec: DistilledModelSpec, images: Images,
                    volume: ArtifactVolume | None = None) -> dict:
    """The Indexed Job that labels one shard of the training lines per completion index; a failed
    index is retried on its own (backoffLimitPerIndex) and rewrites only its shard."""
    manifest = _job_manifest(owner, spec, images, name=label_job_name(owner.name, owner.generation),
                             component="label", run=run_suffix(owner.generation), workers=spec.job.workers,
                             command=label_command(spec, owner), volume=volume)
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
        "httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": 3,
    }
    container = {
        "name": "teacher",
        "image": image,
        "imagePullPolicy": pull_policy,
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


def state_host_path(owner: Owner) -> str:
    """The host folder of a classifier's read offsets: one per DistilledModel on each node."""
    return posixpath.join(STATE_ROOT, f"{owner.namespace}_{owner.name}")


def build_daemonset(owner: Owner, spec: DistilledModelSpec, release: Release, images: Images,
                    volume: ArtifactVolume | None = None) -> dict:
    """The classifier on every selected node. It reads host folders (hostPath: its namespace must allow
    Pod Security ``privileged``), as uid 10001 with supplementary group 0 (pod logs are root:root 0640),
    and keeps its read offsets in ``/var/lib/logdistill/state/<namespace>_<name>`` on the node, handed
    to uid 10001 by the ``prepare-state`` init container (root with CHOWN only)."""
    rollout = spec.rollout
    volume = volume or artifact_volume(spec)
    image = rollout.image or images.edge
    log_dirs = log_directories(rollout.log_paths)
    mounts = [{"name": "artifacts", "mountPath": ARTIFACT_MOUNT, "readOnly": True}]
    volumes: list[dict] = [{"name": "artifacts", "persistentVolumeClaim": {"claimName": volume.claim,
                                                                           "readOnly": True}}]
    for i, folder in enumerate(log_dirs):
        mounts.append({"name": f"logs-{i}", "mountPath": folder, "readOnly": True})
        volumes.append({"name": f"logs-{i}", "hostPath": {"path": folder, "type": "Directory"}})
    volumes.append({"name": "state", "hostPath": {"path": state_host_path(owner), "type": "DirectoryOrCreate"}})
    mounts.append({"name": "state", "mountPath": STATE_MOUNT})
    volumes.append({"name": "tmp", "emptyDir": {}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    probe = lambda path, period: {  # noqa: E731 - two probes differing only in path and period
        "httpGet": {"path": path, "port": "metrics"}, "periodSeconds": period, "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    container = {
        "name": "classify",
        "image": image,
        "imagePullPolicy": images.edge_pull_policy,
        "command": [
            "logdistill", "classify",
            "--model", posixpath.join(ARTIFACT_MOUNT, release.artifact),
            "--port", str(rollout.port),
            "--state-dir", STATE_MOUNT,
            # its own log files are under /var/log/pods too: never classify them
            "--exclude-pod-uid", "$(POD_UID)",
            "--paths", *rollout.log_paths,
            *escalation_args(owner, spec),
        ],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
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
    prepare_state = {
        "name": PREPARE_STATE,
        "image": image,
        "imagePullPolicy": images.edge_pull_policy,
        "command": _chown_command(STATE_MOUNT, create=False),
        "securityContext": _root_security(["CHOWN"]),
        "volumeMounts": [{"name": "state", "mountPath": STATE_MOUNT}],
    }
    pod_spec: dict = {
        # group 0 reads the kubelet's pod logs (root:root 0640 files) without running as root.
        "securityContext": _pod_security(supplemental_groups=LOG_READER_GROUPS),
        "nodeSelector": dict(rollout.node_selector),
        "initContainers": [prepare_state],
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
