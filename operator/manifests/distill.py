"""The distillation run: the spec ConfigMap, the distillation Job (one pod, or an Indexed Job of
torchrun workers with its headless rendezvous Service), the labelling Indexed Job, and the
``teacher`` init container that trains a ``teacher.train`` recipe first."""

from __future__ import annotations

import copy
import json
import posixpath

import yaml

from logdistill.operator.manifests.claims import ArtifactVolume, artifact_volume, prepare_storage_container
from logdistill.operator.manifests.common import (
    ARTIFACT_MOUNT,
    SPEC_FILE,
    SPEC_MOUNT,
    TERMINATION_LOG,
    Images,
    Owner,
    _container_security,
    _env,
    _metadata,
    _pod_security,
    _resources,
    _tolerations,
    artifact_relpath,
    configmap_name,
    job_name,
    job_pull_policy,
    label_job_name,
    labels,
    run_suffix,
    soft_targets_dir,
    teacher_labels_dir,
    teacher_train_spec,
    trained_teacher_dir,
)
from logdistill.operator.names import GENERATION_LABEL, RUN_LABEL
from logdistill.spec import DistilledModelSpec


RDZV_PORT = 29500
GPU_RESOURCE = "nvidia.com/gpu"
TEACHER_INIT = "teacher"


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


def job_command(spec: DistilledModelSpec, owner: Owner, retrain: int = 0, extra: list[str] | None = None,
                protect: tuple[str, ...] = ()) -> list[str]:
    """``protect``: version folders (``g1``, ``g2-r1``) the run's pruning must keep (the serving one)."""
    out = posixpath.join(ARTIFACT_MOUNT, artifact_relpath(spec, owner.name, owner.generation, retrain))
    command = [
        "logdistill", "operator", "job-run",
        "--config", posixpath.join(SPEC_MOUNT, SPEC_FILE),
        "--out", out,
        "--summary-file", TERMINATION_LOG,
        "--keep-versions", str(spec.artifacts.keep_versions),
        *(arg for run in protect for arg in ("--protect", run)),
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


def distributed_command(spec: DistilledModelSpec, owner: Owner, retrain: int = 0,
                        protect: tuple[str, ...] = ()) -> list[str]:
    """torchrun on each worker pod: static rendezvous at pod 0 (``<job>-0.<service>``), node rank =
    completion index, so global rank 0 (which evaluates and writes the summary) is pod 0."""
    job = job_name(owner.name, owner.generation, retrain)
    return [
        "torchrun", f"--nnodes={spec.job.workers}", "--nproc-per-node=1",
        "--node-rank=$(JOB_COMPLETION_INDEX)", "--rdzv-backend=static",
        f"--rdzv-endpoint={job}-0.{job}:{RDZV_PORT}", "--max-restarts=0", "--no-python",
        *job_command(spec, owner, retrain, engine_extra_args(spec, owner, retrain), protect),
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
              volume: ArtifactVolume | None = None, serving: str | None = None) -> dict:
    """The distillation Job of a run: one pod, or (workers > 1) an Indexed Job of torchrun workers.
    With ``teacher.train`` its pods first run the ``teacher`` init container (a no-op once trained).
    ``serving``: the served artifact's path in the volume (its version folder survives the run's pruning)."""
    protect = (posixpath.basename(serving),) if serving else ()
    name = job_name(owner.name, owner.generation, retrain)
    run = run_suffix(owner.generation, retrain)
    workers = spec.job.workers
    if workers == 1:
        return _job_manifest(owner, spec, images, name=name, component="distill", run=run, volume=volume,
                             command=job_command(spec, owner, retrain, engine_extra_args(spec, owner, retrain),
                                                 protect))
    manifest = _job_manifest(owner, spec, images, name=name, component="distill", run=run, workers=workers,
                             subdomain=name, command=distributed_command(spec, owner, retrain, protect), volume=volume)
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
