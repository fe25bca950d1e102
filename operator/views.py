"""Typed, read-only views of the objects the operator observes, and what is wrong with its pods.

The kubernetes client hands back plain camelCase dicts (``Context.plain``); every ``.get(...) or
{}`` chain lives here, once, behind frozen dataclasses: :class:`PodView` (phase, node, conditions,
init and main container states), :class:`JobView`, :class:`DaemonSetView`,
:class:`DeploymentView` and :class:`EventView`.

:func:`pod_problems` classifies the operator's pods into a closed set of reasons
(:data:`REASONS`) the way ``kubectl describe pod`` readers would: the scheduler's Unschedulable
message, image pull errors, crash loops, OOM kills, a missing Secret/ConfigMap, a volume that will
not mount (from the pod's Warning events), a readiness probe that keeps failing, a pod pending for
too long. Pure: data in, data out, the clock passed in; no API calls and no imports from the rest
of the operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Literal, Mapping

from logdistill.operator.names import COMPONENT_LABEL

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"

# The closed set of pod problems (a metrics label; add a reason here, never a free string).
Reason = Literal[
    "Unschedulable", "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
    "CrashLoopBackOff", "OOMKilled", "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
    "FailedMount", "ContainerWaiting", "NotReady", "PendingTooLong",
]
REASONS: tuple[str, ...] = Reason.__args__  # type: ignore[attr-defined]
# Waiting reasons reported as themselves; any other non-benign one is ContainerWaiting.
_WAITING_AS_IS = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CrashLoopBackOff",
                  "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
# Waiting reasons of a container on its way up: not a problem by themselves.
_BENIGN_WAITING = {"ContainerCreating", "PodInitializing", ""}
# Pod events whose reason means a volume will not mount or attach.
_MOUNT_EVENTS = {"FailedMount", "FailedAttachVolume", "FailedMapVolume"}
# The scheduler's own events: the PodScheduled condition already says it (and they outlive it).
_SCHEDULER_EVENTS = {"FailedScheduling"}
# Reasons that flap into each other while the same thing is wrong (the kubelet alternates
# ErrImagePull and ImagePullBackOff; a crash loop is briefly Running between restarts): one
# problem, one Event.
FAMILY = {"ErrImagePull": "ImagePull", "ImagePullBackOff": "ImagePull", "CrashLoopBackOff": "Crash",
          "RunContainerError": "Crash", "OOMKilled": "Crash"}

DEFAULT_PENDING_DEADLINE_S = 300.0
# How long a scheduled pod may sit in ContainerCreating before its Warning events are read (and
# reported), and how long a running container may stay unready before that is a problem.
CREATING_GRACE_S = 5.0
NOT_READY_GRACE_S = 60.0
# A restarted container counts as crash-looping while its last exit is this recent.
CRASH_WINDOW_S = 600.0


def parse_time(text: Any) -> datetime | None:
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=timezone.utc)
    if not text:
        return None
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _d(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class OwnerRef:
    """One entry of an object's ``metadata.ownerReferences``."""

    kind: str
    name: str
    uid: str


def owner_refs(raw: Mapping) -> list[OwnerRef]:
    """The owner references of any object (a plain dict)."""
    return [OwnerRef(kind=str(r.get("kind") or ""), name=str(r.get("name") or ""), uid=str(r.get("uid") or ""))
            for r in _d(_d(raw).get("metadata")).get("ownerReferences") or [] if isinstance(r, Mapping)]


@dataclass(frozen=True)
class Condition:
    """A condition of a Pod or a Job."""

    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition: datetime | None = None

    @classmethod
    def parse(cls, raw: Any) -> "Condition":
        raw = _d(raw)
        return cls(type=str(raw.get("type") or ""), status=str(raw.get("status") or "Unknown"),
                   reason=str(raw.get("reason") or ""), message=str(raw.get("message") or ""),
                   last_transition=parse_time(raw.get("lastTransitionTime")))

    @property
    def true(self) -> bool:
        return self.status == "True"


def _conditions(raw: Any) -> tuple[Condition, ...]:
    return tuple(Condition.parse(c) for c in raw or [] if isinstance(c, Mapping))


@dataclass(frozen=True)
class Terminated:
    """A container's (last) termination."""

    reason: str
    exit_code: int | None
    message: str
    finished: datetime | None

    @classmethod
    def parse(cls, raw: Any) -> "Terminated | None":
        if not isinstance(raw, Mapping):
            return None
        code = raw.get("exitCode")
        return cls(reason=str(raw.get("reason") or ""), exit_code=None if code is None else _int(code),
                   message=str(raw.get("message") or ""), finished=parse_time(raw.get("finishedAt")))

    def describe(self) -> str:
        what = self.reason or "terminated"
        return f"{what} (exit code {self.exit_code})" if self.exit_code is not None else what


@dataclass(frozen=True)
class ContainerView:
    """One entry of a pod's ``initContainerStatuses`` or ``containerStatuses``."""

    name: str
    init: bool = False
    ready: bool = False
    started: bool | None = None
    restart_count: int = 0
    running_since: datetime | None = None
    waiting_reason: str | None = None  # None: not waiting
    waiting_message: str = ""
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None

    @classmethod
    def parse(cls, raw: Any, init: bool = False) -> "ContainerView":
        raw = _d(raw)
        state, last = _d(raw.get("state")), _d(raw.get("lastState"))
        waiting = state.get("waiting")
        running = state.get("running")
        return cls(
            name=str(raw.get("name") or ""), init=init, ready=bool(raw.get("ready")),
            started=raw.get("started"), restart_count=_int(raw.get("restartCount")),
            running_since=parse_time(_d(running).get("startedAt")) if isinstance(running, Mapping) else None,
            waiting_reason=str(_d(waiting).get("reason") or "") if isinstance(waiting, Mapping) else None,
            waiting_message=str(_d(waiting).get("message") or ""),
            terminated=Terminated.parse(state.get("terminated")),
            last_terminated=Terminated.parse(last.get("terminated")),
        )

    @property
    def running(self) -> bool:
        return self.waiting_reason is None and self.terminated is None and self.running_since is not None


@dataclass(frozen=True)
class PodView:
    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    created: datetime | None = None
    deleting: bool = False
    phase: str = "Pending"
    reason: str = ""  # e.g. Evicted, DeadlineExceeded
    message: str = ""
    node: str | None = None
    conditions: tuple[Condition, ...] = ()
    init_containers: tuple[ContainerView, ...] = ()
    containers: tuple[ContainerView, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping) -> "PodView":
        meta, spec, status = _d(raw.get("metadata")), _d(raw.get("spec")), _d(raw.get("status"))
        return cls(
            namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""), uid=str(meta.get("uid") or ""),
            labels=dict(_d(meta.get("labels"))), annotations=dict(_d(meta.get("annotations"))),
            created=parse_time(meta.get("creationTimestamp")), deleting=bool(meta.get("deletionTimestamp")),
            phase=str(status.get("phase") or "Pending"), reason=str(status.get("reason") or ""),
            message=str(status.get("message") or ""), node=spec.get("nodeName") or None,
            conditions=_conditions(status.get("conditions")),
            init_containers=tuple(ContainerView.parse(c, init=True) for c in status.get("initContainerStatuses") or []),
            containers=tuple(ContainerView.parse(c) for c in status.get("containerStatuses") or []),
        )

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def component(self) -> str:
        return self.labels.get(COMPONENT_LABEL, "")

    @property
    def completion_index(self) -> str | None:
        return self.annotations.get(COMPLETION_INDEX) or self.labels.get(COMPLETION_INDEX)

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    def container(self, name: str) -> ContainerView | None:
        return next((c for c in (*self.containers, *self.init_containers) if c.name == name), None)

    @property
    def ready(self) -> bool:
        cond = self.condition("Ready")
        return cond is not None and cond.true

    @property
    def progressing(self) -> bool:
        """Some container runs or has run: a Pending pod working through its init containers (a
        teacher trained in an init container takes long) is not stuck."""
        return any(c.running or c.terminated is not None for c in (*self.init_containers, *self.containers))

    @property
    def unschedulable(self) -> Condition | None:
        cond = self.condition("PodScheduled")
        return cond if cond is not None and cond.status == "False" and cond.reason == "Unschedulable" else None


@dataclass(frozen=True)
class JobView:
    namespace: str
    name: str
    conditions: tuple[Condition, ...] = ()
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    start_time: datetime | None = None

    @classmethod
    def parse(cls, raw: Mapping) -> "JobView":
        meta, status = _d(raw.get("metadata")), _d(raw.get("status"))
        return cls(namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
                   conditions=_conditions(status.get("conditions")), active=_int(status.get("active")),
                   succeeded=_int(status.get("succeeded")), failed=_int(status.get("failed")),
                   start_time=parse_time(status.get("startTime")))

    def condition(self, kind: str) -> Condition | None:
        """The condition of that type if it holds (status True)."""
        return next((c for c in self.conditions if c.type == kind and c.true), None)

    @property
    def complete(self) -> bool:
        return self.condition("Complete") is not None

    @property
    def failed_condition(self) -> Condition | None:
        return self.condition("Failed")

    @property
    def suspended(self) -> bool:
        return self.condition("Suspended") is not None

    @property
    def finished(self) -> bool:
        return self.complete or self.failed_condition is not None


@dataclass(frozen=True)
class DaemonSetView:
    namespace: str
    name: str
    generation: int = 0
    observed_generation: int = 0
    desired: int = 0
    current: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0
    node_selector: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping) -> "DaemonSetView":
        meta, spec, status = _d(raw.get("metadata")), _d(raw.get("spec")), _d(raw.get("status"))
        pod_spec = _d(_d(spec.get("template")).get("spec"))
        return cls(namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
                   generation=_int(meta.get("generation")), observed_generation=_int(status.get("observedGeneration")),
                   desired=_int(status.get("desiredNumberScheduled")), current=_int(status.get("currentNumberScheduled")),
                   updated=_int(status.get("updatedNumberScheduled")), ready=_int(status.get("numberReady")),
                   available=_int(status.get("numberAvailable")), node_selector=dict(_d(pod_spec.get("nodeSelector"))))

    @property
    def observed(self) -> bool:
        """The DaemonSet controller has seen the latest template."""
        return self.observed_generation >= self.generation


@dataclass(frozen=True)
class DeploymentView:
    namespace: str
    name: str
    generation: int = 0
    observed_generation: int = 0
    replicas: int = 0  # spec.replicas (desired)
    updated: int = 0
    ready: int = 0
    available: int = 0

    @classmethod
    def parse(cls, raw: Mapping) -> "DeploymentView":
        meta, spec, status = _d(raw.get("metadata")), _d(raw.get("spec")), _d(raw.get("status"))
        return cls(namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
                   generation=_int(meta.get("generation")), observed_generation=_int(status.get("observedGeneration")),
                   replicas=_int(spec.get("replicas"), 1), updated=_int(status.get("updatedReplicas")),
                   ready=_int(status.get("readyReplicas")), available=_int(status.get("availableReplicas")))


@dataclass(frozen=True)
class EventView:
    """A core/v1 Event about one object."""

    type: str
    reason: str
    message: str
    last: datetime | None
    count: int = 1

    @classmethod
    def parse(cls, raw: Mapping) -> "EventView":
        series = _d(raw.get("series"))
        last = (parse_time(series.get("lastObservedTime")) or parse_time(raw.get("lastTimestamp"))
                or parse_time(raw.get("eventTime")) or parse_time(_d(raw.get("metadata")).get("creationTimestamp")))
        return cls(type=str(raw.get("type") or ""), reason=str(raw.get("reason") or ""),
                   message=str(raw.get("message") or "").strip(), last=last,
                   count=_int(series.get("count") or raw.get("count"), 1))


def latest_warning(events: Iterable[EventView], reasons: set[str] | None = None) -> EventView | None:
    """The most recent Warning event (of these reasons)."""
    warnings = [e for e in events if e.type == "Warning" and e.reason not in _SCHEDULER_EVENTS
                and (reasons is None or e.reason in reasons)]
    return max(warnings, key=lambda e: e.last or datetime.min.replace(tzinfo=timezone.utc), default=None)


# --- pod problems -----------------------------------------------------------------------------

@dataclass(frozen=True)
class PodProblem:
    """What is wrong with one pod: the first thing a human should fix."""

    namespace: str
    pod: str
    component: str  # distill, label, classifier, teacher
    reason: Reason
    message: str
    container: str | None = None
    node: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.pod}"

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity for deduplication: flapping reasons of one container are one problem."""
        return (self.ref, self.container or "", FAMILY.get(self.reason, self.reason))

    def describe(self) -> str:
        """``pod ns/p (container c, node n): Reason: message`` - what status.message and Events say."""
        where = ", ".join(x for x in (f"container {self.container}" if self.container else "",
                                      f"node {self.node}" if self.node else "") if x)
        return f"pod {self.ref}{f' ({where})' if where else ''}: {self.reason}: {self.message}"


@dataclass(frozen=True)
class PodHealth:
    """:func:`pod_problems`' answer: the problems, and when a pod may turn into one with no event
    to announce it (a deadline passing, a grace for reading events): look again then."""

    problems: tuple[PodProblem, ...] = ()
    recheck_in: float | None = None

    def of(self, *components: str) -> tuple[PodProblem, ...]:
        return tuple(p for p in self.problems if p.component in components)


def needs_events(pod: PodView, now: datetime, creating_grace: float = CREATING_GRACE_S) -> bool:
    """Whether the pod's Warning events are worth one API call: it is scheduled and stuck in
    ContainerCreating past the grace (a volume that does not mount leaves no trace in the pod
    status), or it runs but is not ready (a failing readiness probe)."""
    if pod.deleting or pod.phase in ("Succeeded", "Failed") or pod.node is None:
        return False
    if pod.phase == "Pending":
        scheduled = pod.condition("PodScheduled")
        since = (scheduled.last_transition if scheduled is not None else None) or pod.created
        creating = all(c.waiting_reason in _BENIGN_WAITING for c in (*pod.init_containers, *pod.containers))
        return creating and since is not None and (now - since).total_seconds() >= creating_grace
    return pod.phase == "Running" and any(not c.ready and c.running for c in pod.containers)


def _container_problem(pod: PodView, c: ContainerView, now: datetime, crash_window: float) -> tuple[str, str] | None:
    last = c.last_terminated
    if c.waiting_reason is not None and c.waiting_reason not in _BENIGN_WAITING:
        reason = c.waiting_reason
        if reason == "CrashLoopBackOff":
            if last is not None and last.reason == "OOMKilled":
                return "OOMKilled", f"{last.describe()}, restarted {c.restart_count} times; {c.waiting_message}".strip()
            detail = f"last exit {last.describe()}" if last is not None else "last exit unknown"
            msg = f"{detail}, restarted {c.restart_count} times"
            if last is not None and last.message:
                msg += f": {last.message.strip()[:300]}"
            return "CrashLoopBackOff", msg
        if reason in _WAITING_AS_IS:
            return reason, c.waiting_message or reason
        return "ContainerWaiting", f"{reason}: {c.waiting_message}" if c.waiting_message else reason
    term = c.terminated
    if term is not None and term.reason == "OOMKilled":
        return "OOMKilled", f"{term.describe()}; raise its memory limit"
    if term is not None and term.exit_code not in (None, 0) and pod.phase not in ("Succeeded", "Failed") \
            and c.restart_count > 0:
        return "CrashLoopBackOff", f"exited {term.describe()}, restarted {c.restart_count} times"
    # Between two restarts of a crash loop the container runs unready for a moment: still the loop.
    if c.running and not c.ready and c.restart_count > 0 and last is not None and last.exit_code not in (None, 0) \
            and last.finished is not None and (now - last.finished).total_seconds() < crash_window:
        reason = "OOMKilled" if last.reason == "OOMKilled" else "CrashLoopBackOff"
        return reason, f"last exit {last.describe()}, restarted {c.restart_count} times"
    return None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def pod_problem(pod: PodView, now: datetime, pending_deadline: float = DEFAULT_PENDING_DEADLINE_S,
                events: Iterable[EventView] = (), *, not_ready_grace: float = NOT_READY_GRACE_S,
                crash_window: float = CRASH_WINDOW_S) -> PodProblem | None:
    """The one problem of a pod worth reporting (the most specific first), or None."""
    if pod.deleting or pod.phase == "Succeeded":
        return None

    def problem(reason: str, message: str, container: str | None = None) -> PodProblem:
        return PodProblem(namespace=pod.namespace, pod=pod.name, component=pod.component, reason=reason,  # type: ignore[arg-type]
                          message=" ".join(message.split())[:600], container=container, node=pod.node)

    unschedulable = pod.unschedulable
    if unschedulable is not None:
        return problem("Unschedulable", unschedulable.message or "no node fits the pod")
    for c in (*pod.init_containers, *pod.containers):  # init containers first: they block the rest
        found = _container_problem(pod, c, now, crash_window)
        if found is not None:
            return problem(found[0], found[1], c.name)
    if pod.phase == "Failed":
        return None  # a plain failure: the Job reports it (JobOutcome), the controller replaces it
    events = list(events)
    age = (now - pod.created).total_seconds() if pod.created is not None else 0.0
    if pod.phase == "Pending" and not pod.progressing:
        mount = latest_warning(events, _MOUNT_EVENTS)
        if mount is not None:
            return problem("FailedMount", f"{mount.reason}: {mount.message}")
        other = latest_warning(events)
        if other is not None and age >= pending_deadline:
            return problem("PendingTooLong", f"pending for {_duration(age)}; last warning {other.reason}: {other.message}")
        if other is not None:
            return problem("ContainerWaiting", f"{other.reason}: {other.message}")
        if age >= pending_deadline:
            waiting = sorted({c.waiting_reason for c in (*pod.init_containers, *pod.containers) if c.waiting_reason})
            return problem("PendingTooLong", f"pending for {_duration(age)}"
                           + (f" (containers {', '.join(waiting)})" if waiting else "")
                           + ("" if pod.node else ", not scheduled yet"))
        return None
    if pod.phase == "Running":
        ready = pod.condition("Ready")
        since = ready.last_transition if ready is not None and ready.last_transition else pod.created
        unready = [c for c in pod.containers if not c.ready and c.running]
        if unready and not pod.ready and since is not None and (now - since).total_seconds() >= not_ready_grace:
            probe = latest_warning(events, {"Unhealthy"})
            why = probe.message if probe is not None else "readiness probe not passing"
            return problem("NotReady", f"not ready for {_duration((now - since).total_seconds())}: {why}",
                           unready[0].name)
    return None


def pod_problems(pods: Iterable[PodView], now: datetime, pending_deadline: float = DEFAULT_PENDING_DEADLINE_S,
                 events: Mapping[str, Iterable[EventView]] | None = None, *,
                 creating_grace: float = CREATING_GRACE_S, not_ready_grace: float = NOT_READY_GRACE_S) -> PodHealth:
    """Every pod's problem (``events``: Warning events by pod name, for the pods
    :func:`needs_events` picked), sorted by pod, and the soonest deadline still ahead."""
    events = events or {}
    found: list[PodProblem] = []
    ahead: list[float] = []
    for pod in pods:
        p = pod_problem(pod, now, pending_deadline, events.get(pod.name, ()), not_ready_grace=not_ready_grace)
        if p is not None:
            found.append(p)
            continue
        if pod.deleting or pod.phase not in ("Pending", "Running"):
            continue
        age = (now - pod.created).total_seconds() if pod.created is not None else 0.0
        if pod.phase == "Pending" and not pod.progressing:
            ahead.append(pending_deadline - age)
            scheduled = pod.condition("PodScheduled")
            if pod.node is not None and scheduled is not None and scheduled.last_transition is not None:
                ahead.append(creating_grace - (now - scheduled.last_transition).total_seconds())
        elif not pod.ready:
            ready = pod.condition("Ready")
            since = ready.last_transition if ready is not None and ready.last_transition else pod.created
            if since is not None:
                ahead.append(not_ready_grace - (now - since).total_seconds())
    ahead = [a for a in ahead if a > 0]
    found.sort(key=lambda p: (p.component, p.namespace, p.pod))
    return PodHealth(tuple(found), min(ahead) + 0.5 if ahead else None)
