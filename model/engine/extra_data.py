"""Extra training lines for re-distillation: what the teacher service labelled (``--store``).

``logdistill distill --extra-data PATH`` (repeatable; a JSONL file or a directory of them, each
line ``{"text", "label", ...}`` as :func:`logdistill.model.runtime.data.read_logs` reads ``jsonl``)
adds these lines to the TRAIN part of the split only. A line whose masked template is in the
dev or test part is dropped, so nothing labelled by the teacher leaks into evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from logdistill.model.runtime.data import LogRecord, read_logs
from logdistill.model.runtime.splits import Split
from logdistill.model.runtime.templates import mask

__all__ = ["ExtraData", "add_extra_data"]


@dataclass
class ExtraData:
    """What :func:`add_extra_data` did, for the progress log and the report."""

    read: int = 0
    added: int = 0
    leaked: int = 0  # dropped: their template is in dev or test
    malformed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"extra data: {self.read} lines read, {self.added} added to train, {self.leaked} dropped"
                f" (template in dev/test), {len(self.malformed)} malformed")


def add_extra_data(split: Split, paths: Sequence[str | Path]) -> tuple[Split, ExtraData]:
    """``split`` with the lines of ``paths`` appended to its train part (never dev or test)."""
    stats = ExtraData()
    if not paths:
        return split, stats
    held_out = {mask(r.text) for r in (*split.dev, *split.test)}
    extra: list[LogRecord] = []
    for path in paths:
        result = read_logs(path, "jsonl")  # DataError (naming the file) when it does not exist
        stats.malformed.extend(result.malformed)
        for record in result.records:
            stats.read += 1
            if mask(record.text) in held_out:
                stats.leaked += 1
            else:
                extra.append(record)
    stats.added = len(extra)
    return Split(train=[*split.train, *extra], dev=split.dev, test=split.test), stats
