"""What every manifest shares: the owner and default images, the children's names, labels and
metadata, the pods' security contexts and environment. Pure: data in, manifests out."""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass

from logdistill import __version__
from logdistill.operator.names import (
    COMPONENT_LABEL,
    GROUP,
    KIND,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MODEL_LABEL,
    VERSION,
)
from logdistill.spec import DistilledModelSpec, Resources, Toleration


# Sections whose change needs a new distillation; the others (rollout, escalation, retrain) only
# update the running workloads.
TRAINING_SECTIONS = ("teacher", "student", "data", "training", "gate", "job", "storage")
SPEC_MOUNT = "/etc/logdistill"
SPEC_FILE = "spec.yaml"
ARTIFACT_MOUNT = "/artifacts"
TERMINATION_LOG = "/dev/termination-log"
# Pod and container identity of the workloads: the images' user (Dockerfile: uid/gid 10001);
# fsGroup makes a provisioned PVC writable (not a hostPath one: see prepare_storage_container).
RUN_AS = 10001
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
        "input": train.input,
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
        MANAGED_BY_LABEL: MANAGED_BY,
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


def manifest_hash(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


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
