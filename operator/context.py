"""What the handlers, the scheduler and the API helpers share (kopf's ``memo.ctx``): the API
client, the default images and storage settings, the operator's own timers, the per-CR locks and
the serializer of API model objects. No module-level mutable state elsewhere."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from logdistill.operator import views
from logdistill.operator.manifests.claims import StorageSettings
from logdistill.operator.manifests.common import Images
from logdistill.operator.metrics import OperatorMetrics
from logdistill.policy import AdmissionPolicy


@dataclass
class Context:
    """What the handlers share: an API client and the default images (kopf's ``memo``)."""

    api: client.ApiClient
    images: Images
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    resync_seconds: float = 30.0
    # How often settled CRs are checked for a deleted workload (0: never).
    repair_seconds: float = 10.0
    tasks: list = field(default_factory=list)
    peering: str | None = None  # kopf peering name; None = standalone
    priority: int = 0
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    # How artifact claims are provided (--create-claims, --artifacts-*).
    storage: StorageSettings = field(default_factory=StorageSettings)
    # What a CR may ask for (--allowed-image-prefix, --allowed-log-root, --allow-*, --https-only-endpoints).
    policy: AdmissionPolicy = field(default_factory=AdmissionPolicy)
    # Shrinks retrain.windowSeconds/minIntervalSeconds (tests only: the spec's minimums are 60 s/300 s).
    retrain_time_scale: float = 1.0
    timers: dict = field(default_factory=dict)
    # Timer threads running a reconcile now, and the operator's stop: cleanup waits for the former
    # (a daemon thread still logging at interpreter exit aborts the process).
    firing: set = field(default_factory=set)
    stopping: threading.Event = field(default_factory=threading.Event)
    # A pod pending longer than this is a PendingTooLong problem (--pod-pending-deadline).
    pending_deadline: float = views.DEFAULT_PENDING_DEADLINE_S
    # One lock per CR (namespace, name): serialises concurrent wake-ups of its reconcile.
    locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict, repr=False)
    locks_guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Turns API model objects into plain dicts; made on first use (no API access of its own).
    serializer: client.ApiClient | None = field(default=None, repr=False)

    def lock(self, namespace: str, name: str) -> threading.Lock:
        with self.locks_guard:
            return self.locks.setdefault((namespace, name), threading.Lock())

    def plain(self, api_result: Any) -> dict:
        """An API model object as the plain camelCase dict the rest of the operator reads."""
        if self.serializer is None:
            self.serializer = client.ApiClient()
        return self.serializer.sanitize_for_serialization(api_result)
