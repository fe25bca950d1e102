"""The NetworkPolicy of a teacher service: its API port takes connections from this DistilledModel's
classifier pods only; its metrics port (probes, Prometheus) from anywhere. Applied and deleted with
the teacher Service."""

from __future__ import annotations

from logdistill.operator.manifests.common import Owner, _metadata, manifest_hash, teacher_name
from logdistill.operator.manifests.daemonset import selector_labels
from logdistill.operator.manifests.teacher_service import teacher_selector
from logdistill.operator.names import APPLIED_HASH_ANNOTATION
from logdistill.spec import DistilledModelSpec


def build_teacher_network_policy(owner: Owner, spec: DistilledModelSpec) -> dict:
    esc = spec.escalation
    manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {**_metadata(owner, teacher_name(owner.name), "teacher"), "annotations": {}},
        "spec": {
            "podSelector": {"matchLabels": teacher_selector(owner.name)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": selector_labels(owner.name)}}],
                 "ports": [{"protocol": "TCP", "port": esc.port}]},
                {"ports": [{"protocol": "TCP", "port": esc.metrics_port}]},
            ],
        },
    }
    manifest["metadata"]["annotations"] = {APPLIED_HASH_ANNOTATION: manifest_hash(manifest["spec"])}
    return manifest
