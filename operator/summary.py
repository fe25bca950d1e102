"""The distillation Job's result, handed back through the container's termination message.

The contract (fields, the 4096-byte limit, parsing and the gate formula) lives in
:mod:`logdistill.contracts`, shared with the engine that writes it; this module re-exports the
operator's side of it.
"""

from __future__ import annotations

from logdistill.contracts import (
    MAX_SUMMARY_BYTES,
    JobReportedError,
    StudentScores,
    Summary,
    SummaryError,
    TeacherScores,
    gate_decision,
    parse_summary,
)

__all__ = ["MAX_SUMMARY_BYTES", "JobReportedError", "StudentScores", "Summary", "SummaryError", "TeacherScores",
           "gate_decision", "parse_summary"]
