"""The operator's own scheduling, beside kopf's: the periodic resync of unsettled CRs, the drift
repair of settled ones (a workload deleted behind the operator's back), the delayed
wake-ups (a debounced pod event, a drift window or pending deadline that ends with no event), and
the peering check that pauses both while a higher-priority replica is live.

Neither is a kopf timer: kopf timers put a finalizer on every CR. What to run is passed in
(``reconcile(ctx, namespace, name)``), so this module knows nothing of reconciling.
"""

from __future__ import annotations

import asyncio
import contextvars
import fnmatch
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

import kopf
from kubernetes import client
from kubernetes.client.rest import ApiException

from logdistill.operator import drift, events
from logdistill.operator.context import Context
from logdistill.operator.names import GROUP, MANAGED_BY, MANAGED_BY_LABEL, PLURAL, VERSION
from logdistill.operator.status import DistilledModelStatus
from logdistill.spec import DistilledModelSpec, SpecError, parse_spec

log = logging.getLogger("logdistill.operator")
Reconcile = Callable[[Context, str, str], Any]
GLOB_CHARS = "*?[!"


def start(ctx: Context, reconcile: Reconcile) -> None:
    """Start the periodic resync (a safety net for an event whose reconcile failed: event handlers
    are not retried), unless ``ctx.resync_seconds`` is 0, and the drift repair of settled CRs
    (a child deleted behind the operator's back), unless ``ctx.repair_seconds`` is 0."""
    if ctx.resync_seconds > 0:
        ctx.tasks.append(asyncio.create_task(_every(ctx.resync_seconds, "resync", resync_once, ctx, reconcile)))
    if ctx.repair_seconds > 0:
        ctx.tasks.append(asyncio.create_task(_every(ctx.repair_seconds, "drift repair", repair_once, ctx, reconcile)))


async def stop(ctx: Context) -> None:
    """Stop the resync, cancel the pending wake-ups and wait for the running ones."""
    for task in ctx.tasks:
        task.cancel()
    ctx.tasks.clear()
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


def wake_later(ctx: Context, namespace: str, name: str, delay: float, reconcile: Reconcile) -> None:
    """Reconcile again in ``delay`` seconds; an earlier pending wake-up of the same CR stands."""
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


async def _every(seconds: float, what: str, once: Callable[[Context, Reconcile], Any], ctx: Context,
                 reconcile: Reconcile) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await asyncio.to_thread(once, ctx, reconcile)
        except Exception as err:  # noqa: BLE001 - the loop must survive API outages
            log.warning("%s failed: %s", what, err)


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
                    for ns in ctx.namespaces if not any(ch in ns for ch in GLOB_CHARS)]
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


def _list_crs(ctx: Context) -> list[dict]:
    custom = client.CustomObjectsApi(ctx.api)
    exact = ctx.namespaces and not any(ch in ns for ns in ctx.namespaces for ch in GLOB_CHARS)
    if exact:
        return [i for ns in ctx.namespaces for i in
                custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL).get("items", [])]
    # cluster-wide, or kopf namespace patterns (globs): list everything, keep what matches
    return [i for i in custom.list_cluster_custom_object(GROUP, VERSION, PLURAL).get("items", [])
            if not ctx.namespaces or any(fnmatch.fnmatch(i["metadata"]["namespace"], p) for p in ctx.namespaces)]


def _settled(item: dict) -> bool:
    status = item.get("status") or {}
    return status.get("phase") in drift.SETTLED and status.get("observedGeneration") == item["metadata"].get("generation")


def resync_once(ctx: Context, reconcile: Reconcile) -> int:
    """Reconcile every CR that is not settled (Ready/Failed/Degraded of its current generation)."""
    if outranked(ctx):
        return 0
    done = 0
    for item in _list_crs(ctx):
        if not _settled(item):
            try:
                reconcile(ctx, item["metadata"]["namespace"], item["metadata"]["name"])
                done += 1
            except (kopf.TemporaryError, kopf.PermanentError, ApiException) as err:
                log.info("resync of %s/%s deferred: %s", item["metadata"]["namespace"], item["metadata"]["name"], err)
    return done


def _children_present(ctx: Context, namespace: str) -> set[drift.Child]:
    """The operator's long-lived workloads in a namespace (one list per kind, by the managed-by label)."""
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    apps, core = client.AppsV1Api(ctx.api), client.CoreV1Api(ctx.api)
    listings = (("DaemonSet", apps.list_namespaced_daemon_set), ("Deployment", apps.list_namespaced_deployment),
                ("Service", core.list_namespaced_service))
    return {drift.Child(kind, obj.metadata.name) for kind, lister in listings
            for obj in lister(namespace, label_selector=selector).items}


def repair_once(ctx: Context, reconcile: Reconcile) -> list[tuple[str, str, list[drift.Child]]]:
    """Reconcile every settled CR one of whose workloads (classifier DaemonSet, metrics Service,
    teacher Deployment and Service) is gone, and say so in an Event; returns what was missing."""
    if outranked(ctx):
        return []
    settled = [i for i in _list_crs(ctx) if _settled(i)]
    present = {ns: _children_present(ctx, ns) for ns in {i["metadata"]["namespace"] for i in settled}}
    repaired = []
    for item in settled:
        namespace, name = item["metadata"]["namespace"], item["metadata"]["name"]
        try:
            spec = parse_spec(item.get("spec") or {}, DistilledModelSpec, source=f"DistilledModel {namespace}/{name}")
        except SpecError:
            continue  # reported in its status by the reconcile that found it
        status = DistilledModelStatus.model_validate(item.get("status") or {})
        missing = drift.missing_children(name, spec, status, present[namespace])
        if not missing:
            continue
        try:
            reconcile(ctx, namespace, name)
        except (kopf.TemporaryError, kopf.PermanentError, ApiException) as err:
            log.info("drift repair of %s/%s deferred: %s", namespace, name, err)
            continue
        what = ", ".join(child.describe() for child in missing)
        log.info("drift repair of %s/%s: re-created %s", namespace, name, what)
        events.warn(ctx.api, item, "ChildRecreated", f"{what} was missing (deleted outside the operator): re-created")
        repaired.append((namespace, name, missing))
    return repaired
