"""The operator's Prometheus metrics (``logdistill operator --metrics-port``, default 9401).

- ``logdistill_operator_distilledmodels{namespace,phase}``: DistilledModels by phase (the
  dashboard's "distillation runs by phase" panel); computed at scrape time from what the last
  reconcile of each CR saw, so a deleted CR disappears.
- ``logdistill_operator_reconcile_seconds``: wall time of one reconcile.
- ``logdistill_operator_distillations_total{result}``: finished distillation runs by result
  (``passed``, ``gate_failed``, ``failed``).
- ``logdistill_operator_pod_problems_total{reason}``: pod problems the operator reported (one per
  new problem, as its Event), by reason: the closed set of ``views.REASONS``, every one exported
  from 0.

A private registry per operator (tests run several operators in one process).
"""

from __future__ import annotations

import threading
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from logdistill.operator.status import PHASES
from logdistill.operator.views import REASONS

RESULTS = ("passed", "gate_failed", "failed")


class _PhaseCollector:
    def __init__(self, phases: dict[tuple[str, str], str], lock: threading.Lock):
        self.phases, self.lock = phases, lock

    def collect(self):
        family = GaugeMetricFamily("logdistill_operator_distilledmodels", "DistilledModels by namespace and phase",
                                   labels=["namespace", "phase"])
        with self.lock:
            tally = Tally((ns, phase) for (ns, _), phase in self.phases.items())
        namespaces = sorted({ns for ns, _ in tally})
        for ns in namespaces:
            for phase in PHASES:  # every phase, zeros included, so a panel shows what went to 0
                family.add_metric([ns, phase], tally.get((ns, phase), 0))
        yield family


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self._phases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self.registry.register(_PhaseCollector(self._phases, self._lock))
        self.reconcile_seconds = Histogram(
            "logdistill_operator_reconcile_seconds", "Wall time of one reconcile of a DistilledModel",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry)
        self.distillations = Counter(
            "logdistill_operator_distillations", "Finished distillation runs by result", ["result"],
            registry=self.registry)
        for result in RESULTS:
            self.distillations.labels(result)
        self.pod_problems = Counter(
            "logdistill_operator_pod_problems", "Pod problems reported (one per new problem) by reason", ["reason"],
            registry=self.registry)
        for reason in REASONS:
            self.pod_problems.labels(reason)

    def set_phase(self, namespace: str, name: str, phase: str | None) -> None:
        with self._lock:
            if phase is None:
                self._phases.pop((namespace, name), None)
            else:
                self._phases[(namespace, name)] = phase

    def serve(self, port: int, addr: str = "0.0.0.0"):
        from prometheus_client import start_http_server

        return start_http_server(port, addr=addr, registry=self.registry)
