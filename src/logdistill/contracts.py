"""Every wire format that crosses a process boundary, in one torch-free module.

Producers (the engine in :mod:`logdistill.model`, the teacher service) and consumers (the operator)
both import from here, so a field, a size limit or a formula is written once:

* **Annotation keys** a pod publishes for the operator: :data:`PROGRESS_ANNOTATION` (the
  distillation Job's :class:`Progress`) and :data:`AGREEMENT_ANNOTATION` (a teacher pod's online
  :class:`Agreement`), each at most :data:`MAX_ANNOTATION_BYTES`.
* The Job's result, **Summary**, handed back through the container's termination message: one
  compact JSON object of at most :data:`MAX_SUMMARY_BYTES` (the kubelet truncates longer ones).
  A success is a :class:`Summary`; a failure an :class:`ErrorSummary` ``{"error": "..."}``; a
  non-zero rank of a distributed run writes a :class:`WorkerSummary` ``{"rank": r}``.
* The **gate**: :func:`retention_of` and :func:`gate_passes` are the one formula the engine applies
  before publishing and the operator re-applies (:func:`gate_decision`) before a rollout.

Each message type has ``serialize()`` (compact, sorted JSON; refuses a body over its limit) and
``parse(text)`` (refuses missing, oversize, non-JSON or invalid input with a :class:`ContractError`
whose ``reason`` is a CamelCase condition reason and whose message says what is wrong).

Imports only the standard library and pydantic: the operator, the edge and the engine load it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

__all__ = [
    "ANNOTATION_PREFIX",
    "PROGRESS_ANNOTATION",
    "PROGRESS_LOG_PREFIX",
    "progress_log_line",
    "last_progress_in_log",
    "AGREEMENT_ANNOTATION",
    "MAX_ANNOTATION_BYTES",
    "MAX_SUMMARY_BYTES",
    "STAGES",
    "ContractError",
    "SummaryError",
    "JobReportedError",
    "Wire",
    "TeacherScores",
    "StudentScores",
    "Summary",
    "ErrorSummary",
    "WorkerSummary",
    "parse_summary",
    "Progress",
    "Agreement",
    "GateDecision",
    "retention_of",
    "gate_passes",
    "decide_gate",
    "gate_decision",
]

ANNOTATION_PREFIX = "logdistill.io"
PROGRESS_ANNOTATION = f"{ANNOTATION_PREFIX}/progress"
"""Set by the distillation Job's runner on its own pod: the engine's :class:`Progress`."""
AGREEMENT_ANNOTATION = f"{ANNOTATION_PREFIX}/agreement"
"""Set by each teacher pod (``logdistill serve-teacher``): its :class:`Agreement` window."""
MAX_ANNOTATION_BYTES = 2048
"""Budget of one published annotation value."""
MAX_SUMMARY_BYTES = 4096
"""The kubelet truncates termination messages to 4096 bytes (and all containers of a pod to 12 KiB)."""

PROGRESS_LOG_PREFIX = "logdistill.io/progress "
"""A line of the distillation Job's log: this prefix, then the compact :class:`Progress` JSON. The runner
prints one on every change, so the operator can read progress from the pod's log tail when the Job's
ServiceAccount may not patch its pod (the default: Jobs need no API access)."""

STAGES = ("loading", "labelling", "training", "evaluating", "exporting", "done")
"""The engine's stages, in order."""


class ContractError(ValueError):
    """A message that does not meet its contract; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class SummaryError(ContractError):
    """The termination message is not a usable summary."""


class JobReportedError(SummaryError):
    """The engine ran and reported ``{"error": ...}``."""


def _compact(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


class Wire(BaseModel):
    """A JSON message: camelCase on the wire, unknown fields ignored, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    NAME: ClassVar[str] = "message"
    """What the message is called in error messages."""
    REASON: ClassVar[str] = "Message"
    """Prefix of the error reasons: ``<REASON>Missing``, ``TooLarge``, ``Unreadable``, ``Invalid``."""
    LIMIT: ClassVar[int] = MAX_ANNOTATION_BYTES
    """Largest serialized size in bytes."""
    ERROR: ClassVar[type[ContractError]] = ContractError
    EXCLUDE_NONE: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        """The wire body as a plain dict (camelCase keys)."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=self.EXCLUDE_NONE)

    def serialize(self) -> str:
        """Compact, sorted JSON; :class:`ContractError` (``<REASON>TooLarge``) over :attr:`LIMIT` bytes."""
        text = _compact(self.to_dict())
        size = len(text.encode("utf-8"))
        if size > self.LIMIT:
            raise self.ERROR(f"{self.REASON}TooLarge", f"{self.NAME} is {size} bytes, over the {self.LIMIT}-byte limit")
        return text

    @classmethod
    def _load(cls, text: str | bytes | None) -> dict[str, Any]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if text is None or not text.strip():
            raise cls.ERROR(f"{cls.REASON}Missing", f"{cls.NAME} is empty")
        size = len(text.encode("utf-8"))
        if size > cls.LIMIT:
            raise cls.ERROR(f"{cls.REASON}TooLarge", f"{cls.NAME} is {size} bytes, more than the {cls.LIMIT}-byte limit")
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as err:
            raise cls.ERROR(f"{cls.REASON}Unreadable",
                            f"{cls.NAME} is not JSON ({err.msg} at char {err.pos}): {text.strip()[:80]!r}") from None
        if not isinstance(data, dict):
            raise cls.ERROR(f"{cls.REASON}Unreadable", f"{cls.NAME} must be a JSON object, got {type(data).__name__}")
        return data

    @classmethod
    def _validate(cls, data: dict[str, Any]) -> Any:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5])
            raise cls.ERROR(f"{cls.REASON}Invalid", f"{cls.NAME} fields are invalid: {fields}") from None

    @classmethod
    def parse(cls, text: str | bytes | None) -> Any:
        """Parse and validate; :class:`ContractError` naming what is wrong."""
        return cls._validate(cls._load(text))


# --- the Job summary (termination message) ------------------------------------------------------


class TeacherScores(Wire):
    accuracy: float = Field(ge=0.0, le=1.0)
    macro_f1: float = Field(ge=0.0, le=1.0)
    latency_ms_p50: float | None = Field(default=None, ge=0.0)
    """Absent for a teacher whose latency is not the model's (an LLM endpoint)."""


class StudentScores(TeacherScores):
    latency_ms_p99: float | None = Field(default=None, ge=0.0)
    parameters: int | None = Field(default=None, ge=0)
    size_bytes: int | None = Field(default=None, ge=0)


class _SummaryWire(Wire):
    NAME: ClassVar[str] = "summary"
    REASON: ClassVar[str] = "Summary"
    LIMIT: ClassVar[int] = MAX_SUMMARY_BYTES
    ERROR: ClassVar[type[ContractError]] = SummaryError
    EXCLUDE_NONE: ClassVar[bool] = True


class Summary(_SummaryWire):
    """What a successful distillation reports (the engine's ``--summary-file`` contract)."""

    version: str = Field(min_length=1, max_length=128)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    artifact: str = Field(min_length=1, max_length=1024)
    teacher: TeacherScores
    student: StudentScores
    retention: float = Field(ge=0.0)
    gate_passed: bool

    @classmethod
    def parse(cls, text: str | bytes | None) -> "Summary":
        """A success summary; an ``{"error": ...}`` body raises :class:`JobReportedError`."""
        if text is None or not (text.strip() if isinstance(text, str) else text.strip()):
            raise SummaryError("SummaryMissing",
                               "the Job succeeded but its pod left no termination message (summary)")
        data = cls._load(text)
        if "error" in data:
            raise JobReportedError("DistillationError", f"distillation failed: {str(data['error'])[:500]}")
        return cls._validate(data)


class ErrorSummary(_SummaryWire):
    """A failed run: ``{"error": message}``; an over-long message is cut to fit the limit."""

    error: str

    def serialize(self) -> str:
        text = _compact(self.to_dict())
        message = self.error
        while len(text.encode("utf-8")) > self.LIMIT and message:
            over = len(text.encode("utf-8")) - self.LIMIT
            message = message[: max(0, len(message) - max(64, over + 16))]
            text = _compact({"error": message + "…"})
        return text


class WorkerSummary(_SummaryWire):
    """A non-zero rank of a distributed run: it trained, rank 0 evaluates and reports."""

    rank: int = Field(ge=1)


def parse_summary(message: str | bytes | None) -> Summary:
    """Parse and validate a termination message; raise :class:`SummaryError` naming what is wrong."""
    return Summary.parse(message)


# --- annotations --------------------------------------------------------------------------------


class Progress(Wire):
    """The engine's progress (``--progress-file``, published as :data:`PROGRESS_ANNOTATION`)."""

    NAME: ClassVar[str] = "progress"
    REASON: ClassVar[str] = "Progress"

    stage: Literal["loading", "labelling", "training", "evaluating", "exporting", "done"] = "loading"
    epoch: int = Field(default=0, ge=0)
    epochs: int = Field(default=0, ge=0)
    step: int = Field(default=0, ge=0)
    steps: int = Field(default=0, ge=0)
    percent: float = Field(default=0.0, ge=0.0, le=100.0)
    dev_macro_f1: float | None = None
    """Best dev macro-F1 so far."""
    updated: str | None = None
    """RFC 3339 time of the last update."""


def progress_log_line(progress: dict[str, Any]) -> str:
    """The log line that carries ``progress`` (see :data:`PROGRESS_LOG_PREFIX`)."""
    return PROGRESS_LOG_PREFIX + _compact(progress)


def last_progress_in_log(text: str) -> str | None:
    """The JSON body of the last progress line of a log excerpt (validated by the reader, as the
    annotation's is), or None."""
    for line in reversed(text.splitlines()):
        _, found, body = line.partition(PROGRESS_LOG_PREFIX)
        if found and body.strip():
            return body.strip()
    return None


class Agreement(Wire):
    """A teacher pod's online student/teacher agreement (:data:`AGREEMENT_ANNOTATION`,
    also the ``GET /v1/agreement`` body)."""

    NAME: ClassVar[str] = "agreement"
    REASON: ClassVar[str] = "Agreement"

    ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    """Share of sampled lines where both models agree; None before the first sample."""
    samples: int = Field(default=0, ge=0)
    window_seconds: int | None = Field(default=None, ge=0)
    updated: str | None = None


# --- the gate -----------------------------------------------------------------------------------


def retention_of(student_macro_f1: float, teacher_macro_f1: float) -> float:
    """Student macro-F1 over teacher macro-F1 (0 when the teacher scores 0)."""
    return student_macro_f1 / teacher_macro_f1 if teacher_macro_f1 > 0 else 0.0


def gate_passes(student_macro_f1: float, retention: float, min_macro_f1: float, min_retention: float) -> bool:
    """The spec's gate: both the absolute score and the retention reach their minimum."""
    return student_macro_f1 >= min_macro_f1 and retention >= min_retention


@dataclass(frozen=True)
class GateDecision:
    """The gate applied to one run's numbers."""

    passed: bool
    student_macro_f1: float
    teacher_macro_f1: float
    retention: float
    min_macro_f1: float
    min_retention: float

    def message(self) -> str:
        return (f"student macro-F1 {self.student_macro_f1:.4f} (min {self.min_macro_f1:g}),"
                f" retention {self.retention:.4f} (min {self.min_retention:g}),"
                f" teacher macro-F1 {self.teacher_macro_f1:.4f}")

    def report(self) -> dict[str, Any]:
        """The ``gate`` section of ``report.json``."""
        return {"minMacroF1": self.min_macro_f1, "minRetention": self.min_retention, "passed": self.passed}


def decide_gate(student_macro_f1: float, teacher_macro_f1: float, min_macro_f1: float,
                min_retention: float) -> GateDecision:
    """The engine's decision on its measured scores (before publishing the artifact)."""
    retention = retention_of(student_macro_f1, teacher_macro_f1)
    return GateDecision(gate_passes(student_macro_f1, retention, min_macro_f1, min_retention),
                        student_macro_f1, teacher_macro_f1, retention, min_macro_f1, min_retention)


def gate_decision(summary: Summary, min_macro_f1: float, min_retention: float) -> tuple[bool, str]:
    """The operator's decision on a summary: the same formula on the reported numbers, and the
    engine's own ``gatePassed`` must agree. Returns (passed, message with the numbers)."""
    f1, retention = summary.student.macro_f1, summary.retention
    ok = gate_passes(f1, retention, min_macro_f1, min_retention)
    decision = GateDecision(ok and summary.gate_passed, f1, summary.teacher.macro_f1, retention, min_macro_f1,
                            min_retention)
    message = decision.message()
    if ok and not summary.gate_passed:
        message += "; the engine reported gatePassed=false"
    return decision.passed, message
