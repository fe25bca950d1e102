"""DistilledModel.status: its typed model (the CRD's status schema) and the pure transition logic.

:func:`next_status` turns what the operator observed (the current generation's Job, its summary,
the DaemonSet) into the next status. No API calls here: the handlers observe, call this, and patch
the result. The state lives in the CR status and in the children (deterministic names, the
DaemonSet's pod-template annotations), never in the operator's memory, so a restart loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from logdistill.operator.summary import Summary, gate_decision
from logdistill.operator.views import FAMILY, REASONS, PodProblem
from logdistill.spec import GateSpec
from logdistill.timefmt import rfc3339

Phase = Literal["Pending", "Distilling", "RollingOut", "Ready", "Degraded", "Failed"]
PHASES: tuple[str, ...] = Phase.__args__  # type: ignore[attr-defined]
HISTORY_LENGTH = 5
# Condition types, in the order they are listed.
DISTILLED, GATE_PASSED, ROLLED_OUT, READY = "Distilled", "GatePassed", "RolledOut", "Ready"
# With escalation on: whether the online agreement is under retrain.agreementThreshold.
AGREEMENT_LOW = "AgreementBelowGate"
# Whether the operator's pods (Job, classifier, teacher) are free of problems (views.REASONS).
PODS_HEALTHY = "PodsHealthy"
# Job failure reasons that say less than a pod problem seen at the same time (e.g. an image that
# never pulled until activeDeadlineSeconds).
GENERIC_JOB_FAILURES = {"BackoffLimitExceeded", "DeadlineExceeded", "JobFailed", "PodFailed"}
# status.podProblems keeps this many (the condition message counts them all).
MAX_PROBLEMS = 10
RetrainReason = Literal["AgreementBelowThreshold", "Requested"]


class StatusModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", use_attribute_docstrings=True
    )


class Condition(StatusModel):
    """One aspect of the resource's state, Kubernetes-style."""

    type: str = Field(max_length=64)
    """Distilled, GatePassed, RolledOut, Ready, PodsHealthy, and AgreementBelowGate when escalation is on."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str = Field(max_length=128)
    """CamelCase reason of the last transition."""
    message: str = Field(default="", max_length=2048)
    """Human-readable detail."""
    last_transition_time: str
    """When ``status`` last changed (RFC 3339)."""
    observed_generation: int = Field(ge=0)
    """The spec generation this condition describes."""


class Progress(StatusModel):
    """The running Job's progress, as published by its job-runner."""

    generation: int = Field(default=0, ge=0)
    """Spec generation of the Job reporting it."""
    stage: str | None = Field(default=None, max_length=64)
    """Current stage (e.g. teacher, train, export, evaluate)."""
    epoch: int | None = None
    """Current epoch."""
    epochs: int | None = None
    """Planned epochs."""
    step: int | None = None
    """Step within the epoch."""
    steps: int | None = None
    """Steps per epoch."""
    percent: float | None = Field(default=None, ge=0.0, le=100.0)
    """Overall completion."""
    dev_macro_f1: float | None = None
    """Best macro-F1 on the dev split so far."""
    updated: str | None = None
    """When the runner last saw progress (RFC 3339)."""


class Scores(StatusModel):
    """Scores of one model on the held-out split."""

    accuracy: float | None = None
    """Accuracy."""
    macro_f1: float | None = None
    """Macro-averaged F1."""
    latency_ms_p50: float | None = None
    """Median per-line latency in milliseconds."""
    latency_ms_p99: float | None = None
    """99th percentile per-line latency (student)."""
    parameters: int | None = None
    """Parameter count (student)."""
    size_bytes: int | None = None
    """Size of the exported model (student)."""


class Evaluation(StatusModel):
    """The latest evaluated generation."""

    generation: int = Field(ge=0)
    """Spec generation evaluated."""
    version: str
    """Artifact version."""
    sha256: str
    """Artifact digest."""
    artifact: str
    """Artifact path inside the storage volume."""
    teacher: Scores
    """Teacher scores."""
    student: Scores
    """Student scores."""
    retention: float
    """Student macro-F1 / teacher macro-F1."""
    gate_passed: bool
    """Whether the gate passed."""


class HistoryEntry(StatusModel):
    """One evaluated version."""

    generation: int
    """Spec generation."""
    version: str
    """Artifact version."""
    teacher_macro_f1: float
    """Teacher macro-F1."""
    student_macro_f1: float
    """Student macro-F1."""
    retention: float
    """Retention."""
    gate_passed: bool
    """Whether it passed the gate."""
    finished_at: str
    """When its evaluation was observed."""


class Agreement(StatusModel):
    """Online student/teacher agreement, as the teacher service's pods publish it."""

    ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    """Share of sampled lines on which student and teacher agree (sample-weighted over teacher pods)."""
    samples: int = Field(default=0, ge=0)
    """Sampled lines behind the ratio."""
    window_seconds: int | None = None
    """Window the teacher computes the ratio over."""
    updated: str | None = None
    """Newest publication time among the teacher pods."""
    below_since: str | None = None
    """Since when the ratio has stayed under the threshold with enough samples (unset: it is not)."""


class LastRetrain(StatusModel):
    """Why and when the last re-distillation started."""

    reason: RetrainReason
    """AgreementBelowThreshold or Requested (the retrain-request annotation)."""
    at: str
    """When it started (RFC 3339)."""
    ratio: float | None = None
    """The agreement at that moment."""
    job: str
    """Its Job."""
    token: str | None = Field(default=None, max_length=256)
    """The retrain-request annotation value it answered."""


class PodProblemStatus(StatusModel):
    """A pod of this DistilledModel that is stuck or failing, as ``kubectl describe pod`` would say."""

    pod: str = Field(max_length=320)
    """namespace/name of the pod."""
    component: str = Field(default="", max_length=64)
    """distill, label, classifier or teacher."""
    container: str | None = Field(default=None, max_length=64)
    """The container at fault, if one is."""
    node: str | None = Field(default=None, max_length=253)
    """The node it is bound to (unset: not scheduled)."""
    reason: str = Field(max_length=64)
    """Unschedulable, ErrImagePull, ImagePullBackOff, ErrImageNeverPull, InvalidImageName,
    CrashLoopBackOff, OOMKilled, CreateContainerConfigError, CreateContainerError, RunContainerError,
    FailedMount, ContainerWaiting, NotReady or PendingTooLong."""
    message: str = Field(default="", max_length=1024)
    """The scheduler's, kubelet's or event's own words."""
    since: str
    """When the operator first saw it (RFC 3339)."""

    @property
    def key(self) -> tuple[str, str, str]:
        """Same identity as :attr:`views.PodProblem.key` (flapping reasons are one problem)."""
        return (self.pod, self.container or "", FAMILY.get(self.reason, self.reason))


class DistilledModelStatus(StatusModel):
    """Observed state of a DistilledModel."""

    phase: Phase = "Pending"
    """Pending, Distilling, RollingOut, Ready, Degraded (an older version serves) or Failed."""
    message: str = Field(default="", max_length=2048)
    """What is happening, in one line."""
    observed_generation: int = Field(default=0, ge=0)
    """The spec generation the status describes."""
    job: str | None = None
    """Name of the current generation's Job."""
    conditions: list[Condition] = Field(default=[], max_length=16)
    """Distilled, GatePassed, RolledOut, Ready, PodsHealthy (and AgreementBelowGate with escalation on)."""
    progress: Progress | None = None
    """Progress of the current Job."""
    evaluation: Evaluation | None = None
    """Scores of the latest evaluated generation."""
    serving_version: str | None = None
    """Artifact version the DaemonSet serves."""
    serving_generation: int | None = None
    """Spec generation of the served artifact."""
    serving_artifact: str | None = None
    """Served artifact path inside the storage volume."""
    history: list[HistoryEntry] = Field(default=[], max_length=HISTORY_LENGTH)
    """The last evaluated versions with their scores, newest last."""
    training_hash: str | None = None
    """Digest of the training-relevant spec sections the current run distils (a change elsewhere
    (rollout, escalation, retrain) updates the workloads without a new distillation)."""
    distill_generation: int | None = None
    """Spec generation whose training sections the current run distils."""
    retrain: int = Field(default=0, ge=0)
    """Re-distillations of ``distillGeneration`` so far (the current run's ``-r<n>``)."""
    agreement: Agreement | None = None
    """Online agreement reported by the teacher service (escalation on)."""
    last_retrain: LastRetrain | None = None
    """The last re-distillation started by drift or on request."""
    pod_problems: list[PodProblemStatus] = Field(default=[], max_length=MAX_PROBLEMS)
    """Pods of the current run, the classifier DaemonSet and the teacher that are stuck or failing
    (the first ten; the PodsHealthy condition counts them all)."""

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    def to_status(self) -> dict:
        """The whole status object as written (unset fields left out)."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


# --- what the handlers observe -------------------------------------------------------------

JobPhase = Literal["Missing", "Pending", "Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class JobOutcome:
    """The current generation's Job, reduced to what the status needs."""

    phase: JobPhase
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class RolloutState:
    """The classifier DaemonSet as observed."""

    version: str | None
    generation: int | None
    artifact: str | None
    desired: int
    updated: int
    available: int
    current: bool  # the DaemonSet controller has seen the latest template (observedGeneration)
    ready: int  # numberReady: pods whose classifier is ready (model loaded, self-test passed, a source read)
    node_selector: tuple[tuple[str, str], ...] = ()
    # Why pods are not ready, one line each ("node edge-1, pod ns/p: ImagePullBackOff: ..."), the first few.
    unready: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Every selected node (at least one) runs the latest template and classifies."""
        return self.current and self.desired > 0 and self.updated == self.desired \
            and self.ready == self.desired and self.available == self.desired

    def describe(self) -> str:
        if self.desired == 0:
            selector = ", ".join(f"{k}: {v!r}" if v else k for k, v in self.node_selector)
            return f"version {self.version}: no node matches rollout.nodeSelector {{{selector}}}"
        if self.complete:
            return f"version {self.version} on {self.available}/{self.desired} selected nodes"
        text = (f"version {self.version}: {self.updated} updated, {self.ready} ready, {self.available} available"
                f" of {self.desired} selected nodes")
        if self.unready:
            text += "; not ready: " + "; ".join(self.unready)
        return text


@dataclass(frozen=True)
class Transition:
    """An event to post: a phase change or a condition that changed status."""

    warning: bool
    reason: str
    message: str


def _cond(old: DistilledModelStatus, kind: str, status: str, reason: str, message: str, gen: int,
          now: str) -> Condition:
    prev = old.condition(kind)
    since = prev.last_transition_time if prev is not None and prev.status == status else now
    return Condition(
        type=kind, status=status, reason=reason, message=message[:2048], last_transition_time=since,
        observed_generation=gen,
    )


def evaluation_from(summary: Summary, generation: int, gate_passed: bool) -> Evaluation:
    t, s = summary.teacher, summary.student
    return Evaluation(
        generation=generation, version=summary.version, sha256=summary.sha256, artifact=summary.artifact,
        teacher=Scores(accuracy=t.accuracy, macro_f1=t.macro_f1, latency_ms_p50=t.latency_ms_p50),
        student=Scores(
            accuracy=s.accuracy, macro_f1=s.macro_f1, latency_ms_p50=s.latency_ms_p50,
            latency_ms_p99=s.latency_ms_p99, parameters=s.parameters, size_bytes=s.size_bytes,
        ),
        retention=summary.retention, gate_passed=gate_passed,
    )


def _with_history(old: list[HistoryEntry], ev: Evaluation, now: str) -> list[HistoryEntry]:
    if any(h.generation == ev.generation and h.version == ev.version for h in old):
        return list(old)
    entry = HistoryEntry(
        generation=ev.generation, version=ev.version, teacher_macro_f1=ev.teacher.macro_f1 or 0.0,
        student_macro_f1=ev.student.macro_f1 or 0.0, retention=ev.retention, gate_passed=ev.gate_passed,
        finished_at=now,
    )
    return (list(old) + [entry])[-HISTORY_LENGTH:]


def next_status(
    old: DistilledModelStatus,
    *,
    generation: int,
    job_name: str,
    job: JobOutcome,
    summary: Summary | None = None,
    summary_error: tuple[str, str] | None = None,
    gate: GateSpec,
    progress: Progress | None = None,
    rollout: RolloutState | None = None,
    now: str | None = None,
    run_generation: int | None = None,
    extra_conditions: tuple[tuple[str, str, str, str], ...] = (),
    problems: tuple[PodProblem, ...] = (),
) -> DistilledModelStatus:
    """The next status from the observed world. Pure and idempotent: same inputs, same output
    (condition times move only when a condition's status changes).

    ``problems``: what :func:`views.pod_problems` found wrong with the pods of the current run
    (components distill, label), the classifier and the teacher. The phase does not change for
    them (a Job that cannot schedule is still Pending), the messages say why."""
    now = now or rfc3339()
    g = generation
    rg = run_generation or generation  # the spec generation the run distils (older after a rollout-only change)
    serving = rollout.version if rollout is not None else None
    evaluation = old.evaluation
    history = list(old.history)
    gate_ok: bool | None = None
    gate_msg = ""

    if job.phase == "Succeeded" and summary is not None:
        gate_ok, gate_msg = gate_decision(summary, gate.min_macro_f1, gate.min_retention)
        evaluation = evaluation_from(summary, rg, gate_ok)
        history = _with_history(history, evaluation, now)

    if progress is not None and progress.generation == rg:
        new_progress: Progress | None = progress
    elif old.progress is not None and old.progress.generation == rg:
        new_progress = old.progress
    else:
        new_progress = None

    job_problems = [p for p in problems if p.component in ("distill", "label")]
    job_why = f": {job_problems[0].describe()}" + (f" (and {len(job_problems) - 1} more pods)"
                                                      if len(job_problems) > 1 else "") if job_problems else ""

    # Distilled
    if job.phase in ("Missing", "Pending"):
        distilled = (DISTILLED, "Unknown", job_problems[0].reason if job_problems else "JobPending",
                     f"Job {job_name} is waiting to start{job_why}")
    elif job.phase == "Running":
        doing = f" ({job.message})" if job.message else ""
        distilled = (DISTILLED, "Unknown", job_problems[0].reason if job_problems else (job.reason or "JobRunning"),
                     f"Job {job_name} is running{doing}{job_why}")
    elif job.phase == "Failed":
        reason, msg = job.reason or "JobFailed", job.message or f"Job {job_name} failed"
        if job_problems and reason in GENERIC_JOB_FAILURES:  # the pod problem is the real reason
            reason, msg = job_problems[0].reason, f"{msg}{job_why}"
        distilled = (DISTILLED, "False", reason, msg)
    elif summary is None:
        reason, msg = summary_error or ("SummaryMissing", "the Job succeeded without a summary")
        distilled = (DISTILLED, "False", reason, f"Job {job_name}: {msg}")
    else:
        distilled = (DISTILLED, "True", "Succeeded", f"version {summary.version} (sha256 {summary.sha256[:12]})")

    # GatePassed (only a finished evaluation of this generation changes it)
    if gate_ok is None:
        prev = old.condition(GATE_PASSED)
        if prev is not None and prev.observed_generation != g and job.phase in ("Missing", "Pending", "Running"):
            gate_c = (GATE_PASSED, "Unknown", "Evaluating", f"generation {g} is not evaluated yet")
        elif job.phase in ("Failed", "Succeeded"):
            gate_c = (GATE_PASSED, "Unknown", "NotEvaluated", "no summary to evaluate")
        elif prev is not None:
            gate_c = (GATE_PASSED, prev.status, prev.reason, prev.message)
        else:
            gate_c = (GATE_PASSED, "Unknown", "Evaluating", f"generation {g} is not evaluated yet")
    elif gate_ok:
        gate_c = (GATE_PASSED, "True", "ThresholdsMet", gate_msg)
    else:
        gate_c = (GATE_PASSED, "False", "BelowThreshold", gate_msg)

    # RolledOut (about whatever version serves)
    classifier_problems = [p for p in problems if p.component == "classifier"]
    if rollout is None:
        rolled = (ROLLED_OUT, "Unknown", "NotDeployed", "no version has passed the gate yet")
    elif rollout.complete:
        rolled = (ROLLED_OUT, "True", "AllNodesUpdated", rollout.describe())
    elif rollout.desired == 0 and rollout.current:
        rolled = (ROLLED_OUT, "False", "NoMatchingNodes", rollout.describe())
    else:
        rolled = (ROLLED_OUT, "False", classifier_problems[0].reason if classifier_problems else "RollingUpdate",
                  rollout.describe())

    # Phase
    failed_now = job.phase == "Failed" or (job.phase == "Succeeded" and (summary is None or gate_ok is False))
    if job.phase in ("Missing", "Pending"):
        phase, message = "Pending", distilled[3]
    elif job.phase == "Running":
        phase, message = "Distilling", distilled[3]
    elif failed_now:
        why = gate_c[3] if gate_ok is False else distilled[3]
        if serving:
            phase, message = "Degraded", f"{why}; still serving version {serving}"
        else:
            phase, message = "Failed", why
    elif rollout is not None and summary is not None and rollout.version == summary.version and rollout.complete:
        phase, message = "Ready", rolled[3]
    else:
        phase = "RollingOut"
        message = rolled[3] if rollout is not None and summary is not None and rollout.version == summary.version \
            else f"rolling out version {summary.version if summary else '?'}"

    ready = (READY, "True" if phase == "Ready" else "False", phase, message)
    pods_c = pods_condition(problems)
    conditions = [_cond(old, *c, g, now) for c in (distilled, gate_c, rolled, ready, pods_c, *extra_conditions)]
    return old.model_copy(update=dict(
        phase=phase, message=message[:2048], observed_generation=g, job=job_name, conditions=conditions,
        progress=new_progress, evaluation=evaluation,
        serving_version=serving,
        serving_generation=rollout.generation if rollout is not None else None,
        serving_artifact=rollout.artifact if rollout is not None else None,
        history=history, pod_problems=problem_records(old, problems, now),
    ))


def pods_condition(problems: tuple[PodProblem, ...]) -> tuple[str, str, str, str]:
    """PodsHealthy: True, or False with the first problem's reason and every problem counted."""
    if not problems:
        return PODS_HEALTHY, "True", "NoProblems", "no pod of this model is stuck or failing"
    first = problems[0]
    more = f" (and {len(problems) - 1} more pods; see status.podProblems)" if len(problems) > 1 else ""
    return PODS_HEALTHY, "False", first.reason, f"{first.describe()}{more}"


def problem_records(old: DistilledModelStatus, problems: tuple[PodProblem, ...], now: str) -> list[PodProblemStatus]:
    """status.podProblems: the first :data:`MAX_PROBLEMS`, each keeping when it was first seen."""
    seen = {p.key: p.since for p in old.pod_problems}
    return [PodProblemStatus(pod=p.ref, component=p.component, container=p.container, node=p.node, reason=p.reason,
                             message=p.message[:1024], since=seen.get(p.key, now))
            for p in problems[:MAX_PROBLEMS]]


def invalid_spec_status(old: DistilledModelStatus, generation: int, message: str,
                        now: str | None = None, reason: str = "InvalidSpec") -> DistilledModelStatus:
    """A spec the operator cannot use: the API server let it through, and pydantic (``InvalidSpec``) or the
    admission policy (``PolicyViolation``) did not; or (``ForeignChild``) a child name taken by an object
    the CR does not own. What serves keeps serving (Degraded)."""
    now = now or rfc3339()
    phase = "Degraded" if old.serving_version else "Failed"
    conds = [
        _cond(old, DISTILLED, "False", reason, message, generation, now),
        _cond(old, READY, "False", phase, message, generation, now),
    ]
    keep = [c for c in old.conditions if c.type not in (DISTILLED, READY)]
    return old.model_copy(update={
        "phase": phase, "message": message[:2048], "observed_generation": generation, "conditions": conds + keep,
    })


def transitions(old: DistilledModelStatus, new: DistilledModelStatus) -> list[Transition]:
    """Events to post for a status change: the phase, and each condition whose status changed."""
    events: list[Transition] = []
    if old.phase != new.phase or old.observed_generation != new.observed_generation and new.phase != old.phase:
        warn = new.phase in ("Failed", "Degraded")
        events.append(Transition(warn, f"Phase{new.phase}", new.message or new.phase))
    for cond in new.conditions:
        prev = old.condition(cond.type)
        if cond.type == READY or (prev is not None and prev.status == cond.status and prev.reason == cond.reason):
            continue
        if prev is not None and prev.status == cond.status and (cond.reason in REASONS or prev.reason in REASONS):
            continue  # only the pod problem behind it changed: the problem's own Event says that
        if cond.type == PODS_HEALTHY:  # a problem has its own Event (below); say when the last one cleared
            if cond.status == "True" and prev is not None and prev.status == "False":
                events.append(Transition(False, "PodsHealthy", "every pod problem cleared"))
            continue
        if prev is None and cond.status == "Unknown":
            continue
        warn = cond.status == "False" and cond.type != ROLLED_OUT
        events.append(Transition(warn, f"{cond.type}{cond.status}" if cond.status != "Unknown" else cond.reason,
                                 cond.message or cond.reason))
    # One Warning per new pod problem (not per resync: the previous status remembers the known ones).
    for p in new_problems(old, new):
        where = ", ".join(x for x in (f"container {p.container}" if p.container else "",
                                      f"node {p.node}" if p.node else "") if x)
        events.append(Transition(True, f"Pod{p.reason}", f"pod {p.pod}{f' ({where})' if where else ''}: {p.message}"))
    return events


def new_problems(old: DistilledModelStatus, new: DistilledModelStatus) -> list[PodProblemStatus]:
    """Pod problems in ``new`` the previous status did not know (by :attr:`PodProblemStatus.key`)."""
    known = {p.key for p in old.pod_problems}
    return [p for p in new.pod_problems if p.key not in known]


def same_status(a: DistilledModelStatus, b: DistilledModelStatus) -> bool:
    """Equal apart from nothing: used to skip no-op patches (which would wake watchers)."""
    return a.to_status() == b.to_status()
