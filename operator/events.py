"""Events on a DistilledModel, from anywhere in the operator.

Inside a kopf handler kopf's own poster queues them (batched, retried). The operator's own
scheduling (the resync, the drift repair, a timed wake-up started outside a handler) runs outside
kopf's per-object context, where ``kopf.info`` raises ``LookupError`` on its context variables:
there the Event is created directly through the core/v1 API. Posting never fails the caller.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import kopf
from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("logdistill.operator")
COMPONENT = "logdistill-operator"
MAX_MESSAGE = 1000


def info(api: client.ApiClient, body: dict, reason: str, message: str) -> None:
    post(api, body, reason, message, warning=False)


def warn(api: client.ApiClient, body: dict, reason: str, message: str) -> None:
    post(api, body, reason, message, warning=True)


def post(api: client.ApiClient, body: dict, reason: str, message: str, warning: bool = False) -> None:
    message = message[:MAX_MESSAGE]
    try:
        (kopf.warn if warning else kopf.info)(body, reason=reason, message=message)
        return
    except LookupError:  # no kopf handler context (kopf's posting context variables are unset)
        pass
    try:
        client.CoreV1Api(api).create_namespaced_event(body["metadata"]["namespace"],
                                                      build_event(body, reason, message, warning))
    except ApiException as err:
        log.warning("cannot post Event %s on %s/%s: %s %s", reason, body["metadata"].get("namespace"),
                    body["metadata"].get("name"), err.status, err.reason)


def build_event(body: dict, reason: str, message: str, warning: bool, now: datetime | None = None) -> dict:
    """A core/v1 Event on ``body`` (what kopf's poster would create)."""
    meta = body["metadata"]
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid")},
        "reason": reason, "message": message, "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }
