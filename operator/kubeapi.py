"""The operator's API actions: read and create (a 409 is "already there"), plain-dict listing of a
Job's pods, a model's classifier pods and a pod's Warning events, superseding a run's older Jobs,
providing the artifacts claim, applying the teacher Deployment and the classifier DaemonSet, and
writing the status. The manifests come from :mod:`logdistill.operator.manifests`; what to do from
the handlers' reconcile."""

from __future__ import annotations

import logging
from typing import Any, Callable

import kopf
from kubernetes import client
from kubernetes.client.rest import ApiException

from logdistill.contracts import last_progress_in_log
from logdistill.operator import events, names, observe, views
from logdistill.operator.context import Context
from logdistill.operator.manifests import claims, common, daemonset, teacher_service
from logdistill.operator.names import GROUP, PLURAL, VERSION
from logdistill.operator.status import (
    AGREEMENT_LOW,
    DISTILLED,
    DistilledModelStatus,
    new_problems,
    same_status,
    transitions,
)
from logdistill.spec import DistilledModelSpec

log = logging.getLogger("logdistill.operator")


def read(ctx: Context, reader: Callable[[str, str], Any], name: str, namespace: str) -> dict | None:
    try:
        return ctx.plain(reader(name, namespace))
    except ApiException as err:
        if err.status == 404:
            return None
        raise


class ForeignChild(Exception):
    """A child's deterministic name is taken by an object this CR does not own (a user's, another
    controller's): the CR cannot proceed until it is renamed or removed."""


# How long to wait for the garbage collector to remove a previous incarnation's child.
PREVIOUS_OWNER_RETRY_S = 5


def create(creator: Callable[[str, dict], Any], namespace: str, manifest: dict) -> bool:
    """Create; False when it already exists and is this CR's (a re-run after a restart or a retry).

    On a 409 the existing object is read with the reader paired with ``creator`` (the client's
    ``create_X``/``read_X`` naming) and its owner checked (see :func:`check_owner`): a CR deleted
    and re-created under the same name must not adopt its previous incarnation's Job and result."""
    try:
        creator(namespace, manifest)
        return True
    except ApiException as err:
        if err.status != 409:
            raise
    wanted = (manifest["metadata"].get("ownerReferences") or [])
    if wanted:
        api = creator.__self__
        reader = getattr(api, creator.__name__.replace("create_", "read_", 1))
        try:
            existing = api.api_client.sanitize_for_serialization(reader(manifest["metadata"]["name"], namespace))
        except ApiException as err:
            if err.status == 403:  # not ours to read (a Secret: create only): the name is taken, as before
                log.debug("cannot read %s %s/%s to check its owner (403)", manifest["kind"], namespace,
                          manifest["metadata"]["name"])
                return False
            if err.status == 404:  # deleted meanwhile (the garbage collector): create it next pass
                raise kopf.TemporaryError(f"{manifest['kind']} {manifest['metadata']['name']} was being deleted; "
                                          "retrying", delay=PREVIOUS_OWNER_RETRY_S) from None
            raise
        check_owner(views.owner_refs(existing), wanted[0], f"{manifest['kind']} {namespace}/"
                    f"{manifest['metadata']['name']}")
    return False


def check_owner(refs: list[views.OwnerRef], wanted: dict, what: str) -> None:
    """Raise unless ``refs`` (an existing child's owner references) include the ``wanted`` owner's UID:
    kopf.TemporaryError when a previous incarnation (same kind and name, another UID) still owns it
    (the garbage collector removes it shortly), :class:`ForeignChild` otherwise."""
    if any(ref.uid == wanted["uid"] for ref in refs):
        return
    previous = [ref for ref in refs if (ref.kind, ref.name) == (wanted["kind"], wanted["name"])]
    if previous:
        raise kopf.TemporaryError(
            f"{what} still belongs to a deleted {wanted['kind']} {wanted['name']} (uid {previous[0].uid}), not to "
            f"this one (uid {wanted['uid']}): waiting for the garbage collector to remove it",
            delay=PREVIOUS_OWNER_RETRY_S)
    owners = ", ".join(f"{ref.kind} {ref.name}" for ref in refs) or "nobody"
    raise ForeignChild(f"{what} exists and is not owned by {wanted['kind']} {wanted['name']} (owned by {owners}): "
                       "delete or rename it")


def _outdated(current: dict, manifest: dict) -> bool:
    """Whether an existing child must be replaced by ``manifest`` (its applied hash differs), after
    :func:`check_owner`: another's object is never taken over."""
    meta = manifest["metadata"]
    check_owner(views.owner_refs(current), meta["ownerReferences"][0],
                f"{manifest['kind']} {meta['namespace']}/{meta['name']}")
    applied = (current["metadata"].get("annotations") or {}).get(names.APPLIED_HASH_ANNOTATION)
    return applied != meta["annotations"][names.APPLIED_HASH_ANNOTATION]


def job_condition(job: dict, kind: str) -> bool:
    return views.JobView.parse(job).condition(kind) is not None


def job_pods(ctx: Context, core: client.CoreV1Api, namespace: str, job_name: str) -> list[dict]:
    for label in names.JOB_NAME_LABELS:
        pods = ctx.plain(core.list_namespaced_pod(namespace, label_selector=f"{label}={job_name}"))["items"]
        if pods:
            return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
    return []


def supersede(ctx: Context, batch: client.BatchV1Api, namespace: str, name: str, keep: set[str], body: dict) -> None:
    """Delete this CR's unfinished Jobs other than the current run's (a newer run supersedes them)."""
    jobs = ctx.plain(batch.list_namespaced_job(namespace, label_selector=f"{names.MODEL_LABEL}={name}"))["items"]
    for job in jobs:
        job_name = job["metadata"]["name"]
        done = job_condition(job, "Complete") or job_condition(job, "Failed")
        if job_name not in keep and not done:
            try:
                batch.delete_namespaced_job(job_name, namespace, propagation_policy="Background")
            except ApiException as err:
                if err.status != 404:
                    raise
            events.info(ctx.api, body, reason="JobSuperseded",
                      message=f"Job {job_name} deleted: {', '.join(sorted(keep))} supersedes it")


def classifier_pods(ctx: Context, namespace: str, name: str) -> list[dict]:
    selector = ",".join(f"{k}={v}" for k, v in daemonset.selector_labels(name).items())
    return ctx.plain(client.CoreV1Api(ctx.api).list_namespaced_pod(namespace, label_selector=selector))["items"]


def warnings(ctx: Context, namespace: str, pod: str) -> list[dict]:
    """The Warning events of one pod (a FailedMount, a failing readiness probe); none without RBAC."""
    try:
        return ctx.plain(client.CoreV1Api(ctx.api).list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={pod},type=Warning"))["items"]
    except ApiException as err:
        if err.status in (401, 403):
            log.warning("cannot list the events of pod %s/%s (%s): grant events list", namespace, pod, err.reason)
            return []
        raise


# The runner prints a progress line at most every 2 s; the engine's own log lines come between them.
PROGRESS_LOG_TAIL_BYTES = 64 * 1024


def log_progress(ctx: Context, namespace: str, where: tuple[str, str] | None, generation: int):
    """The last progress line in the log tail of ``where`` = (pod, container), as a :class:`Progress` of
    ``generation``; None when nothing runs, no line is there yet, or the operator may not read logs."""
    if where is None:
        return None
    pod, container = where
    try:
        text = client.CoreV1Api(ctx.api).read_namespaced_pod_log(
            pod, namespace, container=container, limit_bytes=PROGRESS_LOG_TAIL_BYTES, tail_lines=400)
    except ApiException as err:
        if err.status in (401, 403):
            log.warning("cannot read the log of pod %s/%s (%s): grant pods/log get", namespace, pod, err.reason)
        return None  # 400/404: the container is starting or gone; the next reconcile reads again
    found = last_progress_in_log(text or "")
    return None if found is None else observe.parse_progress(found, generation, f"progress line of pod {pod}")


def ensure_storage(ctx: Context, namespace: str, spec: DistilledModelSpec, body: dict) -> claims.ArtifactVolume:
    """The artifacts claim the CR's pods mount: created when missing and the operator may (with its
    hostPath PersistentVolume under --artifacts-host-path). Never owned by the CR: it keeps the
    content-addressed teachers other CRs and later generations reuse."""
    core = client.CoreV1Api(ctx.api)
    settings = ctx.storage
    claim_name = claims.claim_name(spec, settings)
    try:
        claim = read(ctx, core.read_namespaced_persistent_volume_claim, claim_name, namespace)
    except ApiException as err:
        if err.status != 403:
            raise
        log.warning("cannot read PersistentVolumeClaim %s/%s (403): assuming it exists", namespace, claim_name)
        return claims.artifact_volume(spec, None, settings)
    if claim is None and settings.create:
        try:
            if settings.host_path:
                pv = claims.build_host_path_volume(namespace, claim_name, settings)
                try:
                    core.create_persistent_volume(pv)
                except ApiException as err:
                    if err.status != 409:
                        raise
            claim = claims.build_claim(namespace, claim_name, settings)
            if create(core.create_namespaced_persistent_volume_claim, namespace, claim):
                where = f" on hostPath {claim['metadata']['annotations'][names.HOST_PATH_ANNOTATION]}" \
                    if settings.host_path else ""
                events.info(ctx.api, body, reason="StorageCreated",
                          message=f"PersistentVolumeClaim {claim_name} ({settings.size}) created{where}")
            else:
                claim = read(ctx, core.read_namespaced_persistent_volume_claim, claim_name, namespace)
        except ApiException as err:
            if err.status not in (403, 422):
                raise
            events.warn(ctx.api, body, reason="StorageUnavailable",
                      message=f"cannot create PersistentVolumeClaim {claim_name}: {err.status} {err.reason}")
            claim = None
    return claims.artifact_volume(spec, claim, settings)


def teacher_was_on(old: DistilledModelStatus) -> bool:
    """Whether escalation was on at the last status (its AgreementLow condition is only set then)."""
    return old.condition(AGREEMENT_LOW) is not None


def apply_escalation(ctx: Context, owner: common.Owner, spec: DistilledModelSpec, body: dict,
                      old: DistilledModelStatus, volume: claims.ArtifactVolume | None = None) -> list[dict]:
    """The teacher Deployment + Service when escalation is on (removed when it is turned off);
    returns the teacher pods (their agreement annotations)."""
    apps, core = client.AppsV1Api(ctx.api), client.CoreV1Api(ctx.api)
    name, namespace = common.teacher_name(owner.name), owner.namespace
    if not spec.escalation.enabled:
        if teacher_was_on(old):  # take the teacher down
            for delete in (apps.delete_namespaced_deployment, core.delete_namespaced_service):
                try:
                    delete(name, namespace)
                except ApiException as err:
                    if err.status != 404:
                        raise
            events.info(ctx.api, body, reason="TeacherRemoved", message=f"escalation disabled: Deployment {name} deleted")
        return []
    manifest = teacher_service.build_teacher_deployment(owner, spec, ctx.images, volume)
    current = read(ctx, apps.read_namespaced_deployment, name, namespace)
    # Every pass, not only when the Deployment changes: a Service lost to one failed call is healed.
    create(core.create_namespaced_service, namespace, teacher_service.build_teacher_service(owner, spec))
    if current is None:
        if create(apps.create_namespaced_deployment, namespace, manifest):
            events.info(ctx.api, body, reason="TeacherStarted",
                      message=f"Deployment {name} serves the teacher on port {spec.escalation.port}")
    elif _outdated(current, manifest):
        manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        apps.replace_namespaced_deployment(name, namespace, manifest)
        events.info(ctx.api, body, reason="TeacherUpdated", message=f"Deployment {name} updated")
    selector = ",".join(f"{k}={v}" for k, v in teacher_service.teacher_selector(owner.name).items())
    return ctx.plain(core.list_namespaced_pod(namespace, label_selector=selector))["items"]


def apply_daemonset(ctx: Context, owner: common.Owner, spec: DistilledModelSpec, release: daemonset.Release, body: dict,
                     current: dict | None, volume: claims.ArtifactVolume | None = None) -> bool:
    """Create or update the classifier DaemonSet; True when it changed."""
    apps, core = client.AppsV1Api(ctx.api), client.CoreV1Api(ctx.api)
    manifest = daemonset.build_daemonset(owner, spec, release, ctx.images, volume, ctx.policy.log_roots)
    name, namespace = manifest["metadata"]["name"], owner.namespace
    # Every pass, not only when the DaemonSet changes: a Service lost to one failed call is healed.
    create(core.create_namespaced_service, namespace, daemonset.build_service(owner, spec))
    if current is None:
        if create(apps.create_namespaced_daemon_set, namespace, manifest):
            events.info(ctx.api, body, reason="RolloutStarted", message=f"DaemonSet {name} created with version {release.version}")
        return True
    if not _outdated(current, manifest):
        return False
    manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    apps.replace_namespaced_daemon_set(name, namespace, manifest)  # 409 on a race: retried
    events.info(ctx.api, body, reason="RolloutStarted", message=f"DaemonSet {name} updated to version {release.version}")
    return True


def _count_result(ctx: Context, old: DistilledModelStatus, new: DistilledModelStatus) -> None:
    """Count a run that just finished: a new evaluation (passed or gate failed), or Distilled turned False."""
    ev, prev = new.evaluation, old.evaluation
    if ev is not None and (prev is None or (prev.generation, prev.version) != (ev.generation, ev.version)):
        ctx.metrics.distillations.labels("passed" if ev.gate_passed else "gate_failed").inc()
        return
    now_cond, was = new.condition(DISTILLED), old.condition(DISTILLED)
    if now_cond is not None and now_cond.status == "False" and (
            was is None or was.status != "False" or old.job != new.job):
        ctx.metrics.distillations.labels("failed").inc()


def _same_incarnation(custom: client.CustomObjectsApi, meta: dict) -> bool:
    """Whether the CR of ``meta`` (namespace, name, uid) still exists, the same object."""
    try:
        current = custom.get_namespaced_custom_object(GROUP, VERSION, meta["namespace"], PLURAL, meta["name"])
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return current["metadata"]["uid"] == meta["uid"]


def write_status(ctx: Context, custom: client.CustomObjectsApi, body: dict, old: DistilledModelStatus,
                  new: DistilledModelStatus) -> None:
    meta = body["metadata"]
    ctx.metrics.set_phase(meta["namespace"], meta["name"], new.phase)
    if same_status(old, new):
        return
    # A JSON patch that first tests the UID: a reconcile that read a CR deleted meanwhile must not write its
    # status onto a re-created CR of the same name (a merge patch would: the new CR then names the old run's
    # Job and serving version, and adopts them).
    patch = [{"op": "test", "path": "/metadata/uid", "value": meta["uid"]},
             {"op": "add", "path": "/status", "value": new.to_status()}]
    try:
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], patch,
                                                     _content_type="application/json-patch+json")
    except ApiException as err:
        if err.status not in (404, 422) or _same_incarnation(custom, meta):
            raise
        log.info("status of %s/%s not written: the DistilledModel (uid %s) was deleted meanwhile",
                 meta["namespace"], meta["name"], meta["uid"])
        return
    _count_result(ctx, old, new)
    for problem in new_problems(old, new):
        ctx.metrics.pod_problems.labels(problem.reason).inc()
    for event in transitions(old, new):
        events.post(ctx.api, body, event.reason, event.message, warning=event.warning)
