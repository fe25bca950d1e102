"""The distillation Job's result, handed back through the container's termination message.

Like a Tekton task result: ``logdistill distill --summary-file /dev/termination-log`` writes one
compact JSON object, the kubelet copies it into ``status.containerStatuses[].state.terminated.message``
(at most 4096 bytes), and the operator reads it from the pod, never from the artifact storage.
A success carries scores, the artifact version and its sha256; a failure ``{"error": "..."}``.
Anything else (missing, truncated, not JSON, wrong fields) is a :class:`SummaryError` whose message
says why: a Job that succeeds without a readable summary is never rolled out.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

# The kubelet truncates termination messages to 4096 bytes (and all containers of a pod to 12 KiB).
MAX_SUMMARY_BYTES = 4096


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


Score = float


class TeacherScores(_Wire):
    accuracy: float = Field(ge=0.0, le=1.0)
    macro_f1: float = Field(ge=0.0, le=1.0)
    latency_ms_p50: float | None = Field(default=None, ge=0.0)


class StudentScores(TeacherScores):
    latency_ms_p99: float | None = Field(default=None, ge=0.0)
    parameters: int | None = Field(default=None, ge=0)
    size_bytes: int | None = Field(default=None, ge=0)


class Summary(_Wire):
    """What a successful distillation reports (the engine's ``--summary-file`` contract)."""

    version: str = Field(min_length=1, max_length=128)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    artifact: str = Field(min_length=1, max_length=1024)
    teacher: TeacherScores
    student: StudentScores
    retention: float = Field(ge=0.0)
    gate_passed: bool


class SummaryError(ValueError):
    """The termination message is not a usable summary; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class JobReportedError(SummaryError):
    """The engine ran and reported ``{"error": ...}``."""


def parse_summary(message: str | None) -> Summary:
    """Parse and validate a termination message; raise :class:`SummaryError` naming what is wrong."""
    if message is None or not message.strip():
        raise SummaryError("SummaryMissing", "the Job succeeded but its pod left no termination message (summary)")
    size = len(message.encode("utf-8"))
    if size > MAX_SUMMARY_BYTES:
        raise SummaryError("SummaryTooLarge", f"summary is {size} bytes, more than the {MAX_SUMMARY_BYTES}-byte limit")
    try:
        data: Any = json.loads(message)
    except json.JSONDecodeError as err:
        snippet = message.strip()[:80]
        raise SummaryError("SummaryUnreadable",
                           f"summary is not JSON ({err.msg} at char {err.pos}): {snippet!r}") from None
    if not isinstance(data, dict):
        raise SummaryError("SummaryUnreadable", f"summary must be a JSON object, got {type(data).__name__}")
    if "error" in data:
        raise JobReportedError("DistillationError", f"distillation failed: {str(data['error'])[:500]}")
    try:
        return Summary.model_validate(data)
    except ValidationError as err:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5])
        raise SummaryError("SummaryInvalid", f"summary fields are invalid: {fields}") from None


def gate_decision(summary: Summary, min_macro_f1: float, min_retention: float) -> tuple[bool, str]:
    """Apply the spec's gate to the summary's numbers (the engine's own ``gatePassed`` must agree).

    Returns (passed, message with the numbers)."""
    f1, retention = summary.student.macro_f1, summary.retention
    passed = f1 >= min_macro_f1 and retention >= min_retention and summary.gate_passed
    message = (
        f"student macro-F1 {f1:.4f} (min {min_macro_f1:g}), retention {retention:.4f} (min {min_retention:g}),"
        f" teacher macro-F1 {summary.teacher.macro_f1:.4f}"
    )
    if not summary.gate_passed and f1 >= min_macro_f1 and retention >= min_retention:
        message += "; the engine reported gatePassed=false"
    return passed, message
