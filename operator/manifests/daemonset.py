"""The edge classifier: its DaemonSet (the release it serves in its annotations) and the headless
metrics Service."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from logdistill.operator.manifests.apitoken import TOKEN_FILE, token_mount, token_volume
from logdistill.operator.manifests.claims import ArtifactVolume, artifact_volume
from logdistill.operator.manifests.common import (
    ARTIFACT_MOUNT,
    Images,
    Owner,
    _chown_command,
    _container_security,
    _metadata,
    _pod_security,
    _resources,
    _root_security,
    _tolerations,
    daemonset_name,
    labels,
    manifest_hash,
    service_name,
)
from logdistill.operator.manifests.teacher_service import teacher_url
from logdistill.operator.names import (
    APPLIED_HASH_ANNOTATION,
    ARTIFACT_ANNOTATION,
    COMPONENT_LABEL,
    GENERATION_LABEL,
    SHA256_ANNOTATION,
    VERSION_ANNOTATION,
)
from logdistill.policy import DEFAULT_LOG_ROOTS, GLOB_CHARS, within_roots
from logdistill.spec import DistilledModelSpec


# The classifier's read offsets survive pod restarts in a host folder per DistilledModel.
STATE_ROOT = "/var/lib/logdistill/state"
STATE_MOUNT = "/var/lib/logdistill/state"
# Pod log files are root:root 0640 in root-owned 0750/0755 folders: group 0 reads them.
LOG_READER_GROUPS = [0]
PREPARE_STATE = "prepare-state"


def log_directories(log_paths: list[str], roots: tuple[str, ...] = DEFAULT_LOG_ROOTS) -> list[str]:
    """The host folders to mount for some paths/globs: each one's folder part before any wildcard. A
    folder outside ``roots`` (``/``, a parent of a root, a sibling) is never mounted: ValueError."""
    dirs: list[str] = []
    for path in log_paths:
        parts = path.split("/")
        fixed = []
        for part in parts[:-1]:
            if any(ch in part for ch in GLOB_CHARS) or part == "..":
                break
            fixed.append(part)
        folder = "/".join(fixed) or "/"
        if not within_roots(folder, roots):
            raise ValueError(f"log path {path!r} would mount host folder {folder!r}, outside the log roots "
                             f"{', '.join(roots)}")
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
                    volume: ArtifactVolume | None = None, log_roots: tuple[str, ...] = DEFAULT_LOG_ROOTS) -> dict:
    """The classifier on every selected node. It reads host folders (hostPath: its namespace must allow
    Pod Security ``privileged``), as uid 10001 with supplementary group 0 (pod logs are root:root 0640),
    and keeps its read offsets in ``/var/lib/logdistill/state/<namespace>_<name>`` on the node, handed
    to uid 10001 by the ``prepare-state`` init container (root with CHOWN only). Its log folders stay
    inside ``log_roots`` (:func:`log_directories`)."""
    rollout = spec.rollout
    volume = volume or artifact_volume(spec)
    image = rollout.image or images.edge
    log_dirs = log_directories(rollout.log_paths, log_roots)
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
    volumes.append(token_volume(owner.name))
    mounts.append(token_mount())
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
            # the API (token required) apart from the probes and /metrics Prometheus scrapes
            "--port", str(rollout.api_port),
            "--metrics-port", str(rollout.port),
            "--token-file", TOKEN_FILE,
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
        "ports": [{"name": "metrics", "containerPort": rollout.port, "protocol": "TCP"},
                  {"name": "api", "containerPort": rollout.api_port, "protocol": "TCP"}],
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
    """A headless Service over the classifier pods, so Prometheus can scrape each node's /metrics (the
    metrics port only: the API port is not published)."""
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
