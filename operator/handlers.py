"""kopf handlers for DistilledModel: the wiring and the reconcile. The manifests are built in
:mod:`~logdistill.operator.manifests`, applied through :mod:`~logdistill.operator.kubeapi`; the
observations are in :mod:`~logdistill.operator.observe` and :mod:`~logdistill.operator.views`, the
transitions in :mod:`~logdistill.operator.status`, the resync and delayed wake-ups in
:mod:`~logdistill.operator.scheduling`; what they share is the :class:`~logdistill.operator.context.Context`.

One reconcile path, level-triggered: whatever woke it (the CR's spec, its Job, the Job's pod, the
DaemonSet), :func:`reconcile` re-reads the CR and its children, acts, and patches the status when
it changed. A per-CR lock serialises concurrent wake-ups; everything else lives in the CR status
and in deterministic child names, so an operator restart resumes where it stopped.

Choices:
- No finalizer: no deletion handler and no timers/daemons (kopf would add one for those), so a CR
  is deletable while the operator is down; its children go through owner references (GC).
- kopf's own bookkeeping goes into annotations (``logdistill.io/...``), not ``status.kopf``
  (the status schema is closed).
- A spec change supersedes a running Job: Jobs of older generations that have not finished are
  deleted (with their pods); finished ones stay until the CR is deleted.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime, timezone
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.rest import ApiException

from logdistill.operator import apiaccess, events, kubeapi, loop, names, observe, scheduling, views
from logdistill.operator.context import Context
from logdistill.operator.manifests import claims, common, daemonset, distill
from logdistill.operator.names import GROUP, PLURAL, VERSION
from logdistill.operator.status import (
    DistilledModelStatus,
    LastRetrain,
    invalid_spec_status,
    next_status,
)
from logdistill.operator.summary import gate_decision
from logdistill.policy import Violation, violations
from logdistill.spec import DistilledModelSpec, SpecError, parse_spec

log = logging.getLogger("logdistill.operator")
CR = (GROUP, VERSION, PLURAL)
CHILD_LABELS = {names.MANAGED_BY_LABEL: names.MANAGED_BY, names.MODEL_LABEL: kopf.PRESENT}
# HTTP statuses worth retrying.
TRANSIENT = {409, 429, 500, 502, 503, 504}
# A pod event wakes its model's reconcile this much later: a burst (a DaemonSet's pods on many
# nodes, a pod's several status updates) costs one reconcile.
POD_DEBOUNCE_S = 0.5


# --- kopf wiring ----------------------------------------------------------------------------

@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Without namespace globs kopf needs no watch on Namespaces and CRDs (least privilege): the
    # CRD must exist when the operator starts (Helm installs crds/ first).
    settings.scanning.disabled = not any(ch in ns for ns in memo.ctx.namespaces for ch in scheduling.GLOB_CHARS)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/operator"  # only used if a deletion handler is ever added
    settings.posting.level = logging.INFO
    settings.execution.max_workers = 8


@kopf.on.login()
def login(memo: kopf.Memo, logger: Any, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """The same credentials as the operator's own API client (so tests and ``--kubeconfig`` work);
    in a pod, the ServiceAccount token, re-read by kopf when it rotates."""
    in_cluster = kopf.login_with_service_account(logger=logger, **kwargs)
    if in_cluster is not None:
        return in_cluster
    cfg = memo.ctx.api.configuration
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").partition(" ") if header and " " in header else (None, "", header)
    return kopf.ConnectionInfo(
        server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl, scheme=scheme or None,
        token=token or None, certificate_path=cfg.cert_file, private_key_path=cfg.key_file,
        username=cfg.username or None, password=cfg.password or None,
    )


@kopf.on.startup()
async def start_resync(memo: kopf.Memo, **_: Any) -> None:
    """A periodic resync of unfinished CRs: a safety net for an event whose reconcile failed
    (event handlers are not retried). Not a kopf timer: timers would put a finalizer on every CR."""
    scheduling.start(memo.ctx, reconcile)


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    await scheduling.stop(memo.ctx)


@kopf.on.resume(*CR)
@kopf.on.create(*CR)
@kopf.on.update(*CR, field="spec")
def on_spec(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    reconcile(memo.ctx, body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.on.event(*CR, annotations={names.RETRAIN_REQUEST_ANNOTATION: kopf.PRESENT})
def on_retrain_request(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A new ``logdistill.io/retrain-request`` value: one re-distillation (status events are skipped)."""
    token = body["metadata"].get("annotations", {}).get(names.RETRAIN_REQUEST_ANNOTATION)
    handled = ((body.get("status") or {}).get("lastRetrain") or {}).get("token")
    if token and token != handled:
        try:
            reconcile(memo.ctx, body["metadata"]["namespace"], body["metadata"]["name"])
        except (kopf.TemporaryError, kopf.PermanentError) as err:
            log.info("retrain request on %s/%s deferred: %s", body["metadata"]["namespace"],
                     body["metadata"]["name"], err)


@kopf.on.event("batch", "v1", "jobs", labels=CHILD_LABELS)
@kopf.on.event("apps", "v1", "daemonsets", labels=CHILD_LABELS)
def on_child(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    owner = body["metadata"].get("labels", {}).get(names.MODEL_LABEL)
    if owner:
        try:
            reconcile(memo.ctx, body["metadata"]["namespace"], owner)
        except (kopf.TemporaryError, kopf.PermanentError) as err:
            # Event handlers are not retried: the next event (or the periodic re-list) will be.
            log.info("reconcile of %s/%s after a %s event deferred: %s", body["metadata"]["namespace"], owner,
                     body.get("kind", "child"), err)


@kopf.on.event("", "v1", "pods", labels=CHILD_LABELS)
def on_pod(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Every pod of the model's Jobs, classifier DaemonSet and teacher Deployment (their templates
    carry ``manifests.common.labels()``): a pod turning Unschedulable, ImagePullBackOff or unready does not
    touch its Job or DaemonSet, so it wakes the owning CR's reconcile itself, debounced."""
    owner = body["metadata"].get("labels", {}).get(names.MODEL_LABEL)
    if owner:
        scheduling.wake_later(memo.ctx, body["metadata"]["namespace"], owner, POD_DEBOUNCE_S, reconcile)


# --- reconcile ------------------------------------------------------------------------------

# How often a running Job's status.progress is refreshed from its log (annotations bring their own events).
PROGRESS_REFRESH_S = 10.0


def reconcile(ctx: Context, namespace: str, name: str) -> DistilledModelStatus | None:
    """Bring the CR's children and status in line with its current generation."""
    with ctx.lock(namespace, name):
        started = time.monotonic()
        try:
            return _reconcile(ctx, namespace, name)
        except kubeapi.ForeignChild as err:
            _fail_foreign_child(ctx, namespace, name, str(err))
            raise kopf.PermanentError(str(err)) from None
        except ApiException as err:
            if err.status in TRANSIENT:
                raise kopf.TemporaryError(f"API {err.status} {err.reason}; retrying", delay=2) from err
            raise
        finally:
            ctx.metrics.reconcile_seconds.observe(time.monotonic() - started)


def _reconcile(ctx: Context, namespace: str, name: str) -> DistilledModelStatus | None:
    custom = client.CustomObjectsApi(ctx.api)
    try:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as err:
        if err.status == 404:
            ctx.metrics.set_phase(namespace, name, None)
            return None  # deleted: owner references take the children with it
        raise
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        ctx.metrics.set_phase(namespace, name, None)
        return None
    old = DistilledModelStatus.model_validate(body.get("status") or {})
    generation = int(meta["generation"])
    try:
        spec = parse_spec(body.get("spec") or {}, DistilledModelSpec, source=f"DistilledModel {namespace}/{name} spec")
    except SpecError as err:
        new = invalid_spec_status(old, generation, str(err))
        kubeapi.write_status(ctx, custom, body, old, new)
        raise kopf.PermanentError(str(err)) from None
    refused = violations(spec, ctx.policy)
    if refused:  # before any child: no Job, claim, DaemonSet, Service or teacher
        _refuse(ctx, custom, body, old, generation, refused)

    owner = common.Owner.from_body(body)
    now = datetime.now(timezone.utc)
    # A change outside the training sections (rollout, escalation, retrain) keeps the current run.
    digest = common.training_hash(spec)
    if old.training_hash == digest and old.distill_generation:
        run_gen, retrain = old.distill_generation, old.retrain
    else:
        run_gen, retrain = generation, 0
    run_owner = dataclasses.replace(owner, generation=run_gen)

    volume = kubeapi.ensure_storage(ctx, namespace, spec, body)
    apiaccess.ensure_token_secret(ctx, owner, body)  # before the pods that mount it
    teacher_pods = kubeapi.apply_escalation(ctx, owner, spec, body, old, volume)
    apiaccess.apply_teacher_policy(ctx, owner, spec, kubeapi.teacher_was_on(old))
    agreement = loop.agreement_from(teacher_pods, spec, old.agreement, now) if spec.escalation.enabled else None

    job_name, job, pods = _ensure_run(ctx, run_owner, spec, retrain, body, old.job, volume)
    outcome, summary, summary_error, progress = _observe(ctx, namespace, job, pods, run_gen, old)

    last_retrain = old.last_retrain
    request = (meta.get("annotations") or {}).get(names.RETRAIN_REQUEST_ANNOTATION)
    finished = outcome.phase == "Failed" or (outcome.phase == "Succeeded" and job is not None)
    decision = loop.retrain_decision(spec, agreement, last_retrain, request, finished, now, ctx.retrain_time_scale)
    if decision.due:
        retrain += 1
        last_job = old.job
        job_name, job, pods = _ensure_run(ctx, run_owner, spec, retrain, body, last_job, volume)
        last_retrain = LastRetrain(reason=decision.reason, at=loop.rfc3339(now),
                                   ratio=agreement.ratio if agreement is not None else None, job=job_name,
                                   token=decision.token)
        events.info(ctx.api, body, reason="RetrainStarted", message=f"Job {job_name} re-distils ({decision.reason}"
                  + (f", agreement {agreement.ratio:.4f})" if agreement is not None and agreement.ratio is not None
                     else ")"))
        if agreement is not None:
            agreement = agreement.model_copy(update={"below_since": None})  # a new window starts
        outcome, summary, summary_error, progress = _observe(ctx, namespace, job, pods, run_gen, old)
    elif decision.wake_in is not None:
        scheduling.wake_later(ctx, namespace, name, decision.wake_in, reconcile)
    if outcome.phase == "Running":  # progress lines in a log bring no pod event: read them again
        scheduling.wake_later(ctx, namespace, name, PROGRESS_REFRESH_S, reconcile)

    apps = client.AppsV1Api(ctx.api)
    ds = kubeapi.read(ctx, apps.read_namespaced_daemon_set, common.daemonset_name(name), namespace)
    release = daemonset.release_of(ds)  # what serves now: kept (with the current rollout spec) unless a new one passes
    if outcome.phase == "Succeeded" and summary is not None:
        passed, _ = gate_decision(summary, spec.gate.min_macro_f1, spec.gate.min_retention)
        if passed:
            release = daemonset.Release(version=summary.version, generation=run_gen,
                                artifact=common.artifact_relpath(spec, name, run_gen, retrain), sha256=summary.sha256)
    if release is not None:
        if kubeapi.apply_daemonset(ctx, owner, spec, release, body, ds, volume):
            ds = kubeapi.read(ctx, apps.read_namespaced_daemon_set, common.daemonset_name(name), namespace)

    classifier_pods = kubeapi.classifier_pods(ctx, namespace, name) if ds is not None else []
    all_pods = _pod_views([*(pods if outcome.phase != "Succeeded" else []), *classifier_pods,
                           *teacher_pods])
    pod_warnings = observe.pod_events(all_pods, now, lambda ns, pod: kubeapi.warnings(ctx, ns, pod))
    health = views.pod_problems(all_pods, now, ctx.pending_deadline, pod_warnings)
    if health.recheck_in is not None:  # a deadline or grace ends with no pod event to announce it
        scheduling.wake_later(ctx, namespace, name, health.recheck_in, reconcile)

    drift = loop.agreement_condition(spec, agreement)
    new = next_status(old, generation=generation, job_name=job_name, job=outcome, summary=summary,
                      summary_error=summary_error, gate=spec.gate, progress=progress,
                      rollout=observe.rollout_state(ds, _pod_views(classifier_pods), health, pod_warnings),
                      run_generation=run_gen, extra_conditions=(drift,) if drift else (), problems=health.problems)
    new = new.model_copy(update={"training_hash": digest, "distill_generation": run_gen, "retrain": retrain,
                                 "agreement": agreement, "last_retrain": last_retrain})
    kubeapi.write_status(ctx, custom, body, old, new)
    return new


def _refuse(ctx: Context, custom: client.CustomObjectsApi, body: dict, old: DistilledModelStatus, generation: int,
            refused: list[Violation]) -> None:
    """Failed (Degraded while an older release serves), a Warning Event once per new refusal; no retries."""
    meta = body["metadata"]
    message = (f"DistilledModel {meta['namespace']}/{meta['name']} is refused by the admission policy: "
               + "; ".join(map(str, refused)))
    new = invalid_spec_status(old, generation, message, reason="PolicyViolation")
    if (old.message, old.observed_generation) != (new.message, new.observed_generation):
        events.warn(ctx.api, body, reason="PolicyViolation", message=message)
    kubeapi.write_status(ctx, custom, body, old, new)
    raise kopf.PermanentError(message)


def _fail_foreign_child(ctx: Context, namespace: str, name: str, message: str) -> None:
    """A child's name is taken by an object this CR does not own: Failed (Degraded while serving), saying which."""
    custom = client.CustomObjectsApi(ctx.api)
    body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    old = DistilledModelStatus.model_validate(body.get("status") or {})
    new = invalid_spec_status(old, int(body["metadata"]["generation"]), message, reason="ForeignChild")
    kubeapi.write_status(ctx, custom, body, old, new)


def _ensure_run(ctx: Context, owner: common.Owner, spec: DistilledModelSpec, retrain: int, body: dict,
                previous_job: str | None, volume: claims.ArtifactVolume | None = None
                ) -> tuple[str, dict | None, list[dict]]:
    """Create the run's children if this is its first sight; return (current Job name, Job, pods).

    ``workers == 1``: one Job. ``workers > 1``: the labelling Indexed Job first; once it is
    Complete, the distributed Indexed Job and its headless Service (re-distillations of the same
    generation reuse the soft targets)."""
    batch, core = client.BatchV1Api(ctx.api), client.CoreV1Api(ctx.api)
    namespace, name, gen = owner.namespace, owner.name, owner.generation
    job_name = common.job_name(name, gen, retrain)
    keep = {job_name}
    serving = DistilledModelStatus.model_validate(body.get("status") or {}).serving_artifact  # kept by the pruning
    if spec.job.workers > 1:
        label_name = common.label_job_name(name, gen)
        keep.add(label_name)
        if previous_job not in keep:
            kubeapi.create(core.create_namespaced_config_map, namespace, distill.build_configmap(owner, spec))
            label_job = distill.build_label_job(owner, spec, ctx.images, volume)
            if kubeapi.create(batch.create_namespaced_job, namespace, label_job):
                events.info(ctx.api, body, reason="LabellingStarted",
                          message=f"Job {label_name} labels {spec.job.workers} shards of generation {gen}")
            kubeapi.supersede(ctx, batch, namespace, name, keep, body)
        label = kubeapi.read(ctx, batch.read_namespaced_job, label_name, namespace)
        if label is None or not kubeapi.job_condition(label, "Complete"):
            pods = kubeapi.job_pods(ctx, core, namespace, label_name) if label is not None else []
            return label_name, label, pods
        if previous_job != job_name:
            rendezvous = distill.build_rendezvous_service(owner, spec, retrain)
            kubeapi.create(core.create_namespaced_service, namespace, rendezvous)
            manifest = distill.build_job(owner, spec, ctx.images, retrain, volume, serving)
            if kubeapi.create(batch.create_namespaced_job, namespace, manifest):
                events.info(ctx.api, body, reason="JobCreated",
                          message=f"Job {job_name} distils generation {gen} on {spec.job.workers} workers")
            kubeapi.supersede(ctx, batch, namespace, name, keep, body)
    elif previous_job != job_name:
        kubeapi.create(core.create_namespaced_config_map, namespace, distill.build_configmap(owner, spec))
        manifest = distill.build_job(owner, spec, ctx.images, retrain, volume, serving)
        if kubeapi.create(batch.create_namespaced_job, namespace, manifest):
            events.info(ctx.api, body, reason="JobCreated", message=f"Job {job_name} distils generation {gen}")
        kubeapi.supersede(ctx, batch, namespace, name, keep, body)
    job = kubeapi.read(ctx, batch.read_namespaced_job, job_name, namespace)
    return job_name, job, kubeapi.job_pods(ctx, core, namespace, job_name) if job is not None else []


# --- observing (the logic is in observe and views) -------------------------------------------

def _observe(ctx: Context, namespace: str, job: dict | None, pods: list[dict], run_gen: int,
             old: DistilledModelStatus):
    """observe.observe_job, with progress from the running container's log where no pod annotation has it
    (a Job's ServiceAccount that may not patch its pod)."""
    pod_views = _pod_views(pods)
    outcome, summary, summary_error, progress = observe.observe_job(_job_view(job), pod_views, run_gen, old)
    if progress is None and outcome.phase == "Running":
        progress = kubeapi.log_progress(ctx, namespace, observe.working_container(pod_views), run_gen)
    return outcome, summary, summary_error, progress


def _job_view(job: dict | None) -> views.JobView | None:
    return views.JobView.parse(job) if job is not None else None


def _pod_views(pods: list[dict]) -> list[views.PodView]:
    return [views.PodView.parse(p) for p in pods]
