"""Tailed records -> classifier -> JSON lines on stdout for the non-normal ones.

One :meth:`TailPipeline.step` reads what the files grew by, classifies it as one call
(cache + micro-batched misses), writes the alerts, and only then checkpoints the
offsets: a line is counted done once its verdict is written.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TextIO

from logdistill.edge.alerts import AlertWriter, alert_record
from logdistill.edge.metrics import ClassifierMetrics
from logdistill.edge.reload import ModelHolder
from logdistill.edge.sources import Tailer

__all__ = ["TailPipeline"]

log = logging.getLogger(__name__)


class TailPipeline:
    def __init__(self, tailer: Tailer, holder: ModelHolder, metrics: ClassifierMetrics,
                 output: AlertWriter | TextIO, node: str | None = None) -> None:
        self.node = node  # the DaemonSet passes NODE_NAME; it goes into every alert
        self.tailer = tailer
        self.holder = holder
        self.metrics = metrics
        self.alerts = AlertWriter.of(output)

    def step(self) -> int:
        """Handle one poll's records; returns how many (0 = nothing new)."""
        model = self.holder.current
        if model is None:
            return 0
        records = self.tailer.poll()
        if not records:
            return 0
        for pattern, count in Counter(r.pattern for r in records).items():
            self.metrics.lines_read.labels(source=pattern).inc(count)
        results = model.classify([r.message for r in records], records)  # records: context for corrections
        normal = model.normal_label
        self.alerts.write(alert_record(record, result.label, result.score, result.template, model.version, self.node)
                          for record, result in zip(records, results) if result.label != normal)
        self.tailer.checkpoint()
        return len(records)
