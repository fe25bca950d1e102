"""What the operator observed, reduced to what :func:`status.next_status` needs.

The Job and its pods become a :class:`status.JobOutcome` (with the summary or the reason it
failed), the classifier DaemonSet and its pods a :class:`status.RolloutState`, and every pod of
the model a :class:`views.PodHealth`. Everything here reads typed views (:mod:`views`), never raw
dicts; the only API access is :func:`pod_events`, through a callable the handlers pass in.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Callable, Iterable, Mapping

from logdistill import contracts
from logdistill.operator.loop import rfc3339
from logdistill.operator.manifests import daemonset
from logdistill.operator.status import DistilledModelStatus, JobOutcome, Progress, RolloutState
from logdistill.operator.summary import JobReportedError, Summary, SummaryError, parse_summary
from logdistill.operator.views import (
    DaemonSetView,
    EventView,
    JobView,
    PodHealth,
    PodProblem,
    PodView,
    latest_warning,
    needs_events,
)

log = logging.getLogger("logdistill.operator")
DISTILL_CONTAINER = "distill"
# Warning-event look-ups per reconcile (one list call each): a DaemonSet on a thousand broken
# nodes must not turn every reconcile into a thousand calls.
MAX_EVENT_LOOKUPS = 5
# Pods named in the RolledOut message.
MAX_UNREADY_LISTED = 5


def observe_job(job: JobView | None, pods: list[PodView], generation: int, old: DistilledModelStatus):
    """(JobOutcome, Summary | None, (reason, message) | None, Progress | None) of the current Job."""
    if job is None:
        ev = old.evaluation
        if old.observed_generation == generation and ev is not None and ev.generation == generation:
            # The Job was deleted after it was evaluated: the status remembers the result.
            return JobOutcome("Succeeded"), summary_from_status(old), None, None
        if old.job and old.observed_generation == generation:
            return JobOutcome("Failed", "JobDeleted", "the Job was deleted before it finished"), None, None, None
        return JobOutcome("Missing"), None, None, None
    # An Indexed (distributed) Job: rank 0 = completion index 0 evaluates, reports and publishes progress.
    rank0 = [p for p in pods if p.completion_index in (None, "0")]
    progress = progress_of(rank0, generation)
    if job.complete:
        succeeded = [p for p in rank0 if p.phase == "Succeeded"]
        if not succeeded:
            missing = ("SummaryMissing", "no succeeded pod found to read the summary from")
            return JobOutcome("Succeeded"), None, missing, progress
        try:
            return JobOutcome("Succeeded"), parse_summary(termination_message(succeeded[-1])), None, progress
        except SummaryError as err:
            return JobOutcome("Succeeded"), None, (err.reason, str(err)), progress
    failed_cond = job.failed_condition
    if failed_cond is not None:
        reason, message = failed_cond.reason or "JobFailed", failed_cond.message or "the Job failed"
        failed = [p for p in pods if p.phase == "Failed"]
        if failed:
            pod_reason, pod_message = pod_failure(failed[-1])
            message = f"{message}; pod {failed[-1].name}: {pod_message}"
            reason = pod_reason or reason
        return JobOutcome("Failed", reason, message), None, None, progress
    running = any(p.phase == "Running" for p in pods)
    if not running:
        # A pod whose init container runs is working, not waiting: the teacher stage trains there.
        stage = next(((p, c) for p in pods for c in p.init_containers if c.running_since is not None), None)
        if stage is not None:
            pod, container = stage
            return (JobOutcome("Running", f"InitContainer{container.name.title().replace('-', '')}",
                               f"pod {pod.name}: init container {container.name} running since "
                               f"{rfc3339(container.running_since)}"), None, None, progress)
    return JobOutcome("Running" if running else "Pending"), None, None, progress


def summary_from_status(old: DistilledModelStatus) -> Summary:
    ev = old.evaluation
    return Summary.model_validate({
        "version": ev.version, "sha256": ev.sha256, "artifact": ev.artifact, "retention": ev.retention,
        "gatePassed": ev.gate_passed,
        "teacher": ev.teacher.model_dump(by_alias=True, exclude_none=True),
        "student": ev.student.model_dump(by_alias=True, exclude_none=True),
    })


def termination_message(pod: PodView) -> str | None:
    c = pod.container(DISTILL_CONTAINER)
    return c.terminated.message if c is not None and c.terminated is not None else None


def pod_failure(pod: PodView) -> tuple[str, str]:
    """(reason, message) of a failed distillation pod: the engine's error if it wrote one, else
    OOMKilled or PodFailed with the kubelet's reason and exit code."""
    c = pod.container(DISTILL_CONTAINER)
    if c is None or c.terminated is None:  # it never ran: an init container (storage, teacher) failed
        c = next((i for i in pod.init_containers if i.terminated is not None and i.terminated.exit_code != 0), c)
    term = c.terminated if c is not None else None
    try:
        parse_summary(term.message if term is not None else None)
    except JobReportedError as err:
        return err.reason, str(err)
    except SummaryError:
        pass
    if term is not None and term.reason == "OOMKilled":
        return "OOMKilled", f"{term.describe()}: the {c.name} container went over its memory limit " \
                            "(spec.job.resources)"
    reason = (term.reason if term is not None else "") or pod.reason or "PodFailed"
    if c is not None and c.init and term is not None:
        reason = f"init container {c.name}: {reason}"
    if term is not None and term.exit_code is not None:
        detail = f"exit code {term.exit_code}"
    else:
        detail = pod.message or "failed"
    return "PodFailed", f"{reason}, {detail}"


def working_container(pods: list[PodView]) -> tuple[str, str] | None:
    """(pod, container) whose log carries the Job's progress lines now: rank 0's running container, an
    init container (the teacher stage) included; None when nothing runs."""
    for pod in reversed([p for p in pods if p.completion_index in (None, "0")]):
        for container in (*pod.init_containers, *pod.containers):
            if container.running_since is not None:
                return pod.name, container.name
    return None


def progress_of(pods: list[PodView], generation: int) -> Progress | None:
    for pod in reversed(pods):
        raw = pod.annotations.get(contracts.PROGRESS_ANNOTATION)
        if raw:
            return parse_progress(raw, generation, f"progress annotation on pod {pod.name}")
    return None


def parse_progress(raw: str, generation: int, where: str) -> Progress | None:
    """A published progress body (annotation or log line) as the status's :class:`Progress` of ``generation``."""
    try:
        data = json.loads(raw)
        return Progress.model_validate({**data, "generation": generation})
    except (ValueError, TypeError):
        log.warning("ignoring unreadable %s", where)
        return None


def pod_events(pods: Iterable[PodView], now: datetime,
               list_warnings: Callable[[str, str], list[dict]]) -> dict[str, list[EventView]]:
    """Warning events of the pods :func:`views.needs_events` picks (at most
    :data:`MAX_EVENT_LOOKUPS`), by pod name; ``list_warnings(namespace, pod_name)`` lists them."""
    picked = [p for p in pods if needs_events(p, now)][:MAX_EVENT_LOOKUPS]
    return {p.name: [EventView.parse(e) for e in list_warnings(p.namespace, p.name)] for p in picked}


def _why_unready(pod: PodView, problem: PodProblem | None, events: Iterable[EventView]) -> str:
    if problem is not None:
        return f"{problem.reason}: {problem.message}"
    if pod.phase == "Pending":
        waiting = sorted({c.waiting_reason for c in (*pod.init_containers, *pod.containers) if c.waiting_reason})
        if pod.node is None:
            return "not scheduled yet"
        return f"pending ({', '.join(waiting)})" if waiting else "pending"
    probe = latest_warning(events, {"Unhealthy"})
    if probe is not None:
        return f"readiness probe failing: {probe.message}"
    return "starting (readiness probe not passed yet)"


def rollout_state(ds: dict | None, pods: Iterable[PodView] = (), health: PodHealth = PodHealth(),
                  events: Mapping[str, Iterable[EventView]] | None = None) -> RolloutState | None:
    """The classifier DaemonSet (its release, counts, node selector), with a line per classifier
    pod that is not ready saying why."""
    release = daemonset.release_of(ds)
    if ds is None or release is None:
        return None
    view = DaemonSetView.parse(ds)
    events = events or {}
    by_pod = {p.pod: p for p in health.of("classifier")}
    unready = sorted((p for p in pods if p.component == "classifier" and not p.ready and not p.deleting),
                     key=lambda p: (p.node or "", p.name))
    lines = [f"node {p.node or '?'}, pod {p.ref}: {_why_unready(p, by_pod.get(p.name), events.get(p.name, ()))}"
             for p in unready[:MAX_UNREADY_LISTED]]
    if len(unready) > MAX_UNREADY_LISTED:
        lines.append(f"{len(unready) - MAX_UNREADY_LISTED} more")
    return RolloutState(
        version=release.version, generation=release.generation, artifact=release.artifact,
        desired=view.desired, updated=view.updated, available=view.available, ready=view.ready,
        current=view.observed, node_selector=tuple(sorted(view.node_selector.items())), unready=tuple(lines),
    )
