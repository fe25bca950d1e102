"""Drift of a settled DistilledModel's workloads: which children it should have and which of them
are gone (deleted behind the operator's back). Pure: the CR's spec and status and the names of the
children present in, decisions out; :mod:`~logdistill.operator.scheduling` lists and acts."""

from __future__ import annotations

from dataclasses import dataclass

from logdistill.operator.manifests import common
from logdistill.operator.status import DistilledModelStatus
from logdistill.spec import DistilledModelSpec

# Settled phases (the resync leaves them alone); of these, a DaemonSet serves in Ready and Degraded.
SETTLED = ("Ready", "Failed", "Degraded")
SERVING = ("Ready", "Degraded")


@dataclass(frozen=True, order=True)
class Child:
    kind: str  # DaemonSet, Deployment or Service
    name: str

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


def expected_children(name: str, spec: DistilledModelSpec, status: DistilledModelStatus) -> set[Child]:
    """The long-lived workloads a settled CR keeps: the classifier DaemonSet and its metrics Service
    while a version serves, the teacher Deployment and Service while escalation is on."""
    wanted: set[Child] = set()
    if status.phase in SERVING and status.serving_version:
        wanted |= {Child("DaemonSet", common.daemonset_name(name)), Child("Service", common.service_name(name))}
    if spec.escalation.enabled:
        wanted |= {Child("Deployment", common.teacher_name(name)), Child("Service", common.teacher_name(name))}
    return wanted


def missing_children(name: str, spec: DistilledModelSpec, status: DistilledModelStatus,
                     present: set[Child]) -> list[Child]:
    """What a settled CR of its current generation lacks (sorted); nothing for an unsettled one
    (its reconcile is under way)."""
    if status.phase not in SETTLED:
        return []
    return sorted(expected_children(name, spec, status) - present)
