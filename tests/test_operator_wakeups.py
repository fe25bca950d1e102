"""Pod events wake their model's reconcile: debounced, in kopf's context, and never after a stop."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import kopf
import pytest
from kubernetes import client

from logdistill.operator import handlers, names, scheduling
from logdistill.operator.context import Context
from logdistill.operator.manifests import common

CALLER = contextvars.ContextVar("caller", default=None)


def pod_body(model="m", namespace="team"):
    return {"metadata": {"name": "m-classifier-abc", "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": names.MANAGED_BY, names.MODEL_LABEL: model}}}


@pytest.fixture
def ctx(monkeypatch):
    calls: list[tuple[str, str, object]] = []
    done = threading.Event()

    def fake_reconcile(ctx, namespace, name):
        calls.append((namespace, name, CALLER.get()))
        done.set()

    monkeypatch.setattr(handlers, "reconcile", fake_reconcile)
    context = Context(api=client.ApiClient(), images=common.Images(job="j", edge="e"))
    context.calls, context.done = calls, done  # type: ignore[attr-defined]
    yield context
    asyncio.run(handlers.stop_resync(memo=kopf.Memo(ctx=context)))


def test_a_burst_of_pod_events_is_one_reconcile_carrying_kopfs_context(ctx):
    memo = kopf.Memo(ctx=ctx)
    CALLER.set("kopf-handler")  # stands for kopf's posting queue, a context variable too
    for _ in range(5):
        handlers.on_pod(body=pod_body(), memo=memo)
    assert len(ctx.timers) == 1  # debounced: one pending wake-up for the model
    assert ctx.done.wait(10)
    assert ctx.calls == [("team", "m", "kopf-handler")]


def test_a_pod_without_a_model_label_wakes_nothing(ctx):
    body = pod_body()
    del body["metadata"]["labels"][names.MODEL_LABEL]
    handlers.on_pod(body=body, memo=kopf.Memo(ctx=ctx))
    assert ctx.timers == {}


def test_no_wake_up_after_the_operator_stops(ctx):
    scheduling.wake_later(ctx, "team", "m", 60, handlers.reconcile)
    (timer,) = ctx.timers.values()
    asyncio.run(handlers.stop_resync(memo=kopf.Memo(ctx=ctx)))
    assert not timer.is_alive() and ctx.timers == {}
    scheduling.wake_later(ctx, "team", "m", 0.01, handlers.reconcile)
    assert ctx.timers == {} and ctx.calls == []
