"""``logdistill classify``: the edge classifier process (one per node, a DaemonSet).

Serves the HTTP API, tails the node's pod logs, writes non-normal lines as JSON lines to
stdout, exports ``logdistill_classifier_*`` metrics and hot-reloads the model directory.
Never imports torch or transformers (tests assert it).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from logdistill.edge.lines import DEFAULT_MAX_LINE_BYTES
from logdistill.edge.teacher_policy import DEFAULT_MAX_ANSWER_BYTES, DEFAULT_TAUGHT_TTL_S, DOWNGRADE_POLICIES

__all__ = ["add_arguments", "main", "load_classifier"]

log = logging.getLogger("logdistill.edge")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from logdistill.edge.httpguard import add_listen_arguments
    from logdistill.edge.server import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_LINES
    from logdistill.edge.sources import DEFAULT_PATHS, FORMATS

    parser.add_argument("--model", required=True, type=Path,
                        help="artifact directory (may be a symlink swapped on update)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8080,
                        help="HTTP port of the API (and of /metrics without --metrics-port); 0 picks a free one"
                             " (default %(default)s)")
    parser.add_argument("--paths", nargs="+", default=list(DEFAULT_PATHS), metavar="GLOB",
                        help="log files to tail (default: %(default)s)")
    parser.add_argument("--no-tail", action="store_true", help="serve the HTTP API only; tail no files")
    parser.add_argument("--format", choices=FORMATS, default="auto",
                        help="line format: cri, plain, or auto = CRI for kubelet pod logs (default %(default)s)")
    parser.add_argument("--start-at", choices=("beginning", "end"), default="beginning",
                        help="where to start in files found at the very first start, without saved offsets")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="directory for read offsets (without it, a restart re-reads files from --start-at);"
                             " created if missing, must be writable by this process")
    parser.add_argument("--exclude-pod-uid", action="append", default=[], metavar="UID",
                        help="never read files under /var/log/pods/<ns>_<pod>_<UID>/ (repeatable); the DaemonSet"
                             " passes its own pod UID so the classifier does not classify its own alert output")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default %(default)s)")
    parser.add_argument("--cache-size", type=int, default=20_000,
                        help="entries in each of the two cache levels (line key, template); 0 disables the cache "
                             "(default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="micro-batch size for cache misses (default %(default)s)")
    parser.add_argument("--reload-interval", type=float, default=10.0,
                        help="seconds between model directory checks; 0 disables hot reload (default %(default)s)")
    parser.add_argument("--poll-interval", type=float, default=0.25, help="seconds between file polls when idle")
    parser.add_argument("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES,
                        help="longer lines are truncated and counted (default %(default)s)")
    parser.add_argument("--max-request-lines", type=int, default=DEFAULT_MAX_LINES)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    add_listen_arguments(parser, "; also sent to --teacher-url")
    cascade = parser.add_argument_group("cascade", "escalation of new or unsure templates to a teacher service")
    cascade.add_argument("--teacher-url", default=None,
                         help="base URL of `logdistill serve-teacher`; without it nothing is escalated")
    cascade.add_argument("--escalate-below", type=float, default=0.9,
                         help="escalate templates the student scores under this (default %(default)s)")
    cascade.add_argument("--sample-rate", type=float, default=0.01,
                         help="share of lines also sent for the online agreement estimate (default %(default)s)")
    cascade.add_argument("--escalation-queue", type=int, default=1000,
                         help="queued lines at most; more are dropped and counted (default %(default)s)")
    cascade.add_argument("--escalation-batch", type=int, default=32, help="lines per teacher request (default %(default)s)")
    cascade.add_argument("--escalation-rps", type=float, default=20.0,
                         help="teacher requests per second at most (default %(default)s)")
    cascade.add_argument("--escalation-timeout", type=float, default=10.0,
                         help="seconds one teacher request may take (default %(default)s)")
    cascade.add_argument("--agreement-window", type=float, default=600,
                         help="seconds of samples in the agreement estimate (default %(default)s)")
    cascade.add_argument("--teacher-downgrade", choices=DOWNGRADE_POLICIES, default="refuse",
                         help="when the teacher calls normal a line served as an alert: refuse = the alert stands"
                              " and the disagreement is written and counted; record = serve normal and write a"
                              " correction (default %(default)s)")
    cascade.add_argument("--teacher-answer-ttl", type=float, default=DEFAULT_TAUGHT_TTL_S,
                         help="seconds a teacher answer is served from the cache before it is dropped and the"
                              " template asked again (default %(default)s)")
    cascade.add_argument("--teacher-max-answer-bytes", type=int, default=DEFAULT_MAX_ANSWER_BYTES,
                         help="longer teacher answers are refused unread past this size (default %(default)s)")


def load_classifier(directory: Path, *, threads: int, cache_size: int, batch_size: int,
                    max_line_chars: int, metrics=None, taught_ttl: float = DEFAULT_TAUGHT_TTL_S):
    """Verify and load an artifact, and self-test it (:mod:`logdistill.edge.selftest`) so a broken graph is
    refused before it serves."""
    from logdistill.edge.classifier import TemplateClassifier
    from logdistill.edge.selftest import run_self_test
    from logdistill.model.runtime.inference import OnnxClassifier

    model = OnnxClassifier(directory, threads=threads)
    passed = run_self_test(model)  # raises ArtifactError: the candidate is refused, the old model keeps serving
    log.info("%s: self-test passed (%s %.3f)", directory, passed.label, passed.score)
    classifier = TemplateClassifier(model, cache_size=cache_size, batch_size=batch_size, metrics=metrics,
                                    max_line_chars=max_line_chars, taught_ttl=taught_ttl)
    classifier.self_test = passed
    return classifier


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from prometheus_client import CollectorRegistry

    from logdistill.edge.alerts import AlertWriter
    from logdistill.edge.httpguard import listen_options, with_bearer
    from logdistill.edge.metrics import ClassifierMetrics
    from logdistill.edge.pipeline import TailPipeline
    from logdistill.edge.reload import ModelHolder, Reloader
    from logdistill.edge.server import ClassifierServer
    from logdistill.edge.sources import Tailer
    from logdistill.edge.statelock import StateLock
    from logdistill.model.runtime.artifact import ArtifactError

    metrics = ClassifierMetrics(CollectorRegistry())
    holder = ModelHolder()
    alerts = AlertWriter(sys.stdout)  # shared: the pipeline's alerts and the teacher's corrections
    try:
        listen = listen_options(args)
    except ValueError as err:
        print(f"logdistill classify: {err}", file=sys.stderr)
        return 2
    try:
        # Not ready until the tailer has scanned (it replaces this check below); API-only has no source check.
        server = ClassifierServer(holder, metrics, max_lines=args.max_request_lines,
                                  max_body_bytes=args.max_body_bytes,
                                  sources=None if args.no_tail else (lambda: "no log source scanned yet"), **listen)
    except OSError as err:
        print(f"logdistill classify: cannot listen on {args.host}:{args.port}/{args.metrics_port}: {err}",
              file=sys.stderr)
        return 1
    server.start()  # /healthz answers while the model loads; /readyz waits for it
    log.info("listening on %s (metrics on %s)%s", server.url, server.metrics_url,
             "" if server.token else "; no --token-file: the API is open to all")

    escalation = None
    if args.teacher_url:
        from logdistill.edge.agreement import AgreementWindow
        from logdistill.edge.escalation import EscalationClient, TeacherAnswers, post_json

        if (args.escalation_rps <= 0 or args.agreement_window <= 0 or args.teacher_answer_ttl <= 0
                or args.teacher_max_answer_bytes <= 0 or not 0 <= args.sample_rate <= 1):
            print("logdistill classify: --escalation-rps, --agreement-window, --teacher-answer-ttl and"
                  " --teacher-max-answer-bytes must be positive and --sample-rate within [0, 1]", file=sys.stderr)
            server.stop()
            return 2
        answers = TeacherAnswers(holder, metrics, alerts, node=os.environ.get("NODE_NAME"),
                                 agreement=AgreementWindow(args.agreement_window), downgrade=args.teacher_downgrade,
                                 report_ttl=args.teacher_answer_ttl)
        escalation = EscalationClient(args.teacher_url, labels=answers.labels, queue_size=args.escalation_queue,
                                      batch_size=args.escalation_batch, rps=args.escalation_rps,
                                      timeout=args.escalation_timeout, metrics=metrics, on_answer=answers,
                                      max_answer_bytes=args.teacher_max_answer_bytes,
                                      post=with_bearer(functools.partial(post_json,
                                                                         max_bytes=args.teacher_max_answer_bytes),
                                                       server.token))
        escalation.start()
        log.info("escalating to %s (below %.2f, sampling %.3f, teacher downgrades: %s)", args.teacher_url,
                 args.escalate_below, args.sample_rate, args.teacher_downgrade)

    def load(directory: Path):
        classifier = load_classifier(directory, threads=args.threads, cache_size=args.cache_size,
                                     batch_size=args.batch_size, max_line_chars=args.max_line_bytes, metrics=metrics,
                                     taught_ttl=args.teacher_answer_ttl)
        if escalation is not None:
            classifier.attach_escalation(escalation, escalate_below=args.escalate_below, sample_rate=args.sample_rate)
        return classifier

    try:
        holder.swap(load(args.model))
    except ArtifactError as err:
        print(f"logdistill classify: refusing the model: {err}", file=sys.stderr)
        server.stop()
        return 2
    model = holder.current
    metrics.set_model(model.model.manifest)
    metrics.last_reload.set_to_current_time()
    log.info("serving model %s (%s) from %s", model.version, model.model.manifest.kind, args.model)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    reloader = None
    if args.reload_interval > 0:
        reloader = Reloader(args.model, holder, load, interval=args.reload_interval, metrics=metrics)
        reloader.start()

    tailer = None
    state_lock = None
    try:
        if not args.no_tail:
            if args.state_dir is None:
                log.warning("no --state-dir: read offsets are not persisted across restarts")
            else:
                state_lock = StateLock(args.state_dir)
                server.sources = lambda: f"waiting for another classifier to release {state_lock.path}"
                try:
                    if not state_lock.acquire(stop):
                        return 0  # stopped while waiting: nothing was read
                except OSError as err:
                    # As when the offsets cannot be saved: keep classifying, say what is not guaranteed.
                    log.error("%s: cannot lock the read offsets (%s); a second classifier on them would not wait",
                              state_lock.path, err)
            tailer = Tailer(args.paths, state_dir=args.state_dir, fmt=args.format, start_at=args.start_at,
                            max_line_bytes=args.max_line_bytes, exclude_pod_uids=args.exclude_pod_uid,
                            on_malformed=lambda reason: metrics.malformed.labels(reason=reason).inc(),
                            on_source_error=lambda reason: metrics.source_errors.labels(reason=reason).inc())
            pipeline = TailPipeline(tailer, holder, metrics, alerts, node=os.environ.get("NODE_NAME"))
            metrics.set_sources(args.paths)
            metrics.open_files.set_function(lambda: tailer.open_count)
            server.sources = tailer.not_ready  # /readyz: 503 until some source is readable
            log.info("tailing %s%s", " ".join(args.paths),
                     f" (not pods {', '.join(args.exclude_pod_uid)})" if args.exclude_pod_uid else "")
        while not stop.is_set():
            try:
                busy = tailer is not None and pipeline.step() > 0
            except Exception:  # a bug in one batch must not stop the node's classifier
                log.exception("tail step failed")
                busy = False
            if not busy:
                stop.wait(args.poll_interval)
    finally:
        log.info("stopping")
        if tailer is not None:
            tailer.close()  # the last offsets are saved before the lock lets the next classifier read them
        if state_lock is not None:
            state_lock.release()
        if reloader is not None:
            reloader.stop()
        if escalation is not None:
            escalation.stop()
        server.stop()
    return 0
