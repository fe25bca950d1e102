"""Escalation of templates to the teacher service, off the log path.

The classifier answers every line at once and :meth:`EscalationClient.offer` s the lines the
teacher should see (new or low-confidence templates, and a uniform agreement sample) into a
bounded queue; ``offer`` never blocks and counts what a full queue drops. One worker thread
takes up to ``batch_size`` items, waits for a token of the requests-per-second limit, and
posts them to ``URL/v1/classify`` as ``{"lines": [...], "student": [...]}`` (``student``
holds the edge's verdict for agreement samples, ``null`` for the rest). Connection errors,
timeouts, 5xx and unreadable answers are retried with exponential backoff; after the last
try the batch is dropped and counted. Answers go to ``on_answer(items, answers)`` on the
worker thread: :class:`TeacherAnswers` applies them (cache, corrections, agreement).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Any, Callable, NamedTuple, Sequence, TextIO

from logdistill.edge.agreement import AgreementWindow
from logdistill.edge.alerts import AlertWriter, alert_record
from logdistill.edge.metrics import ESCALATION_RESULTS
from logdistill.timefmt import rfc3339

__all__ = ["Escalation", "TeacherAnswer", "RateLimiter", "EscalationClient", "TeacherAnswers", "TeacherError"]

log = logging.getLogger(__name__)


class Escalation(NamedTuple):
    template: str
    line: str
    student: str  # the student's own label
    score: float
    sample: bool  # a uniform agreement sample (else: a new or low-confidence template)
    context: Any = None  # the tailed record the line came from, if any


class TeacherAnswer(NamedTuple):
    label: str
    score: float


class TeacherError(Exception):
    """The teacher could not answer; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


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


def post_json(url: str, payload: dict, timeout: float) -> Any:
    """POST ``payload``; the decoded JSON answer, or :class:`TeacherError`."""
    body = json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as err:
        raise TeacherError(f"HTTP {err.code}", retry=err.code >= 500 or err.code == 429) from None
    except (urllib.error.URLError, OSError, ValueError) as err:  # refused, reset, timeout, bad URL
        raise TeacherError(f"{type(err).__name__}: {getattr(err, 'reason', err)}") from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise TeacherError(f"the answer is not JSON ({raw[:60]!r})") from None


def parse_answers(payload: Any, count: int) -> list[TeacherAnswer]:
    """``{"results": [{"label", "score"}...]}`` with ``count`` entries, or :class:`TeacherError`."""
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list) or len(results) != count:
        raise TeacherError(f"the answer holds no list of {count} results")
    answers = []
    for result in results:
        label = result.get("label") if isinstance(result, dict) else None
        score = result.get("score") if isinstance(result, dict) else None
        if not isinstance(label, str) or not isinstance(score, (int, float)) or isinstance(score, bool):
            raise TeacherError(f"a result is not {{label: str, score: number}}: {str(result)[:80]}")
        answers.append(TeacherAnswer(label, float(score)))
    return answers


class EscalationClient:
    """Bounded queue + batching worker + rate limit + retries. Metrics are optional."""

    def __init__(self, url: str, *, queue_size: int = 1000, batch_size: int = 32, rps: float = 20.0,
                 timeout: float = 5.0, retries: int = 3, backoff: float = 0.2, max_backoff: float = 5.0,
                 metrics: Any = None, on_answer: Callable[[list[Escalation], list[TeacherAnswer], str], None]
                 | None = None, post: Callable[[str, dict, float], Any] = post_json,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url.rstrip("/") + "/v1/classify"
        self.queue_size = max(1, queue_size)
        self.batch_size = max(1, batch_size)
        self.timeout, self.retries = timeout, max(0, retries)
        self.backoff, self.max_backoff = backoff, max_backoff
        self.metrics = metrics
        self.on_answer = on_answer
        self.limiter = RateLimiter(rps, clock)
        self._post = post
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
                answer = self._post(self.url, payload, self.timeout)
                answers = parse_answers(answer, len(batch))
            except TeacherError as err:
                error = err
                if not err.retry:
                    break
                continue
            finally:
                if self.metrics is not None:
                    self.metrics.teacher_latency.observe(time.perf_counter() - started)
            self._release(batch)
            self._count("answered", len(batch))
            if self.on_answer is not None:
                try:
                    self.on_answer(batch, answers, str(answer.get("model", "teacher")))
                except Exception:  # noqa: BLE001 - a bug applying answers must not stop escalation
                    log.exception("applying teacher answers failed")
            return True
        self._release(batch)
        self._count("dropped_error", len(batch))
        log.warning("teacher did not answer %d lines: %s", len(batch), error or "stopping")
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self.take(wait=0.2)
            if batch:
                self.deliver(batch)

    def _release(self, batch: Sequence[Escalation]) -> None:
        with self._cond:
            for item in batch:
                if not item.sample:
                    self._queued.discard(item.template)

    def _count(self, result: str, n: int) -> None:
        self.counts[result] += n
        if self.metrics is not None:
            self.metrics.escalations.labels(result=result).inc(n)


class TeacherAnswers:
    """Applies the teacher's answers: the cache learns its labels; normal-to-alert changes are
    written again to ``output`` marked ``"correction": true``; samples feed the agreement."""

    def __init__(self, holder: Any, metrics: Any = None, output: AlertWriter | TextIO | None = None,
                 node: str | None = None, agreement: AgreementWindow | None = None) -> None:
        self.holder = holder
        self.metrics = metrics
        self.alerts = AlertWriter.of(output)
        self.node = node
        self.agreement = agreement if agreement is not None else AgreementWindow()

    def __call__(self, items: list[Escalation], answers: list[TeacherAnswer], version: str) -> None:
        model = self.holder.current
        if model is None:
            return
        normal = model.normal_label
        changed = set(model.learn_from_teacher([(item.template, item.student, answer.label, answer.score)
                                                 for item, answer in zip(items, answers)]))
        corrections = []
        for item, answer in zip(items, answers):
            # Once per template whose served label turns from normal into an alert.
            if item.template in changed and item.student == normal and answer.label != normal:
                changed.discard(item.template)
                corrections.append(self._record(item, answer, version))
                if self.metrics is not None:
                    self.metrics.corrections.labels(label=answer.label).inc()
        samples = [(item.student, answer.label) for item, answer in zip(items, answers) if item.sample]
        for student, teacher in samples:
            self.agreement.add(student, teacher)
        if samples and self.metrics is not None:
            self.metrics.set_agreement(self.agreement, len(samples))
        self.alerts.write(corrections)

    def _record(self, item: Escalation, answer: TeacherAnswer, version: str) -> dict:
        if item.context is not None:
            record = alert_record(item.context, answer.label, answer.score, item.template, version, self.node)
        else:
            record = {"time": rfc3339(), "source": "http"}
            if self.node:
                record["node"] = self.node
            record.update(label=answer.label, score=round(answer.score, 6), line=item.line,
                          template=item.template, model=version)
        record.update(correction=True, student=item.student)
        return record
