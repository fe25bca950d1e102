"""Tailed records -> classifier -> JSON lines on stdout for the non-normal ones.

One :meth:`TailPipeline.step` reads what the files grew by, classifies it as one call
(cache + micro-batched misses), writes the alerts, and only then acknowledges the records to
the tailer, which commits and saves their offsets. A ``classify`` that raises hands the batch
back (:meth:`Tailer.rewind`): the next step reads the same records again, so no line is lost
to a failed batch. The order *verdicts written, then offsets saved* means a crash can only
repeat the last batch, never lose it; every alert names its line's :attr:`Record.id`, the same
in the repeat, so a consumer keyed on it sees each line once (see :mod:`logdistill.edge.sources`).

A batch that keeps failing (:data:`ISOLATE_AFTER` tries in a row) is classified line by line,
so one line that breaks the model cannot stop the node's classifier: the lines that still fail
alone are logged, naming their file and id, and skipped.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TextIO

from logdistill.edge.alerts import AlertWriter, alert_record
from logdistill.edge.classifier import Result
from logdistill.edge.metrics import ClassifierMetrics
from logdistill.edge.reload import ModelHolder
from logdistill.edge.sources import Record, Tailer

__all__ = ["TailPipeline", "ISOLATE_AFTER"]

log = logging.getLogger(__name__)

ISOLATE_AFTER = 3  # failed tries of one batch before it is classified line by line


class TailPipeline:
    def __init__(self, tailer: Tailer, holder: ModelHolder, metrics: ClassifierMetrics,
                 output: AlertWriter | TextIO, node: str | None = None) -> None:
        self.node = node  # the DaemonSet passes NODE_NAME; it goes into every alert
        self.tailer = tailer
        self.holder = holder
        self.metrics = metrics
        self.alerts = AlertWriter.of(output)
        self._failures = 0  # failed tries of the batch now being read (it comes back after each)

    def step(self) -> int:
        """Handle one poll's records; returns how many (0 = nothing new). Raises what ``classify``
        raised, after handing the records back to the tailer."""
        model = self.holder.current
        if model is None:
            return 0
        records = self.tailer.poll()
        if not records:
            self.tailer.checkpoint()  # blank lines, a truncation, a finished rotated file: progress too
            return 0
        try:
            verdicts = self._classify(model, records)
            normal = model.normal_label
            self.alerts.write(alert_record(record, result.label, result.score, result.template, model.version,
                                           self.node)
                              for record, result in verdicts if result.label != normal)
        except BaseException:
            self.tailer.rewind()
            self._failures += 1
            raise
        self._failures = 0
        self.tailer.checkpoint()
        for pattern, count in Counter(r.pattern for r in records).items():
            self.metrics.lines_read.labels(source=pattern).inc(count)
        return len(records)

    def _classify(self, model, records: list[Record]) -> list[tuple[Record, Result]]:
        if self._failures < ISOLATE_AFTER:
            results = model.classify([r.message for r in records], records)  # records: context for corrections
            return list(zip(records, results))
        log.warning("a batch of %d lines failed %d times; classifying it line by line", len(records),
                    self._failures)
        verdicts = []
        for record in records:
            try:
                (result,) = model.classify([record.message], [record])
            except Exception:
                log.exception("%s: cannot classify the line %s; skipped", record.path, record.id)
                continue
            verdicts.append((record, result))
        return verdicts
