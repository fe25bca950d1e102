"""kopf handlers for DistilledModel: short; the logic is in builders (manifests), status
(transitions) and summary (the Job's result).

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

import asyncio
import contextvars
import dataclasses
import fnmatch
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.rest import ApiException

from logdistill.operator import builders as b
from logdistill.operator import loop, observe, views
from logdistill.operator.crd import GROUP, PLURAL, VERSION
from logdistill.operator.metrics import OperatorMetrics
from logdistill.operator.status import (
    AGREEMENT_LOW,
    DISTILLED,
    DistilledModelStatus,
    LastRetrain,
    invalid_spec_status,
    new_problems,
    next_status,
    same_status,
    transitions,
)
from logdistill.operator.summary import gate_decision
from logdistill.spec import DistilledModelSpec, SpecError, parse_spec

log = logging.getLogger("logdistill.operator")
CR = (GROUP, VERSION, PLURAL)
CHILD_LABELS = {"app.kubernetes.io/managed-by": b.MANAGED_BY, b.MODEL_LABEL: kopf.PRESENT}
# Fields of the pods of a Job: the job-name label (batch.kubernetes.io/job-name since 1.27).
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
# HTTP statuses worth retrying.
TRANSIENT = {409, 429, 500, 502, 503, 504}
# A pod event wakes its model's reconcile this much later: a burst (a DaemonSet's pods on many
# nodes, a pod's several status updates) costs one reconcile.
POD_DEBOUNCE_S = 0.5


@dataclass
class Context:
    """What the handlers share: an API client and the default images (kopf's ``memo``)."""

    api: client.ApiClient
    images: b.Images
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    resync_seconds: float = 30.0
    tasks: list = field(default_factory=list)
    peering: str | None = None  # kopf peering name; None = standalone
    priority: int = 0
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    # How artifact claims are provided (--create-claims, --artifacts-*).
    storage: b.StorageSettings = field(default_factory=b.StorageSettings)
    # Shrinks retrain.windowSeconds/minIntervalSeconds (tests only: the spec's minimums are 60 s/300 s).
    retrain_time_scale: float = 1.0
    timers: dict = field(default_factory=dict)
    # Timer threads running a reconcile now, and the operator's stop: cleanup waits for the former
    # (a daemon thread still logging at interpreter exit aborts the process).
    firing: set = field(default_factory=set)
    stopping: threading.Event = field(default_factory=threading.Event)
    # A pod pending longer than this is a PendingTooLong problem (--pod-pending-deadline).
    pending_deadline: float = views.DEFAULT_PENDING_DEADLINE_S


_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


# --- kopf wiring ----------------------------------------------------------------------------

@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Without namespace globs kopf needs no watch on Namespaces and CRDs (least privilege): the
    # CRD must exist when the operator starts (Helm installs crds/ first).
    settings.scanning.disabled = not any(ch in ns for ns in memo.ctx.namespaces for ch in "*?[!")
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
    ctx: Context = memo.ctx
    if ctx.resync_seconds > 0:
        ctx.tasks.append(asyncio.create_task(_resync_loop(ctx)))


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.ctx.tasks:
        task.cancel()
    memo.ctx.tasks.clear()
    ctx: Context = memo.ctx
    ctx.stopping.set()
    threads = [*ctx.timers.values(), *ctx.firing]
    for timer in list(ctx.timers.values()):
        timer.cancel()
    ctx.timers.clear()

    def join() -> None:
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=15)

    await asyncio.to_thread(join)


def _wake_later(ctx: Context, namespace: str, name: str, delay: float) -> None:
    """Reconcile again in ``delay`` seconds (a drift window that ends with no event to wake us).
    A thread timer, not a kopf timer: kopf timers put a finalizer on every CR."""
    if ctx.stopping.is_set():
        return
    key = (namespace, name)
    previous = ctx.timers.get(key)
    if previous is not None and previous.is_alive():
        if getattr(previous, "due", 0) <= time.monotonic() + delay:
            return
        previous.cancel()

    def fire() -> None:
        me = threading.current_thread()
        ctx.firing.add(me)  # first: a stop that has not seen it in ctx.timers sees it here
        try:
            if ctx.timers.get(key) is me:
                ctx.timers.pop(key, None)
            if ctx.stopping.is_set() or outranked(ctx):
                return
            reconcile(ctx, namespace, name)
        except Exception as err:  # noqa: BLE001 - the periodic resync and the next event retry
            log.info("timed reconcile of %s/%s deferred: %s", namespace, name, err)
        finally:
            ctx.firing.discard(me)

    # kopf's Event posting (kopf.info/warn) finds its queue through context variables: carry the
    # caller's (a kopf handler's) into the timer thread, or the Events of a timed reconcile are lost.
    timer = threading.Timer(max(delay, 0.05), contextvars.copy_context().run, args=(fire,))
    timer.daemon = True
    timer.due = time.monotonic() + delay  # type: ignore[attr-defined]
    ctx.timers[key] = timer
    timer.start()


async def _resync_loop(ctx: Context) -> None:
    while True:
        await asyncio.sleep(ctx.resync_seconds)
        try:
            await asyncio.to_thread(resync_once, ctx)
        except Exception as err:  # noqa: BLE001 - the loop must survive API outages
            log.warning("resync failed: %s", err)


def outranked(ctx: Context) -> bool:
    """Whether a live peer of higher priority is in the peering objects: kopf pauses this
    replica's handlers then, and the resync (which kopf does not know about) must pause too."""
    if not ctx.peering:
        return False
    custom = client.CustomObjectsApi(ctx.api)
    try:
        if not ctx.namespaces:
            objs = [custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", ctx.peering)]
        else:
            objs = [custom.get_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings", ctx.peering)
                    for ns in ctx.namespaces if not any(ch in ns for ch in "*?[!")]
    except ApiException:
        return True  # cannot tell: do not act outside kopf's own (peering-aware) handlers
    now = datetime.now(timezone.utc)
    for obj in objs:
        for peer in (obj.get("status") or {}).values():
            # Our own entry has our priority: only a strictly higher one is another replica.
            if not isinstance(peer, dict) or int(peer.get("priority", 0)) <= ctx.priority:
                continue
            try:
                seen = datetime.fromisoformat(str(peer["lastseen"]).replace("Z", "+00:00"))
            except (KeyError, ValueError):
                continue
            if seen.tzinfo is None:
                seen = seen.replace(tzinfo=timezone.utc)
            if (now - seen).total_seconds() < int(peer.get("lifetime", 60)):
                return True
    return False


def resync_once(ctx: Context) -> int:
    """Reconcile every CR that is not settled (Ready/Failed/Degraded of its current generation)."""
    if outranked(ctx):
        return 0
    custom = client.CustomObjectsApi(ctx.api)
    exact = ctx.namespaces and not any(ch in ns for ns in ctx.namespaces for ch in "*?[!")
    if exact:
        items = [i for ns in ctx.namespaces for i in
                 custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL).get("items", [])]
    else:  # cluster-wide, or kopf namespace patterns (globs): list everything, keep what matches
        items = [i for i in custom.list_cluster_custom_object(GROUP, VERSION, PLURAL).get("items", [])
                 if not ctx.namespaces or any(fnmatch.fnmatch(i["metadata"]["namespace"], p) for p in ctx.namespaces)]
    done = 0
    for item in items:
        status = item.get("status") or {}
        settled = status.get("phase") in ("Ready", "Failed", "Degraded") and \
            status.get("observedGeneration") == item["metadata"].get("generation")
        if not settled:
            try:
                reconcile(ctx, item["metadata"]["namespace"], item["metadata"]["name"])
                done += 1
            except (kopf.TemporaryError, kopf.PermanentError, ApiException) as err:
                log.info("resync of %s/%s deferred: %s", item["metadata"]["namespace"], item["metadata"]["name"], err)
    return done


@kopf.on.resume(*CR)
@kopf.on.create(*CR)
@kopf.on.update(*CR, field="spec")
def on_spec(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    reconcile(memo.ctx, body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.on.event(*CR, annotations={b.RETRAIN_REQUEST_ANNOTATION: kopf.PRESENT})
def on_retrain_request(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A new ``logdistill.io/retrain-request`` value: one re-distillation (status events are skipped)."""
    token = body["metadata"].get("annotations", {}).get(b.RETRAIN_REQUEST_ANNOTATION)
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
    owner = body["metadata"].get("labels", {}).get(b.MODEL_LABEL)
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
    carry ``builders.labels()``): a pod turning Unschedulable, ImagePullBackOff or unready does not
    touch its Job or DaemonSet, so it wakes the owning CR's reconcile itself, debounced."""
    owner = body["metadata"].get("labels", {}).get(b.MODEL_LABEL)
    if owner:
        _wake_later(memo.ctx, body["metadata"]["namespace"], owner, POD_DEBOUNCE_S)


# --- reconcile ------------------------------------------------------------------------------

def reconcile(ctx: Context, namespace: str, name: str) -> DistilledModelStatus | None:
    """Bring the CR's children and status in line with its current generation."""
    with _lock(namespace, name):
        started = time.monotonic()
        try:
            return _reconcile(ctx, namespace, name)
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
        _write_status(ctx, custom, body, old, new)
        raise kopf.PermanentError(str(err)) from None

    owner = b.Owner.from_body(body)
    now = datetime.now(timezone.utc)
    # A change outside the training sections (rollout, escalation, retrain) keeps the current run.
    digest = b.training_hash(spec)
    if old.training_hash == digest and old.distill_generation:
        run_gen, retrain = old.distill_generation, old.retrain
    else:
        run_gen, retrain = generation, 0
    run_owner = dataclasses.replace(owner, generation=run_gen)

    volume = _ensure_storage(ctx, namespace, spec, body)
    teacher_pods = _apply_escalation(ctx, owner, spec, body, old, volume)
    agreement = loop.agreement_from(teacher_pods, spec, old.agreement, now) if spec.escalation.enabled else None

    job_name, job, pods = _ensure_run(ctx, run_owner, spec, retrain, body, old.job, volume)
    outcome, summary, summary_error, progress = observe.observe_job(_job_view(job), _pod_views(pods), run_gen, old)

    last_retrain = old.last_retrain
    request = (meta.get("annotations") or {}).get(b.RETRAIN_REQUEST_ANNOTATION)
    finished = outcome.phase == "Failed" or (outcome.phase == "Succeeded" and job is not None)
    decision = loop.retrain_decision(spec, agreement, last_retrain, request, finished, now, ctx.retrain_time_scale)
    if decision.due:
        retrain += 1
        last_job = old.job
        job_name, job, pods = _ensure_run(ctx, run_owner, spec, retrain, body, last_job, volume)
        last_retrain = LastRetrain(reason=decision.reason, at=loop.rfc3339(now),
                                   ratio=agreement.ratio if agreement is not None else None, job=job_name,
                                   token=decision.token)
        kopf.info(body, reason="RetrainStarted", message=f"Job {job_name} re-distils ({decision.reason}"
                  + (f", agreement {agreement.ratio:.4f})" if agreement is not None and agreement.ratio is not None
                     else ")"))
        if agreement is not None:
            agreement = agreement.model_copy(update={"below_since": None})  # a new window starts
        outcome, summary, summary_error, progress = observe.observe_job(_job_view(job), _pod_views(pods), run_gen,
                                                                        old)
    elif decision.wake_in is not None:
        _wake_later(ctx, namespace, name, decision.wake_in)

    apps = client.AppsV1Api(ctx.api)
    ds = _read(apps.read_namespaced_daemon_set, b.daemonset_name(name), namespace)
    release = b.release_of(ds)  # what serves now: kept (with the current rollout spec) unless a new one passes
    if outcome.phase == "Succeeded" and summary is not None:
        passed, _ = gate_decision(summary, spec.gate.min_macro_f1, spec.gate.min_retention)
        if passed:
            release = b.Release(version=summary.version, generation=run_gen,
                                artifact=b.artifact_relpath(spec, name, run_gen, retrain), sha256=summary.sha256)
    if release is not None:
        if _apply_daemonset(ctx, owner, spec, release, body, ds, volume):
            ds = _read(apps.read_namespaced_daemon_set, b.daemonset_name(name), namespace)

    classifier_pods = _classifier_pods(ctx, namespace, name) if ds is not None else []
    all_pods = _pod_views([*(pods if outcome.phase != "Succeeded" else []), *classifier_pods,
                           *teacher_pods])
    events = observe.pod_events(all_pods, now, lambda ns, pod: _warnings(ctx, ns, pod))
    health = views.pod_problems(all_pods, now, ctx.pending_deadline, events)
    if health.recheck_in is not None:  # a deadline or grace ends with no pod event to announce it
        _wake_later(ctx, namespace, name, health.recheck_in)

    drift = loop.agreement_condition(spec, agreement)
    new = next_status(old, generation=generation, job_name=job_name, job=outcome, summary=summary,
                      summary_error=summary_error, gate=spec.gate, progress=progress,
                      rollout=observe.rollout_state(ds, _pod_views(classifier_pods), health, events),
                      run_generation=run_gen, extra_conditions=(drift,) if drift else (), problems=health.problems)
    new = new.model_copy(update={"training_hash": digest, "distill_generation": run_gen, "retrain": retrain,
                                 "agreement": agreement, "last_retrain": last_retrain})
    _write_status(ctx, custom, body, old, new)
    return new


def _ensure_run(ctx: Context, owner: b.Owner, spec: DistilledModelSpec, retrain: int, body: dict,
                previous_job: str | None, volume: b.ArtifactVolume | None = None
                ) -> tuple[str, dict | None, list[dict]]:
    """Create the run's children if this is its first sight; return (current Job name, Job, pods).

    ``workers == 1``: one Job. ``workers > 1``: the labelling Indexed Job first; once it is
    Complete, the distributed Indexed Job and its headless Service (re-distillations of the same
    generation reuse the soft targets)."""
    batch, core = client.BatchV1Api(ctx.api), client.CoreV1Api(ctx.api)
    namespace, name, gen = owner.namespace, owner.name, owner.generation
    job_name = b.job_name(name, gen, retrain)
    keep = {job_name}
    if spec.job.workers > 1:
        label_name = b.label_job_name(name, gen)
        keep.add(label_name)
        if previous_job not in keep:
            _create(core.create_namespaced_config_map, namespace, b.build_configmap(owner, spec))
            if _create(batch.create_namespaced_job, namespace, b.build_label_job(owner, spec, ctx.images, volume)):
                kopf.info(body, reason="LabellingStarted",
                          message=f"Job {label_name} labels {spec.job.workers} shards of generation {gen}")
            _supersede(batch, namespace, name, keep, body)
        label = _read(batch.read_namespaced_job, label_name, namespace)
        if label is None or not _job_condition(label, "Complete"):
            pods = _job_pods(core, namespace, label_name) if label is not None else []
            return label_name, label, pods
        if previous_job != job_name:
            _create(core.create_namespaced_service, namespace, b.build_rendezvous_service(owner, spec, retrain))
            if _create(batch.create_namespaced_job, namespace, b.build_job(owner, spec, ctx.images, retrain, volume)):
                kopf.info(body, reason="JobCreated",
                          message=f"Job {job_name} distils generation {gen} on {spec.job.workers} workers")
            _supersede(batch, namespace, name, keep, body)
    elif previous_job != job_name:
        _create(core.create_namespaced_config_map, namespace, b.build_configmap(owner, spec))
        if _create(batch.create_namespaced_job, namespace, b.build_job(owner, spec, ctx.images, retrain, volume)):
            kopf.info(body, reason="JobCreated", message=f"Job {job_name} distils generation {gen}")
        _supersede(batch, namespace, name, keep, body)
    job = _read(batch.read_namespaced_job, job_name, namespace)
    return job_name, job, _job_pods(core, namespace, job_name) if job is not None else []


def _job_condition(job: dict, kind: str) -> bool:
    return views.JobView.parse(job).condition(kind) is not None


# --- observing (the logic is in observe and views) -------------------------------------------

def _job_view(job: dict | None) -> views.JobView | None:
    return views.JobView.parse(job) if job is not None else None


def _pod_views(pods: list[dict]) -> list[views.PodView]:
    return [views.PodView.parse(p) for p in pods]


def _classifier_pods(ctx: Context, namespace: str, name: str) -> list[dict]:
    selector = ",".join(f"{k}={v}" for k, v in b.selector_labels(name).items())
    return _plain(client.CoreV1Api(ctx.api).list_namespaced_pod(namespace, label_selector=selector))["items"]


def _warnings(ctx: Context, namespace: str, pod: str) -> list[dict]:
    """The Warning events of one pod (a FailedMount, a failing readiness probe); none without RBAC."""
    try:
        return _plain(client.CoreV1Api(ctx.api).list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={pod},type=Warning"))["items"]
    except ApiException as err:
        if err.status in (401, 403):
            log.warning("cannot list the events of pod %s/%s (%s): grant events list", namespace, pod, err.reason)
            return []
        raise


# --- acting ---------------------------------------------------------------------------------

_serializer: client.ApiClient | None = None


def _plain(api_result: Any) -> dict:
    """An API model object as the plain camelCase dict the rest of the operator reads."""
    global _serializer
    if _serializer is None:
        _serializer = client.ApiClient()
    return _serializer.sanitize_for_serialization(api_result)


def _read(reader, name: str, namespace: str) -> dict | None:
    try:
        return _plain(reader(name, namespace))
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def _create(creator, namespace: str, manifest: dict) -> bool:
    """Create; False when it already exists (a re-run after a restart or a retry)."""
    try:
        creator(namespace, manifest)
        return True
    except ApiException as err:
        if err.status == 409:
            return False
        raise


def _job_pods(core: client.CoreV1Api, namespace: str, job_name: str) -> list[dict]:
    for label in JOB_NAME_LABELS:
        pods = _plain(core.list_namespaced_pod(namespace, label_selector=f"{label}={job_name}"))["items"]
        if pods:
            return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
    return []


def _supersede(batch: client.BatchV1Api, namespace: str, name: str, keep: set[str], body: dict) -> None:
    """Delete this CR's unfinished Jobs other than the current run's (a newer run supersedes them)."""
    jobs = _plain(batch.list_namespaced_job(namespace, label_selector=f"{b.MODEL_LABEL}={name}"))["items"]
    for job in jobs:
        job_name = job["metadata"]["name"]
        done = _job_condition(job, "Complete") or _job_condition(job, "Failed")
        if job_name not in keep and not done:
            try:
                batch.delete_namespaced_job(job_name, namespace, propagation_policy="Background")
            except ApiException as err:
                if err.status != 404:
                    raise
            kopf.info(body, reason="JobSuperseded",
                      message=f"Job {job_name} deleted: {', '.join(sorted(keep))} supersedes it")


def _apply_daemonset(ctx: Context, owner: b.Owner, spec: DistilledModelSpec, release: b.Release, body: dict,
                     current: dict | None, volume: b.ArtifactVolume | None = None) -> bool:
    """Create or update the classifier DaemonSet; True when it changed."""
    apps, core = client.AppsV1Api(ctx.api), client.CoreV1Api(ctx.api)
    manifest = b.build_daemonset(owner, spec, release, ctx.images, volume)
    name, namespace = manifest["metadata"]["name"], owner.namespace
    # Every pass, not only when the DaemonSet changes: a Service lost to one failed call is healed.
    _create(core.create_namespaced_service, namespace, b.build_service(owner, spec))
    if current is None:
        if _create(apps.create_namespaced_daemon_set, namespace, manifest):
            kopf.info(body, reason="RolloutStarted", message=f"DaemonSet {name} created with version {release.version}")
        return True
    applied = (current["metadata"].get("annotations") or {}).get(b.APPLIED_HASH_ANNOTATION)
    if applied == manifest["metadata"]["annotations"][b.APPLIED_HASH_ANNOTATION]:
        return False
    manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    apps.replace_namespaced_daemon_set(name, namespace, manifest)  # 409 on a race: retried
    kopf.info(body, reason="RolloutStarted", message=f"DaemonSet {name} updated to version {release.version}")
    return True


def _apply_escalation(ctx: Context, owner: b.Owner, spec: DistilledModelSpec, body: dict,
                      old: DistilledModelStatus, volume: b.ArtifactVolume | None = None) -> list[dict]:
    """The teacher Deployment + Service when escalation is on (removed when it is turned off);
    returns the teacher pods (their agreement annotations)."""
    apps, core = client.AppsV1Api(ctx.api), client.CoreV1Api(ctx.api)
    name, namespace = b.teacher_name(owner.name), owner.namespace
    if not spec.escalation.enabled:
        if old.condition(AGREEMENT_LOW) is not None:  # it was on: take the teacher down
            for delete in (apps.delete_namespaced_deployment, core.delete_namespaced_service):
                try:
                    delete(name, namespace)
                except ApiException as err:
                    if err.status != 404:
                        raise
            kopf.info(body, reason="TeacherRemoved", message=f"escalation disabled: Deployment {name} deleted")
        return []
    manifest = b.build_teacher_deployment(owner, spec, ctx.images, volume)
    current = _read(apps.read_namespaced_deployment, name, namespace)
    _create(core.create_namespaced_service, namespace, b.build_teacher_service(owner, spec))  # every pass: heals
    if current is None:
        if _create(apps.create_namespaced_deployment, namespace, manifest):
            kopf.info(body, reason="TeacherStarted",
                      message=f"Deployment {name} serves the teacher on port {spec.escalation.port}")
    elif (current["metadata"].get("annotations") or {}).get(b.APPLIED_HASH_ANNOTATION) != \
            manifest["metadata"]["annotations"][b.APPLIED_HASH_ANNOTATION]:
        manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        apps.replace_namespaced_deployment(name, namespace, manifest)
        kopf.info(body, reason="TeacherUpdated", message=f"Deployment {name} updated")
    selector = ",".join(f"{k}={v}" for k, v in b.teacher_selector(owner.name).items())
    return _plain(core.list_namespaced_pod(namespace, label_selector=selector))["items"]


def _ensure_storage(ctx: Context, namespace: str, spec: DistilledModelSpec, body: dict) -> b.ArtifactVolume:
    """The artifacts claim the CR's pods mount: created when missing and the operator may (with its
    hostPath PersistentVolume under --artifacts-host-path). Never owned by the CR: it keeps the
    content-addressed teachers other CRs and later generations reuse."""
    core = client.CoreV1Api(ctx.api)
    settings = ctx.storage
    claim_name = b.claim_name(spec, settings)
    try:
        claim = _read(core.read_namespaced_persistent_volume_claim, claim_name, namespace)
    except ApiException as err:
        if err.status != 403:
            raise
        log.warning("cannot read PersistentVolumeClaim %s/%s (403): assuming it exists", namespace, claim_name)
        return b.artifact_volume(spec, None, settings)
    if claim is None and settings.create:
        try:
            if settings.host_path:
                pv = b.build_host_path_volume(namespace, claim_name, settings)
                try:
                    core.create_persistent_volume(pv)
                except ApiException as err:
                    if err.status != 409:
                        raise
            claim = b.build_claim(namespace, claim_name, settings)
            if _create(core.create_namespaced_persistent_volume_claim, namespace, claim):
                where = f" on hostPath {claim['metadata']['annotations'][b.HOST_PATH_ANNOTATION]}" \
                    if settings.host_path else ""
                kopf.info(body, reason="StorageCreated",
                          message=f"PersistentVolumeClaim {claim_name} ({settings.size}) created{where}")
            else:
                claim = _read(core.read_namespaced_persistent_volume_claim, claim_name, namespace)
        except ApiException as err:
            if err.status not in (403, 422):
                raise
            kopf.warn(body, reason="StorageUnavailable",
                      message=f"cannot create PersistentVolumeClaim {claim_name}: {err.status} {err.reason}")
            claim = None
    return b.artifact_volume(spec, claim, settings)


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


def _write_status(ctx: Context, custom: client.CustomObjectsApi, body: dict, old: DistilledModelStatus,
                  new: DistilledModelStatus) -> None:
    meta = body["metadata"]
    ctx.metrics.set_phase(meta["namespace"], meta["name"], new.phase)
    if same_status(old, new):
        return
    _count_result(ctx, old, new)
    for problem in new_problems(old, new):
        ctx.metrics.pod_problems.labels(problem.reason).inc()
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, meta["namespace"], PLURAL, meta["name"],
                                                 {"status": new.to_patch()})
    for event in transitions(old, new):
        (kopf.warn if event.warning else kopf.info)(body, reason=event.reason, message=event.message[:1000])
