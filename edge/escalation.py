"""Escalation of templates to the teacher service, off the log path.

The classifier answers every line at once and :meth:`EscalationClient.offer` s the lines the
teacher should see (new or low-confidence templates, and a uniform agreement sample) into a
bounded queue; ``offer`` never blocks and counts what a full queue drops. One worker thread
takes up to ``batch_size`` items, waits for a token of the requests-per-second limit, and
posts them to ``URL/v1/classify`` as ``{"lines": [...], "student": [...]}`` (``student``
holds the edge's verdict for agreement samples, ``null`` for the rest). Connection errors,
timeouts, 5xx and unreadable answers are retried with exponential backoff; after the last
try the batch is dropped and counted.

Nothing the teacher says is trusted: the answer is read up to ``max_answer_bytes`` within the
request's time, and checked by :mod:`logdistill.edge.teacher_policy` against the served model's
labels. A refused answer is counted by reason (``teacher_answers_rejected_total``), logged once
per reason and minute, and never reaches the cache. Accepted answers go to
``on_answer(items, answers, version)`` on the worker thread: :class:`TeacherAnswers` applies them
(cache, corrections, the downgrade policy, agreement).
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Any, Callable, Collection, NamedTuple, Sequence, TextIO

from logdistill.edge.agreement import AgreementWindow
from logdistill.edge.alerts import AlertWriter, alert_record
from logdistill.edge.expiring import ExpiringMap
from logdistill.edge.metrics import ESCALATION_RESULTS
from logdistill.edge.teacher_policy import (DEFAULT_MAX_ANSWER_BYTES, DEFAULT_TAUGHT_TTL_S, DOWNGRADE_ACTIONS,
                                            REJECTION_REASONS, Rejection, TeacherAnswer, check_downgrade_policy,
                                            downgrade_action, validate_results)
from logdistill.timefmt import rfc3339

__all__ = ["Escalation", "TeacherAnswer", "RateLimiter", "EscalationClient", "TeacherAnswers", "TeacherError",
           "RejectionLog", "read_bounded"]

log = logging.getLogger(__name__)


class Escalation(NamedTuple):
    template: str
    line: str
    student: str  # the student's own label
    score: float
    sample: bool  # a uniform agreement sample (else: a new or low-confidence template)
    context: Any = None  # the tailed record the line came from, if any


class TeacherError(Exception):
    """The teacher could not answer; ``retry`` says whether trying again may help. ``reason`` (one of
    :data:`~logdistill.edge.teacher_policy.REJECTION_REASONS`) when an answer came and was refused
    (or came too late), ``None`` when none came (refused connection, an HTTP error)."""

    def __init__(self, message: str, retry: bool = True, reason: str | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.reason = reason


class RateLimiter:
    """A token bucket: ``rate`` tokens a second, bursts up to ``max(1, rate)``."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"the escalation rate must be positive, not {rate}")
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()

    def delay(self) -> float:
        """Seconds until a token is free; takes it (returns 0) when one is."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


_READ_CHUNK = 64 * 1024


def read_bounded(response: Any, max_bytes: int, deadline: float, clock: Callable[[], float] = time.monotonic
                 ) -> bytes:
    """The body of ``response``, read in chunks: at most ``max_bytes`` (a declared or actual longer
    body is refused unread past that) and before ``deadline`` (a body trickled in slowly is cut)."""
    declared = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise TeacherError(f"the answer declares {int(declared)} bytes, over the {max_bytes}-byte limit",
                           reason="too_large")
    # read1: what one receive brings (read(n) would wait for all n bytes, however slowly they come).
    chunks, size = [], 0
    while True:
        chunk = response.read1(min(_READ_CHUNK, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise TeacherError(f"the answer is over the {max_bytes}-byte limit", reason="too_large")
        if clock() > deadline:
            raise TeacherError("the answer took longer than the request timeout", reason="timeout")


def _timed_out(err: BaseException) -> bool:
    return isinstance(err, TimeoutError) or isinstance(getattr(err, "reason", None), TimeoutError)


def post_json(url: str, payload: dict, timeout: float, max_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
              headers: dict[str, str] | None = None) -> Any:
    """POST ``payload`` (with ``headers``, e.g. ``Authorization``); the decoded JSON answer (at most
    ``max_bytes``, all of it within ``timeout``), or :class:`TeacherError`."""
    body = json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})},
                                     method="POST")
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = read_bounded(response, max_bytes, deadline)
    except urllib.error.HTTPError as err:
        raise TeacherError(f"HTTP {err.code}", retry=err.code >= 500 or err.code == 429) from None
    # Refused, reset, timed out, a bad URL, a broken HTTP response (bad chunk framing, status line).
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
        raise TeacherError(f"{type(err).__name__}: {getattr(err, 'reason', err)}",
                           reason="timeout" if _timed_out(err) else None) from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting too deep
        raise TeacherError(f"the answer is not JSON ({raw[:60]!r})", reason="not_json") from None


class RejectionLog:
    """Logs a refused teacher answer at most once per reason and ``window_s``, with the count since."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._next: dict[str, float] = {}
        self._since: dict[str, int] = dict.fromkeys(REJECTION_REASONS, 0)

    def __call__(self, reason: str, count: int, detail: str) -> None:
        self._since[reason] += count
        now = self._clock()
        if now < self._next.get(reason, now):
            return
        log.warning("refused %d teacher answer(s) (%s) since the last report; the latest: %s",
                    self._since[reason], reason, detail)
        self._since[reason] = 0
        self._next[reason] = now + self.window_s


class EscalationClient:
    """Bounded queue + batching worker + rate limit + retries + answer checks. Metrics are optional.

    ``labels`` gives the served model's label set (called per answer: a reload may change it);
    answers with other labels are refused."""

    def __init__(self, url: str, *, labels: Callable[[], Collection[str]], queue_size: int = 1000,
                 batch_size: int = 32, rps: float = 20.0, timeout: float = 5.0, retries: int = 3,
                 backoff: float = 0.2, max_backoff: float = 5.0, metrics: Any = None,
                 on_answer: Callable[[list[Escalation], list[TeacherAnswer], str], None] | None = None,
                 post: Callable[[str, dict, float], Any] | None = None,
                 max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url.rstrip("/") + "/v1/classify"
        self.queue_size = max(1, queue_size)
        self.batch_size = max(1, batch_size)
        self.timeout, self.retries = timeout, max(0, retries)
        self.backoff, self.max_backoff = backoff, max_backoff
        self.metrics = metrics
        self.on_answer = on_answer
        self.limiter = RateLimiter(rps, clock)
        self.labels = labels
        self._post = post or functools.partial(post_json, max_bytes=max_answer_bytes)
        self.rejected = dict.fromkeys(REJECTION_REASONS, 0)
        self._report_rejection = RejectionLog(clock=clock)
        self._queue: deque[Escalation] = deque()
        self._queued: set[str] = set()  # templates escalated and not answered or dropped yet
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts = dict.fromkeys(ESCALATION_RESULTS, 0)  # the metric's closed set of results

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, item: Escalation) -> bool:
        """Queue ``item`` unless its template is already queued or the queue is full. Never blocks."""
        with self._cond:
            if not item.sample:
                if item.template in self._queued:
                    return False
            if len(self._queue) >= self.queue_size:
                self._count("dropped_queue_full", 1)
                return False
            if not item.sample:
                self._queued.add(item.template)
            self._queue.append(item)
            self._cond.notify()
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="escalation", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def take(self, wait: float = 0.0) -> list[Escalation]:
        """Up to ``batch_size`` queued items (waiting at most ``wait`` s for the first)."""
        with self._cond:
            if not self._queue and wait > 0:
                self._cond.wait(wait)
            return [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]

    def deliver(self, batch: list[Escalation]) -> bool:
        """Send one batch with rate limit and retries; returns whether the teacher answered."""
        payload = {"lines": [item.line for item in batch],
                   "student": [item.student if item.sample else None for item in batch]}
        self._count("sent", len(batch))
        error: TeacherError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                if self._stop.wait(min(self.max_backoff, self.backoff * 2 ** (attempt - 1))):
                    break
            while (delay := self.limiter.delay()) > 0:
                if self._stop.wait(delay):
                    break
            if self._stop.is_set():
                break
            started = time.perf_counter()
            try:
                checked = validate_results(self._post(self.url, payload, self.timeout), len(batch), self.labels())
                if isinstance(checked, Rejection):
                    raise TeacherError(checked.detail, reason=checked.reason)
            except TeacherError as err:
                error = err
                if err.reason is not None:
                    self._reject(err.reason, len(batch), str(err))
                if not err.retry:
                    break
                continue
            finally:
                if self.metrics is not None:
                    self.metrics.teacher_latency.observe(time.perf_counter() - started)
            self._release(batch)
            self._count("answered", len(batch))
            self._apply(batch, *checked)
            return True
        self._release(batch)
        self._count("dropped_error", len(batch))
        log.warning("teacher did not answer %d lines: %s", len(batch), error or "stopping")
        return False

    def _apply(self, batch: list[Escalation], checked: list[TeacherAnswer | Rejection], version: str) -> None:
        """Hand the accepted answers on; count and log the refused ones."""
        accepted: list[tuple[Escalation, TeacherAnswer]] = []
        for item, answer in zip(batch, checked):
            if isinstance(answer, Rejection):
                self._reject(answer.reason, 1, answer.detail)
            else:
                accepted.append((item, answer))
        if self.on_answer is None or not accepted:
            return
        try:
            self.on_answer([item for item, _ in accepted], [answer for _, answer in accepted], version)
        except Exception:  # noqa: BLE001 - a bug applying answers must not stop escalation
            log.exception("applying teacher answers failed")

    def _reject(self, reason: str, n: int, detail: str) -> None:
        self.rejected[reason] += n
        if self.metrics is not None:
            self.metrics.teacher_rejected.labels(reason=reason).inc(n)
        self._report_rejection(reason, n, detail)

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self.take(wait=0.2)
            if not batch:
                continue
            try:
                self.deliver(batch)
            except Exception:  # noqa: BLE001 - a bug must not end escalation for the process's life
                log.exception("escalating %d lines failed", len(batch))
                self._release(batch)
                self._count("dropped_error", len(batch))

    def _release(self, batch: Sequence[Escalation]) -> None:
        with self._cond:
            for item in batch:
                if not item.sample:
                    self._queued.discard(item.template)

    def _count(self, result: str, n: int) -> None:
        self.counts[result] += n
        if self.metrics is not None:
            self.metrics.escalations.labels(result=result).inc(n)


_Allowed = tuple[Escalation, TeacherAnswer, str, "str | None"]  # item, answer, served label, downgrade action


class TeacherAnswers:
    """Applies the teacher's answers: the cache learns its labels; a served label turned from normal
    into an alert is written again to ``output`` marked ``"correction": true``; samples feed the agreement.

    A teacher "normal" for a line served as an alert follows ``downgrade``
    (:data:`~logdistill.edge.teacher_policy.DOWNGRADE_POLICIES`): ``refuse`` keeps the alert and writes
    the line again with ``"downgrade": "refused", "teacher": <its label>`` (once per template per
    ``report_ttl``; every refusal is counted); ``record`` serves normal and writes a correction with
    ``"downgrade": "applied"``."""

    def __init__(self, holder: Any, metrics: Any = None, output: AlertWriter | TextIO | None = None,
                 node: str | None = None, agreement: AgreementWindow | None = None, *, downgrade: str = "refuse",
                 report_ttl: float = DEFAULT_TAUGHT_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.downgrade = check_downgrade_policy(downgrade)
        self.holder = holder
        self.metrics = metrics
        self.alerts = AlertWriter.of(output)
        self.node = node
        self.agreement = agreement if agreement is not None else AgreementWindow()
        self.downgrades = dict.fromkeys(DOWNGRADE_ACTIONS, 0)
        self._refusals_written: ExpiringMap[str, None] = ExpiringMap(report_ttl, 10_000)
        self._clock = clock

    def labels(self) -> Collection[str]:
        """The served model's label set (none before a model is loaded): what answers are checked against."""
        model = self.holder.current
        return model.labels if model is not None else ()

    def __call__(self, items: list[Escalation], answers: list[TeacherAnswer], version: str) -> None:
        model = self.holder.current
        if model is None:
            return
        records, allowed = self._apply_downgrade_policy(model, items, answers, version)
        changed = set(model.learn_from_teacher([(item.template, item.student, answer.label, answer.score)
                                                 for item, answer, _, _ in allowed]))
        for item, answer, served, action in allowed:
            if item.template not in changed:
                continue
            changed.discard(item.template)  # once per template whose served label changed
            if action == "applied":
                records.append(self._record(item, answer.label, answer.score, version, correction=True,
                                            student=item.student, downgrade=action))
            elif served == model.normal_label:  # normal into an alert
                records.append(self._record(item, answer.label, answer.score, version, correction=True,
                                            student=item.student))
                if self.metrics is not None:
                    self.metrics.corrections.labels(label=answer.label).inc()
        samples = [(item.student, answer.label) for item, answer in zip(items, answers) if item.sample]
        for student, teacher in samples:
            self.agreement.add(student, teacher)
        if samples and self.metrics is not None:
            self.metrics.set_agreement(self.agreement, len(samples))
        self.alerts.write(records)

    def _apply_downgrade_policy(self, model: Any, items: list[Escalation], answers: list[TeacherAnswer],
                                version: str) -> tuple[list[dict], list[_Allowed]]:
        """The records of refused downgrades, and ``(item, answer, served label, downgrade action)`` of the
        answers the cache may learn. Every downgrade is counted."""
        now = self._clock()
        self._refusals_written.pop_expired(now)
        records, allowed = [], []
        for item, answer in zip(items, answers):
            served = model.served_label(item.template, item.student)
            action = downgrade_action(served, answer.label, model.normal_label, self.downgrade)
            if action is not None:
                self._count_downgrade(action)
            if action != "refused":
                allowed.append((item, answer, served, action))
            elif self._refusals_written.add(item.template, None, now):
                records.append(self._record(item, served, item.score, version, downgrade=action,
                                            teacher=answer.label, student=item.student))
        return records, allowed

    def _count_downgrade(self, action: str) -> None:
        self.downgrades[action] += 1
        if self.metrics is not None:
            self.metrics.teacher_downgrades.labels(action=action).inc()

    def _record(self, item: Escalation, label: str, score: float, version: str, **extra: Any) -> dict:
        if item.context is not None:
            record = alert_record(item.context, label, score, item.template, version, self.node)
        else:
            record = {"time": rfc3339(), "source": "http"}
            if self.node:
                record["node"] = self.node
            record.update(label=label, score=round(score, 6), line=item.line, template=item.template, model=version)
        record.update(extra)
        return record
