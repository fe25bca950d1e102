"""Pure decisions behind the operator's fault handling: which workloads a settled CR lacks, and
whose an existing child is (a 409 on create)."""

from __future__ import annotations

import kopf
import pytest

from logdistill.operator import kubeapi, views
from logdistill.operator.drift import Child, missing_children
from logdistill.operator.events import build_event
from logdistill.operator.status import DistilledModelStatus
from logdistill.spec import DistilledModelSpec, parse_spec

BASE = {"teacher": {"checkpoint": "/artifacts/teachers/t"}}
CLASSIFIER = {Child("DaemonSet", "m-classifier"), Child("Service", "m-classifier-metrics")}
TEACHER = {Child("Deployment", "m-teacher"), Child("Service", "m-teacher")}


def spec(escalation: bool) -> DistilledModelSpec:
    return parse_spec({**BASE, "escalation": {"enabled": escalation}}, DistilledModelSpec)


def status(phase: str, serving: str | None) -> DistilledModelStatus:
    return DistilledModelStatus(phase=phase, serving_version=serving)


@pytest.mark.parametrize("phase, serving, escalation, present, missing", [
    ("Ready", "v1", False, CLASSIFIER, []),
    ("Ready", "v1", False, {Child("Service", "m-classifier-metrics")}, [Child("DaemonSet", "m-classifier")]),
    ("Ready", "v1", True, CLASSIFIER, sorted(TEACHER)),
    ("Degraded", "v1", False, set(), sorted(CLASSIFIER)),
    ("Failed", None, True, set(), sorted(TEACHER)),  # nothing serves: only the teacher is kept
    ("Failed", None, False, set(), []),
    ("Distilling", "v1", True, set(), []),  # unsettled: the running reconcile creates them
    ("RollingOut", "v1", False, set(), []),
])
def test_missing_children(phase, serving, escalation, present, missing):
    assert missing_children("m", spec(escalation), status(phase, serving), present) == missing


WANTED = {"kind": "DistilledModel", "name": "m", "uid": "new"}


def refs(*owners):
    return views.owner_refs({"metadata": {"ownerReferences": [
        {"apiVersion": "logdistill.io/v1alpha1", "kind": k, "name": n, "uid": u} for k, n, u in owners]}})


def test_a_child_of_this_cr_is_adopted():
    kubeapi.check_owner(refs(("DistilledModel", "m", "new")), WANTED, "Job ns/m-distill-g1")


def test_a_previous_incarnations_child_is_waited_for():
    with pytest.raises(kopf.TemporaryError) as err:
        kubeapi.check_owner(refs(("DistilledModel", "m", "old")), WANTED, "Job ns/m-distill-g1")
    assert "Job ns/m-distill-g1 still belongs to a deleted DistilledModel m (uid old)" in str(err.value)
    assert err.value.delay == kubeapi.PREVIOUS_OWNER_RETRY_S


@pytest.mark.parametrize("owners, who", [((), "nobody"), ((("DistilledModel", "other", "x"),), "DistilledModel other"),
                                         ((("Deployment", "m", "y"),), "Deployment m")])
def test_anything_else_is_a_foreign_child(owners, who):
    with pytest.raises(kubeapi.ForeignChild) as err:
        kubeapi.check_owner(refs(*owners), WANTED, "ConfigMap ns/m-spec-g1")
    assert str(err.value).startswith(f"ConfigMap ns/m-spec-g1 exists and is not owned by DistilledModel m (owned by {who})")


def test_an_event_built_outside_kopf_points_at_the_cr():
    body = {"apiVersion": "logdistill.io/v1alpha1", "kind": "DistilledModel",
            "metadata": {"name": "m", "namespace": "ns", "uid": "u"}}
    event = build_event(body, "ChildRecreated", "gone", warning=True)
    assert event["involvedObject"] == {"apiVersion": "logdistill.io/v1alpha1", "kind": "DistilledModel", "name": "m",
                                       "namespace": "ns", "uid": "u"}
    assert (event["type"], event["reason"], event["metadata"]["generateName"]) == ("Warning", "ChildRecreated", "m.")
