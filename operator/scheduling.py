"""The operator's own scheduling, beside kopf's: the periodic resync of unsettled CRs, the delayed
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

from logdistill.operator.context import Context
from logdistill.operator.names import GROUP, PLURAL, VERSION

log = logging.getLogger("logdistill.operator")
Reconcile = Callable[[Context, str, str], Any]
GLOB_CHARS = "*?[!"


def start(ctx: Context, reconcile: Reconcile) -> None:
    """Start the periodic resync (a safety net for an event whose reconcile failed: event handlers
    are not retried), unless ``ctx.resync_seconds`` is 0."""
    if ctx.resync_seconds > 0:
        ctx.tasks.append(asyncio.create_task(_resync_loop(ctx, reconcile)))


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


async def _resync_loop(ctx: Context, reconcile: Reconcile) -> None:
    while True:
        await asyncio.sleep(ctx.resync_seconds)
        try:
            await asyncio.to_thread(resync_once, ctx, reconcile)
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


def resync_once(ctx: Context, reconcile: Reconcile) -> int:
    """Reconcile every CR that is not settled (Ready/Failed/Degraded of its current generation)."""
    if outranked(ctx):
        return 0
    custom = client.CustomObjectsApi(ctx.api)
    exact = ctx.namespaces and not any(ch in ns for ns in ctx.namespaces for ch in GLOB_CHARS)
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
