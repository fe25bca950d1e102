"""The alert stream: JSON lines on stdout, one object (:func:`alert_record`) per non-normal line.

Each object carries its line's ``id`` (:func:`logdistill.edge.sources.record_id`): after a
``kill -9`` the classifier may write the last batch's alerts again, with the same ids, so a
consumer that keeps the first object of each ``(id, correction, downgrade)`` sees every line once.

One :class:`AlertWriter` serves both writers of that stream, the tail pipeline (alerts) and the
teacher's answers (corrections, from the escalation thread): one lock, so lines never interleave,
and once the stream breaks it is given up for both, said once in the log.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Iterable, TextIO

from logdistill.edge.lines import pod_from_path
from logdistill.edge.sources import Record
from logdistill.timefmt import rfc3339

__all__ = ["AlertWriter", "alert_record", "restates_a_line"]

log = logging.getLogger(__name__)


def alert_record(record: Record, label: str, score: float, template: str, version: str,
                 node: str | None = None) -> dict:
    """The JSON object written for one non-normal line."""
    out: dict = {
        "time": record.time or rfc3339(),
        "source": record.path,
    }
    if record.id:  # the line's identity: a line repeated after a crash (kill -9) repeats its id
        out["id"] = record.id
    if node:
        out["node"] = node
    pod = pod_from_path(record.path)
    if pod is not None:
        out.update(namespace=pod.namespace, pod=pod.pod, container=pod.container)
    if record.stream:
        out["stream"] = record.stream
    out.update(label=label, score=round(score, 6), line=record.message, template=template, model=version)
    return out


def restates_a_line(record: dict) -> bool:
    """Whether an alert object is the teacher's second word on a line already stated (a correction, or a
    refused downgrade that re-states the student's alert), not the line's own verdict: a consumer counting
    lines skips these."""
    return bool(record.get("correction") or record.get("downgrade"))


class AlertWriter:
    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    @classmethod
    def of(cls, output: "AlertWriter | TextIO | None") -> "AlertWriter":
        """``output`` itself if it is a writer already (shared), else a writer over that stream."""
        return output if isinstance(output, AlertWriter) else cls(output)

    @property
    def enabled(self) -> bool:
        return self.stream is not None

    def write(self, records: Iterable[dict]) -> None:
        text = "".join(json.dumps(record) + "\n" for record in records)
        if not text:
            return
        with self._lock:
            if self.stream is None:
                return
            try:
                self.stream.write(text)
                self.stream.flush()
            except (BrokenPipeError, ValueError, OSError) as err:
                # Metrics and the API stay useful without stdout; say so once.
                log.error("cannot write alerts to stdout any more: %s", err)
                self.stream = None
