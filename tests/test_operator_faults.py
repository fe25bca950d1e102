"""Operator faults on a real control plane (issue #17): a re-created CR and its previous
incarnation's children, a child name taken by a foreign object, Events posted outside kopf's
handlers, drift repair of a settled CR's workloads, refusing peering that cannot work, and
recovering from a kube-apiserver restart."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from test_operator_cluster import (  # noqa: F401 - fixtures
    BASE,
    apis,
    cluster,
    complete_job_pod,
    condition,
    create_cr,
    get_cr,
    jobs_of,
    storage,
    wait_established,
    wait_job,
    wait_phase,
)

from logdistill.operator import drift, handlers, scheduling
from logdistill.operator.context import Context
from logdistill.operator.main import OperatorThread
from logdistill.operator.manifests import common
from logdistill.operator.names import GROUP, PLURAL, VERSION

HOLD = "logdistill.io/test-hold"
TIMINGS: dict[str, float] = {}


def new_api(cluster):
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def operator(cluster, namespace, storage):  # noqa: F811 - storage is a fixture
    op = OperatorThread(namespaces=[namespace], api_client=new_api(cluster)).start()
    yield op
    op.stop()


def events_of(apis, ns, name):
    return apis["core"].list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items


def owner_uids(obj) -> set[str]:
    return {ref.uid for ref in obj.metadata.owner_references or []}


def gone(read):
    try:
        read()
        return False
    except ApiException as err:
        return err.status == 404


# ---- Events from the operator's own scheduling ----------------------------------------------------

def test_resync_outside_kopf_posts_events_on_the_cr(cluster, apis, namespace, storage):  # noqa: F811
    """The resync runs outside kopf's handler context (no operator here at all): the Events of its
    reconcile are created through the core/v1 API instead of failing the resync."""
    create_cr(apis, namespace, "resynced", BASE)
    ctx = Context(api=new_api(cluster), images=common.Images("job:1", "edge:1"), namespaces=(namespace,))
    assert scheduling.resync_once(ctx, handlers.reconcile) == 1
    wait_job(cluster, apis, namespace, "resynced", 1)

    def posted():
        return [e for e in events_of(apis, namespace, "resynced") if e.reason == "JobCreated"]

    (event,) = cluster.wait_for(posted, 10, 0.1, "the JobCreated Event of the resync")
    assert event.involved_object.uid == get_cr(apis, namespace, "resynced")["metadata"]["uid"]
    assert event.involved_object.kind == "DistilledModel" and event.type == "Normal"
    assert event.source.component == "logdistill-operator"


# ---- 409: whose child is it? ---------------------------------------------------------------------

def test_recreated_cr_does_not_adopt_the_previous_incarnations_job(cluster, apis, namespace, operator):
    create_cr(apis, namespace, "again", BASE)
    wait_job(cluster, apis, namespace, "again", 1)
    complete_job_pod(cluster, apis, namespace, "again-distill-g1", "v-old")
    old = wait_phase(cluster, apis, namespace, "again", "Ready", timeout=60)
    assert old["status"]["servingVersion"] == "v-old"
    # The garbage collector will not get the old Job out of the way until the hold is lifted.
    apis["batch"].patch_namespaced_job("again-distill-g1", namespace, {"metadata": {"finalizers": [HOLD]}})
    apis["custom"].delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "again")
    cluster.wait_for(lambda: gone(lambda: apis["core"].read_namespaced_config_map("again-spec-g1", namespace)),
                     60, 0.1, "the old ConfigMap garbage-collected")
    cluster.wait_for(lambda: gone(lambda: get_cr(apis, namespace, "again")), 30, 0.1, "the old CR gone")

    new_uid = create_cr(apis, namespace, "again", BASE)["metadata"]["uid"]

    def deferred():  # kopf keeps the handler's retry message in its progress annotation
        annotations = get_cr(apis, namespace, "again")["metadata"].get("annotations") or {}
        return any("still belongs to a deleted DistilledModel again" in v for v in annotations.values())

    try:
        cluster.wait_for(deferred, 90, 0.1, "the reconcile deferred while the old Job is being collected")
    except TimeoutError as err:  # say what the operator did instead
        body = get_cr(apis, namespace, "again")
        job = apis["batch"].read_namespaced_job("again-distill-g1", namespace)
        raise TimeoutError(f"{err}; CR annotations {body['metadata'].get('annotations')}, status "
                           f"{body.get('status')}; old Job owners {owner_uids(job)}, deleting "
                           f"{job.metadata.deletion_timestamp}; new CR uid {new_uid}") from None
    body = get_cr(apis, namespace, "again")
    assert (body.get("status") or {}).get("phase") != "Ready", body.get("status")
    assert not (body.get("status") or {}).get("servingVersion")
    job = apis["batch"].read_namespaced_job("again-distill-g1", namespace)
    assert new_uid not in owner_uids(job)

    apis["batch"].patch_namespaced_job("again-distill-g1", namespace, {"metadata": {"finalizers": None}})

    def recreated():
        jobs = [j for j in jobs_of(apis, namespace, "again") if new_uid in owner_uids(j)]
        return jobs or None

    (job,) = cluster.wait_for(recreated, 60, 0.2, "a Job of the re-created CR")
    assert job.metadata.name == "again-distill-g1"
    status = get_cr(apis, namespace, "again").get("status") or {}
    assert not status.get("servingVersion") and not status.get("evaluation"), status


def test_a_status_computed_for_a_deleted_cr_is_not_written_onto_its_successor(
        cluster, apis, namespace, storage):  # noqa: F811 - storage is a fixture
    """A reconcile that read a CR, then lost it to a delete and a re-create of the same name, writes nothing: the
    status patch tests the UID first. (A merge patch by name landed on the new CR, which then named and adopted
    the old incarnation's Job and serving version.)"""
    from logdistill.operator import kubeapi
    from logdistill.operator.status import DistilledModelStatus

    create_cr(apis, namespace, "twice", BASE)
    stale = get_cr(apis, namespace, "twice")
    apis["custom"].delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "twice")
    cluster.wait_for(lambda: gone(lambda: get_cr(apis, namespace, "twice")), 30, 0.1, "the first CR gone")
    create_cr(apis, namespace, "twice", BASE)
    ctx = Context(api=new_api(cluster), images=common.Images("job:1", "edge:1"), namespaces=(namespace,))
    old = DistilledModelStatus()
    adopted = old.model_copy(update={"phase": "Ready", "job": "twice-distill-g1", "serving_version": "v-old"})
    kubeapi.write_status(ctx, client.CustomObjectsApi(ctx.api), stale, old, adopted)
    assert not (get_cr(apis, namespace, "twice").get("status") or {}).get("servingVersion")

    # The same call with the live CR writes it (the UID test passes), unset fields left out.
    kubeapi.write_status(ctx, client.CustomObjectsApi(ctx.api), get_cr(apis, namespace, "twice"), old, adopted)
    status = get_cr(apis, namespace, "twice")["status"]
    assert (status["phase"], status["job"], status["servingVersion"]) == ("Ready", "twice-distill-g1", "v-old")
    assert None not in status.values()


def test_child_name_taken_by_a_foreign_object_fails_the_cr(cluster, apis, namespace, operator):
    apis["core"].create_namespaced_config_map(namespace, {"metadata": {"name": "taken-spec-g1"}, "data": {"a": "b"}})
    create_cr(apis, namespace, "taken", BASE)
    body = wait_phase(cluster, apis, namespace, "taken", "Failed", timeout=30)
    distilled = condition(body, "Distilled")
    assert distilled["reason"] == "ForeignChild"
    assert f"ConfigMap {namespace}/taken-spec-g1" in distilled["message"] and "owned by nobody" in distilled["message"]
    assert jobs_of(apis, namespace, "taken") == []
    assert apis["core"].read_namespaced_config_map("taken-spec-g1", namespace).data == {"a": "b"}


# ---- drift repair ----------------------------------------------------------------------------------

def recreated_within(cluster, apis, namespace, reads: dict, timeout: float = 30) -> float:
    """Delete each object (name -> (read, delete)) and wait for new ones (new UIDs); the seconds taken."""
    uids = {name: read().metadata.uid for name, (read, _) in reads.items()}
    began = time.monotonic()
    for _, delete in reads.values():
        delete()

    def back():
        try:
            return all(read().metadata.uid != uids[name] for name, (read, _) in reads.items())
        except ApiException:
            return False

    cluster.wait_for(back, timeout, 0.1, f"{', '.join(reads)} re-created")
    return time.monotonic() - began


def test_workloads_deleted_under_a_ready_cr_come_back_within_30s(cluster, apis, namespace, operator):
    create_cr(apis, namespace, "drift", {**BASE, "escalation": {"enabled": True}})
    wait_job(cluster, apis, namespace, "drift", 1)
    complete_job_pod(cluster, apis, namespace, "drift-distill-g1", "v1")
    wait_phase(cluster, apis, namespace, "drift", "Ready", timeout=60)
    apps, core = apis["apps"], apis["core"]

    def obj(read, delete, name):
        return (lambda: read(name, namespace)), (lambda: delete(name, namespace))

    # Services: nothing watches them, only the drift repair brings them back.
    services = recreated_within(cluster, apis, namespace, {
        "teacher Service": obj(core.read_namespaced_service, core.delete_namespaced_service, "drift-teacher"),
        "metrics Service": obj(core.read_namespaced_service, core.delete_namespaced_service,
                               "drift-classifier-metrics")})
    workloads = recreated_within(cluster, apis, namespace, {
        "DaemonSet": obj(apps.read_namespaced_daemon_set, apps.delete_namespaced_daemon_set, "drift-classifier"),
        "teacher Deployment": obj(apps.read_namespaced_deployment, apps.delete_namespaced_deployment,
                                  "drift-teacher")})
    TIMINGS.update(drift_services_s=services, drift_workloads_s=workloads)
    print(f"\ndrift repair: Services re-created in {services:.1f} s, DaemonSet + Deployment in {workloads:.1f} s")
    assert get_cr(apis, namespace, "drift")["status"]["servingVersion"] == "v1"

    # The repair itself, with no operator to race it (no pod or DaemonSet event wakes a reconcile).
    operator.stop()
    apps.delete_namespaced_daemon_set("drift-classifier", namespace)
    core.delete_namespaced_service("drift-teacher", namespace)
    ctx = Context(api=new_api(cluster), images=common.Images("job:1", "edge:1"), namespaces=(namespace,))
    cluster.wait_for(lambda: gone(lambda: apps.read_namespaced_daemon_set("drift-classifier", namespace)), 30, 0.1,
                     "the DaemonSet deleted")
    assert scheduling.repair_once(ctx, handlers.reconcile) == [
        (namespace, "drift", [drift.Child("DaemonSet", "drift-classifier"), drift.Child("Service", "drift-teacher")])]
    apps.read_namespaced_daemon_set("drift-classifier", namespace)
    core.read_namespaced_service("drift-teacher", namespace)
    (event,) = cluster.wait_for(lambda: [e for e in events_of(apis, namespace, "drift") if e.reason == "ChildRecreated"],
                                10, 0.1, "the ChildRecreated Event")
    assert event.message.startswith("DaemonSet drift-classifier, Service drift-teacher was missing") and \
        event.type == "Warning"
    assert scheduling.repair_once(ctx, handlers.reconcile) == []  # nothing missing any more


# ---- peering ---------------------------------------------------------------------------------------

def test_peering_asked_for_without_its_crds_refuses_to_start(cluster, namespace):
    ext = client.ApiextensionsV1Api(cluster.api_client())
    for crd in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        try:
            ext.delete_custom_resource_definition(crd)
        except ApiException as err:
            if err.status != 404:
                raise
        cluster.wait_for(lambda crd=crd: gone(lambda: ext.read_custom_resource_definition(crd)), 60, 0.1,
                         f"CRD {crd} deleted")
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "logdistill", "operator", "--namespace", namespace, "--kubeconfig",
         str(cluster.kubeconfig), "--liveness", "none", "--metrics-port", "0", "--peering", "logdistill"],
        capture_output=True, text=True, cwd="/", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--peering logdistill" in proc.stderr and "peering CRDs" in proc.stderr and "--standalone" in proc.stderr
    # Restore them for the tests that run a peering operator.
    peering = subprocess.run([sys.executable, "-P", "-m", "logdistill", "operator", "crd", "--peering"],
                             capture_output=True, text=True, check=True, cwd="/").stdout
    cluster.kubectl("apply", "-f", "-", input=peering)
    wait_established(cluster, "kopfpeerings.kopf.dev")


# ---- kube-apiserver restart ------------------------------------------------------------------------

def test_operator_recovers_from_an_apiserver_restart(cluster, apis, namespace, operator):
    create_cr(apis, namespace, "before", BASE)
    wait_job(cluster, apis, namespace, "before", 1)
    began = time.monotonic()
    outage = cluster.restart_apiserver()
    create_cr(apis, namespace, "after", BASE)
    wait_job(cluster, apis, namespace, "after", 1, timeout=30)
    TIMINGS["apiserver_outage_s"] = outage
    TIMINGS["apiserver_recovery_s"] = recovery = time.monotonic() - began - outage
    print(f"\nkube-apiserver restart: down {outage:.1f} s; a CR created after it had its Job {recovery:.1f} s later")
    wait_phase(cluster, apis, namespace, "after", {"Pending", "Distilling"}, timeout=30)
