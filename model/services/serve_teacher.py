"""``logdistill serve-teacher``: the teacher behind the edge's HTTP API, for escalations.

``POST /v1/classify`` takes ``{"lines": [...], "student": [...]?}`` and answers
``{"results": [{"label", "score", "template"}], "model": version}`` like the edge. ``student``
(optional, same length, ``null`` for lines that are not agreement samples) carries the
edge's own verdicts for its uniformly sampled lines: they update the global agreement
estimate served at ``GET /v1/agreement`` and exported as ``logdistill_teacher_agreement_*``.

Requests are cut into lines and merged into batches of up to ``--max-batch`` distinct
templates, run by at most ``--max-concurrency`` worker threads (torch inference). With
``--store DIR`` every template labelled for the first time is appended to
``DIR/<hostname>.jsonl`` as ``{"text", "template", "label", "probs"}``: the input of the
next distillation generation (``logdistill distill --extra-data``).

With ``POD_NAME``/``POD_NAMESPACE`` set, the agreement JSON is published into the pod's
``logdistill.io/agreement`` annotation at most every 10 s, for the operator.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future
from http import HTTPStatus
from pathlib import Path
from typing import Any, Sequence

from logdistill.contracts import AGREEMENT_ANNOTATION
from logdistill.contracts import Agreement as AgreementReport
from logdistill.edge.httpguard import RequestError, add_listen_arguments, listen_options, load_json
from logdistill.edge.server import ApiHandler, HttpService, parse_lines
from logdistill.model.runtime.inference import decide

__all__ = ["TeacherService", "TeacherStore", "TeacherServer", "TeacherMetrics", "AGREEMENT_ANNOTATION",
           "add_arguments", "main"]

log = logging.getLogger("logdistill.teacher")

PUBLISH_INTERVAL_S = 10.0
DEFAULT_STORE_MAX_BYTES = 256 * 1024 * 1024
# A teacher batch takes ~10 ms (tiny) to seconds (MiniLM, 32 lines, 2 cores).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class TeacherMetrics:
    """``logdistill_teacher_*`` collectors on a registry the caller owns."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.registry = registry
        p = "logdistill_teacher"
        self.requests = Counter(f"{p}_requests", "Classify requests, by HTTP status code.", ["code"], registry=registry)
        self.lines = Counter(f"{p}_lines", "Lines classified.", registry=registry)
        self.request_seconds = Histogram(f"{p}_request_seconds", "Time of one classify request (queueing included).",
                                         buckets=_LATENCY_BUCKETS, registry=registry)
        self.batch_size = Histogram(f"{p}_batch_size_lines", "Distinct templates per model batch.",
                                    buckets=_BATCH_BUCKETS, registry=registry)
        self.agreement = Gauge(f"{p}_agreement_ratio",
                               "Student/teacher agreement on the edges' sampled lines, over the sliding window.",
                               registry=registry)
        self.agreement_samples = Counter(f"{p}_agreement_samples", "Sampled lines judged by both models.",
                                         registry=registry)
        self.stored = Counter(f"{p}_stored_lines", "Teacher-labelled templates appended to the store.",
                              registry=registry)
        self.store_full = Counter(f"{p}_store_skipped_lines",
                                  "Newly labelled templates not stored because the store file is full.",
                                  registry=registry)


class TeacherStore:
    """Append-only JSONL of the templates the teacher labelled, one line per template.

    The file is ``DIR/<hostname>.jsonl`` (one writer per pod; a shared volume holds all pods).
    Templates already in the file are read at start, so a restart does not write them again.
    Writing stops at ``max_bytes`` (counted by the caller); every line is flushed.
    """

    def __init__(self, directory: str | Path, *, max_bytes: int = DEFAULT_STORE_MAX_BYTES,
                 name: str | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{name or socket.gethostname()}.jsonl"
        self.max_bytes = max_bytes
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        if self.path.exists():
            with self.path.open("r", encoding="utf-8", errors="replace") as stream:
                for line in stream:
                    try:
                        self._seen.add(json.loads(line)["template"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line after a crash: skip it
        self._stream = self.path.open("a", encoding="utf-8")
        self._size = self.path.stat().st_size

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, text: str, template: str, label: str, probs: dict[str, float]) -> str:
        """Append once per template: returns ``"stored"``, ``"known"`` or ``"full"``."""
        with self._lock:
            if template in self._seen:
                return "known"
            row = json.dumps({"text": text, "template": template, "label": label,
                              "probs": {k: round(v, 6) for k, v in probs.items()}}, ensure_ascii=False) + "\n"
            if self._size + len(row.encode("utf-8")) > self.max_bytes:
                return "full"
            self._stream.write(row)
            self._stream.flush()
            self._size += len(row.encode("utf-8"))
            self._seen.add(template)
            return "stored"

    def close(self) -> None:
        with self._lock:
            self._stream.close()


class TeacherService:
    """Batches lines from concurrent requests into model calls on ``max_concurrency`` threads."""

    def __init__(self, scorer: Any, *, version: str, max_batch: int = 32, max_concurrency: int = 2,
                 metrics: TeacherMetrics | None = None, store: TeacherStore | None = None,
                 agreement: Any = None, alert_below: float | None = None) -> None:
        from logdistill.edge.agreement import AgreementWindow

        self.scorer = scorer
        self.alert_below = alert_below
        self.labels: list[str] = list(scorer.labels)
        self.normal_label: str = scorer.normal_label
        self._normal_index = self.labels.index(self.normal_label)
        self.version = version
        self.max_batch = max(1, max_batch)
        self.metrics = metrics
        self.store = store
        self.agreement = agreement if agreement is not None else AgreementWindow()
        self._pending: queue.Queue = queue.Queue()
        self._workers = [threading.Thread(target=self._work, name=f"teacher-{i}", daemon=True)
                         for i in range(max(1, max_concurrency))]
        for worker in self._workers:
            worker.start()

    def classify(self, lines: Sequence[str], student: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
        """Results for ``lines`` (blocks until the batch holding them ran)."""
        from logdistill.model.runtime.templates import mask

        templates = [mask(line) for line in lines]
        distinct = list(dict.fromkeys(templates))
        example = dict(zip(reversed(templates), reversed(list(lines))))  # first line of each template
        futures = []
        for start in range(0, len(distinct), self.max_batch):
            chunk = distinct[start: start + self.max_batch]
            future: Future = Future()
            # The model is fed its own input of the template's first line (the template itself, or lighter).
            self._pending.put(([self.scorer.model_input(example[t]) for t in chunk], future))
            futures.append((chunk, future))
        answers: dict[str, tuple[str, float, dict[str, float]]] = {}
        for chunk, future in futures:
            answers.update(zip(chunk, future.result()))
        if self.store is not None:
            for template in distinct:
                label, _, probs = answers[template]
                outcome = self.store.add(example[template], template, label, probs)
                if self.metrics is not None and outcome != "known":
                    (self.metrics.stored if outcome == "stored" else self.metrics.store_full).inc()
        if student is not None:
            self._agree(student, [answers[t][0] for t in templates])
        if self.metrics is not None:
            self.metrics.lines.inc(len(lines))
        return [{"label": answers[t][0], "score": answers[t][1], "template": t} for t in templates]

    def _agree(self, student: Sequence[str | None], teacher: Sequence[str]) -> None:
        added = 0
        for student_label, teacher_label in zip(student, teacher):
            if student_label is not None:
                self.agreement.add(student_label, teacher_label)
                added += 1
        if added and self.metrics is not None:
            self.metrics.agreement_samples.inc(added)
            ratio = self.agreement.ratio()
            if ratio is not None:
                self.metrics.agreement.set(ratio)

    def _work(self) -> None:
        while True:
            jobs = [self._pending.get()]
            size = len(jobs[0][0])
            while size < self.max_batch:  # merge what else is waiting, up to one batch
                try:
                    job = self._pending.get_nowait()
                except queue.Empty:
                    break
                jobs.append(job)
                size += len(job[0])
            texts = list(dict.fromkeys(t for chunk, _ in jobs for t in chunk))
            try:
                probs = self.scorer.predict_proba(texts)
            except Exception as err:  # noqa: BLE001 - fail these requests, keep the worker
                log.exception("teacher batch failed")
                for _, future in jobs:
                    future.set_exception(err)
                continue
            if self.metrics is not None:
                self.metrics.batch_size.observe(len(texts))
            by_template = {}
            chosen = decide(probs, self._normal_index, self.alert_below)
            for text, row, best in zip(texts, probs, chosen.tolist()):
                by_template[text] = (self.labels[best], float(row[best]),
                                     {label: float(p) for label, p in zip(self.labels, row)})
            for chunk, future in jobs:
                future.set_result([by_template[t] for t in chunk])


class _Holder:
    """What the edge's request handler reads for ``/readyz``: ``current`` with a ``version``."""

    def __init__(self) -> None:
        self.current: TeacherService | None = None


class TeacherHandler(ApiHandler):
    server_version = "logdistill-teacher"
    api_routes = {**ApiHandler.api_routes, ("GET", "/v1/agreement"): "_agreement"}

    def _agreement(self) -> None:
        service = self.app.holder.current
        if service is None:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "no model loaded yet")
        self._json(HTTPStatus.OK, service.agreement.snapshot())

    def _json(self, status: HTTPStatus, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        if self.command == "POST" and self.app.metrics is not None:
            self.app.metrics.requests.labels(code=str(int(status))).inc()
        super()._json(status, payload, headers)


class TeacherServer(HttpService):
    """The edge's HTTP service (listeners, guards, token, ``/healthz``, ``/readyz``, ``/metrics``) over
    a teacher; ``listen`` as :class:`~logdistill.edge.server.HttpService` takes it. Its API adds
    ``GET /v1/agreement``."""

    handler = TeacherHandler

    def __init__(self, metrics: TeacherMetrics, **listen: Any) -> None:
        super().__init__(_Holder(), metrics, **listen)

    def classify(self, body: bytes) -> dict[str, Any]:
        started = time.perf_counter()
        lines = parse_lines(body, self.max_lines)
        student = load_json(body).get("student")
        if student is not None and (not isinstance(student, list) or len(student) != len(lines)
                                    or not all(s is None or isinstance(s, str) for s in student)):
            raise RequestError(HTTPStatus.BAD_REQUEST, "'student' must be a list of labels (or null), one per line")
        service = self.holder.current
        if service is None:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "no model loaded yet")
        results = service.classify(lines, student)
        self.metrics.request_seconds.observe(time.perf_counter() - started)
        return {"results": results, "model": service.version}

    def model_info(self) -> dict[str, Any]:
        service = self.holder.current
        if service is None:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "no model loaded yet")
        return {"version": service.version, "kind": "teacher", "labels": service.labels}


def load_scorer(directory: Path, threads: int) -> tuple[Any, str]:
    """The teacher as a :class:`~logdistill.model.engine.evaluate.Scorer` (torch, fp32) and its version."""
    import torch

    from logdistill.model.engine.evaluate import TorchScorer
    from logdistill.model.engine.export import load_torch_model

    if threads > 0:
        torch.set_num_threads(threads)
    loaded = load_torch_model(directory)
    version = loaded.manifest.version if loaded.manifest is not None else f"checkpoint:{directory.name}"
    return TorchScorer(loaded.model, loaded.tokenizer, loaded.labels, loaded.normal, loaded.max_length,
                       loaded.input), version


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path,
                        help="teacher artifact or transformers checkpoint directory")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8080,
                        help="HTTP port of the API (and of /metrics without --metrics-port); 0 picks a free one"
                             " (default %(default)s)")
    parser.add_argument("--store", type=Path, default=None,
                        help="directory for the teacher-labelled templates (<hostname>.jsonl)")
    parser.add_argument("--store-max-bytes", type=int, default=DEFAULT_STORE_MAX_BYTES,
                        help="stop appending to the store file at this size (default %(default)s)")
    parser.add_argument("--max-batch", type=int, default=32, help="templates per model batch (default %(default)s)")
    parser.add_argument("--max-concurrency", type=int, default=2,
                        help="model batches run at once (default %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 = torch's default")
    parser.add_argument("--alert-below", type=float, default=None, metavar="P",
                        help="answer the most likely alert category when the normal label's probability is below P"
                             " (flags categories the teacher never saw); default: the top label")
    parser.add_argument("--agreement-window", type=float, default=600,
                        help="seconds of samples in the agreement estimate (default %(default)s)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    add_listen_arguments(parser)


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from prometheus_client import CollectorRegistry

    from logdistill.edge.agreement import AgreementWindow
    from logdistill.model.runtime.artifact import ArtifactError

    if args.agreement_window <= 0:
        print("logdistill serve-teacher: --agreement-window must be positive", file=sys.stderr)
        return 2
    if args.alert_below is not None and not 0.0 < args.alert_below <= 1.0:
        print("logdistill serve-teacher: --alert-below must be in (0, 1]", file=sys.stderr)
        return 2
    try:
        listen = listen_options(args)
    except ValueError as err:
        print(f"logdistill serve-teacher: {err}", file=sys.stderr)
        return 2
    metrics = TeacherMetrics(CollectorRegistry())
    try:
        server = TeacherServer(metrics, **listen)
    except OSError as err:
        print(f"logdistill serve-teacher: cannot listen on {args.host}:{args.port}/{args.metrics_port}: {err}",
              file=sys.stderr)
        return 1
    server.start()  # /healthz answers while torch loads; /readyz waits for the model
    log.info("listening on %s (metrics on %s)%s", server.url, server.metrics_url,
             "" if server.token else "; no --token-file: the API is open to all")
    try:
        scorer, version = load_scorer(args.model, args.threads)
        store = TeacherStore(args.store, max_bytes=args.store_max_bytes) if args.store else None
    except (ArtifactError, OSError) as err:
        print(f"logdistill serve-teacher: refusing the model: {err}", file=sys.stderr)
        server.stop()
        return 2
    agreement = AgreementWindow(args.agreement_window)
    server.holder.current = TeacherService(scorer, version=version, max_batch=args.max_batch,
                                           max_concurrency=args.max_concurrency, metrics=metrics, store=store,
                                           agreement=agreement, alert_below=args.alert_below)
    log.info("serving teacher %s from %s%s", version, args.model, f", storing into {store.path}" if store else "")

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    publisher = None
    if os.environ.get("POD_NAME") and os.environ.get("POD_NAMESPACE"):
        from logdistill.podannotation import PodAnnotationPublisher

        publisher = PodAnnotationPublisher(AGREEMENT_ANNOTATION)
    try:
        while not stop.wait(PUBLISH_INTERVAL_S):
            ratio = agreement.ratio()
            if ratio is not None:
                metrics.agreement.set(ratio)  # the window slides even without new samples
            if publisher is not None:
                publisher.publish(AgreementReport.model_validate(agreement.snapshot()).to_dict())
    finally:
        log.info("stopping")
        server.stop()
        if store is not None:
            store.close()
    return 0
