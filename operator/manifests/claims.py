"""The artifacts storage: the claim a CR's pods mount, the claim and hostPath PersistentVolume the
operator makes when one is missing, and the init container that readies a hostPath folder. Not
owned by a CR: the claim holds content-addressed teachers shared by CRs and generations."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

from logdistill.operator.manifests.common import ARTIFACT_MOUNT, _chown_command, _root_security
from logdistill.operator.names import COMPONENT_LABEL, HOST_PATH_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL
from logdistill.spec import DistilledModelSpec


DEFAULT_CLAIM = "logdistill-artifacts"
PREPARE_STORAGE = "prepare-storage"


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


def storage_labels() -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "logdistill",
        COMPONENT_LABEL: "artifacts",
        MANAGED_BY_LABEL: MANAGED_BY,
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
