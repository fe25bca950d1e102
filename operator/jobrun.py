"""``logdistill operator job-run``: the distillation Job's entrypoint.

It runs ``logdistill distill`` as a child process and, while it runs, reports the engine's progress
file at most once per ``--interval`` two ways: a progress line on stdout
(:data:`~logdistill.contracts.PROGRESS_LOG_PREFIX`), which the operator reads from the pod's log tail,
and, where the Job's ServiceAccount may patch its own pod, an annotation on it (``POD_NAME``/
``POD_NAMESPACE`` from the downward API), which the operator prefers. Either way the operator copies it
into ``DistilledModel.status.progress`` and never reads the artifact storage. If the engine dies
without writing its summary, the runner writes ``{"error": ...}`` with the last lines of its
stderr into the summary file (the termination message), so the operator can say why.

``--engine teacher`` (the ``teacher`` init container of a ``teacher.train`` run) runs
``logdistill teacher ensure`` instead, and publishes its stages as ``teacher-<stage>``
(``teacher-training``, ...), so ``status.progress`` shows the teacher being trained.
"""

from __future__ import annotations

import argparse
import collections
import logging
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from logdistill.contracts import PROGRESS_ANNOTATION, ContractError, ErrorSummary, Progress, progress_log_line
from logdistill.operator import retention
from logdistill.podannotation import PodAnnotationPublisher

log = logging.getLogger("logdistill.operator.jobrun")
ENGINES = ("distill", "teacher")
TEACHER_STAGE_PREFIX = "teacher-"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=ENGINES, default="distill",
                        help="what to run: logdistill distill (default), or logdistill teacher ensure")
    parser.add_argument("--config", default=None, help="spec file (the CR spec, mounted from a ConfigMap)")
    parser.add_argument("--out", required=True, help="artifact folder to write")
    parser.add_argument("--summary-file", required=True, help="where the summary goes (the termination-message path)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between progress publications")
    parser.add_argument("--keep-versions", type=int, default=0, metavar="N",
                        help="after a successful run, remove the model's version folders beside --out beyond the "
                             f"newest N (at least {retention.MIN_KEEP}; 0: keep all)")
    parser.add_argument("--protect", action="append", default=[], metavar="RUN",
                        help="a version folder never removed (the one the classifier serves); repeatable")
    parser.add_argument("extra", nargs="*", help="more arguments for `logdistill distill` (after --)")


def _forward(stream, sink, tail: collections.deque) -> None:
    for line in iter(stream.readline, ""):
        sink.write(line)
        sink.flush()
        tail.append(line.rstrip("\n"))


def _summary_written(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summary = Path(args.summary_file)
    scratch = Path(tempfile.mkdtemp(prefix="logdistill-jobrun-"))
    progress = scratch / "progress.json"
    # The engine replaces its summary file atomically (rename), which fails on the termination-log
    # bind mount (EBUSY): it writes into scratch and the runner copies the bytes in place.
    engine_summary = scratch / "summary.json"
    engine = getattr(args, "engine", "distill")
    if engine == "teacher":
        command = [sys.executable, "-P", "-m", "logdistill", "teacher", "ensure", "--out", args.out,
                   "--progress-file", str(progress), *args.extra]
        what = "logdistill teacher ensure"
    else:
        if not args.config:
            print("logdistill operator job-run: --config is required", file=sys.stderr)
            return 2
        command = [sys.executable, "-P", "-m", "logdistill", "distill", "--config", args.config, "--out", args.out,
                   "--progress-file", str(progress), "--summary-file", str(engine_summary), *args.extra]
        what = "logdistill distill"
    publisher = PodAnnotationPublisher(PROGRESS_ANNOTATION)
    log.info("running %s", " ".join(command))
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace")
    tail: collections.deque = collections.deque(maxlen=20)
    forwarder = threading.Thread(target=_forward, args=(proc.stderr, sys.stderr, tail), daemon=True)
    forwarder.start()
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))

    last_line = ""

    def read_progress() -> None:
        nonlocal last_line
        try:
            state = Progress.parse(progress.read_text(encoding="utf-8")).to_dict()
            if engine == "teacher" and state.get("stage"):
                state["stage"] = TEACHER_STAGE_PREFIX + str(state["stage"])
            publisher.publish(state)
            line = progress_log_line(state)
            if line != last_line:  # the operator's fallback reads the log tail: print changes only
                print(line, flush=True)
                last_line = line
        except OSError:
            pass  # not written yet; the engine replaces it atomically, so never half-written
        except ContractError as err:
            log.warning("not publishing progress: %s", err)

    while True:
        try:
            code = proc.wait(timeout=args.interval)
            break
        except subprocess.TimeoutExpired:
            read_progress()
    forwarder.join(timeout=5)
    read_progress()
    if _summary_written(engine_summary):
        text = engine_summary.read_text(encoding="utf-8")
    elif code != 0:
        last = next((line for line in reversed(tail) if line.strip()), "no output")
        text = ErrorSummary(error=f"{what} exited with code {code}: {last}"[:1000]).serialize()
    elif engine == "teacher":
        text = ""  # the teacher stage has no summary: the distill container writes the run's
    else:
        text = ""  # success without a summary: the operator reports it, never rolls it out
        log.error("logdistill distill succeeded but wrote no summary")
    if text:
        with open(summary, "w", encoding="utf-8") as out:  # in place: never rename over a bind mount
            out.write(text)
    if code == 0 and engine == "distill" and _summary_written(engine_summary) and getattr(args, "keep_versions", 0):
        out_dir = Path(args.out)
        removed = retention.prune(out_dir.parent, args.keep_versions, {out_dir.name, *args.protect})
        if removed:
            log.info("removed old versions of %s: %s", out_dir.parent, ", ".join(removed))
    return code
