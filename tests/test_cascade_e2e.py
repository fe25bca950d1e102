"""The cascade with real processes: ``logdistill serve-teacher`` on a tiny trained teacher and
``logdistill classify --teacher-url`` on a student that misses a whole alert category.

Faults: the teacher stopped, slow, answering 500 or garbage. The edge must answer every line
at once, never crash, and count what it drops.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers.onnx_artifacts import build_onnx_artifact
from prometheus_client.parser import text_string_to_metric_families

from logdistill.model.runtime.templates import mask

STUDENT_LABELS = ["-", "APPERR", "KERNFAIL"]


class Process:
    """A ``logdistill`` subprocess; stderr and stdout lines are collected by reader threads."""

    def __init__(self, *args: str, cwd: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-P", "-m", "logdistill", *args], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        for stream, sink in ((self.proc.stdout, self.stdout.put), (self.proc.stderr, self.stderr.append)):
            threading.Thread(target=lambda s=stream, k=sink: [k(line) for line in s], daemon=True).start()

    def url(self, timeout: float = 60.0) -> str:
        """The base URL from the "listening on" log line, once ``/readyz`` answers 200."""
        deadline = time.monotonic() + timeout
        base = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "".join(self.stderr)[-3000:]
            if base is None:
                for line in list(self.stderr):
                    if match := re.search(r"listening on (http://\S+)", line):
                        base = match.group(1)
            if base is not None:
                try:
                    with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                        if response.status == 200:
                            return base
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.05)
        raise AssertionError(f"not ready in {timeout} s:\n{''.join(self.stderr)[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


# The API token both processes read (--token-file): the edge sends it on its escalations.
TOKEN = "cascade-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def classify(base: str, lines: list[str], timeout: float = 10.0) -> list[dict]:
    body = json.dumps({"lines": lines}).encode()
    request = urllib.request.Request(base + "/v1/classify", data=body,
                                     headers={"Content-Type": "application/json", **AUTH})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())["results"]


def metrics(base: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def escalations(base: str) -> dict[str, float]:
    values = metrics(base)
    return {result: values.get(("logdistill_classifier_escalations_total", (("result", result),)), 0.0)
            for result in ("sent", "answered", "dropped_queue_full", "dropped_error")}


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def split_lines(lines: list[str]) -> list[tuple[str, str]]:
    """Loghub lines -> (label, message)."""
    return [tuple(line.split(" ", 1)) for line in lines]  # type: ignore[misc]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from helpers.tiny_models import build_tiny_teacher, tiny_log_lines

    root = tmp_path_factory.mktemp("cascade")
    pairs = split_lines(tiny_log_lines(seed=0, repeats=2))
    teacher = build_tiny_teacher(root, [label for label, _ in pairs], [text for _, text in pairs], epochs=20)
    student = root / "student"
    # The student knows KERNFAIL ("failure") but never learned APPERR: it calls those lines normal.
    build_onnx_artifact(student, STUDENT_LABELS, {"failure": "KERNFAIL"})
    return root, teacher, student


def test_second_pass_is_flagged_as_the_teacher_would_and_teacher_down_drops_are_counted(artifacts):
    from helpers.tiny_models import tiny_log_lines

    root, teacher_dir, student_dir = artifacts
    store = root / "store"
    token = root / "token"
    token.write_text(TOKEN)
    teacher = Process("serve-teacher", "--model", str(teacher_dir), "--host", "127.0.0.1", "--port", "0",
                      "--store", str(store), "--threads", "1", "--token-file", str(token), cwd=root)
    edge = None
    try:
        teacher_url = teacher.url()
        edge = Process("classify", "--model", str(student_dir), "--host", "127.0.0.1", "--port", "0", "--no-tail",
                       "--token-file", str(token),
                       "--reload-interval", "0", "--teacher-url", teacher_url, "--sample-rate", "0.2",
                       "--escalation-rps", "50", cwd=root)
        edge_url = edge.url()
        # Other lines of the same templates than the teacher was trained on (other numbers and nodes).
        pairs = split_lines(tiny_log_lines(seed=7, repeats=1))
        unseen = [text for label, text in pairs if label == "APPERR"]
        normal = [text for label, text in pairs if label == "-"]
        stream = unseen + normal
        teacher_rate = sum(r["label"] != "-" for r in classify(teacher_url, unseen)) / len(unseen)
        assert teacher_rate >= 0.9  # the teacher knows this category

        first = classify(edge_url, stream)
        assert len(first) == len(stream)
        first_rate = sum(r["label"] != "-" for r in first[:len(unseen)]) / len(unseen)
        assert first_rate == 0.0  # the student alone misses the category
        templates = len({mask(line) for line in stream})  # each new template is escalated once
        wait_for(lambda: (c := escalations(edge_url))["sent"] >= templates
                 and c["answered"] + c["dropped_error"] == c["sent"], what="escalations answered")
        second = classify(edge_url, stream)
        second_rate = sum(r["label"] != "-" for r in second[:len(unseen)]) / len(unseen)
        false_alarms = sum(r["label"] != "-" for r in second[len(unseen):]) / len(normal)
        assert second_rate >= 0.9 * teacher_rate, (second_rate, teacher_rate)
        assert false_alarms <= 0.01
        assert escalations(edge_url)["dropped_error"] == 0

        # Each relabelled line comes out again on stdout, marked as a teacher correction.
        corrections = [json.loads(edge.stdout.get(timeout=5)) for _ in range(len(unseen))]
        assert all(c["correction"] is True and c["label"] == "APPERR" and c["student"] == "-" for c in corrections)
        values = metrics(edge_url)
        assert values[("logdistill_classifier_corrections_total", (("label", "APPERR"),))] == len(unseen)
        assert values[("logdistill_classifier_teacher_latency_seconds_count", ())] >= 1
        # Agreement samples reached the teacher too.
        with urllib.request.urlopen(urllib.request.Request(teacher_url + "/v1/agreement", headers=AUTH),
                                    timeout=5) as response:
            agreement = json.loads(response.read())
        assert agreement["samples"] > 0 and 0.0 <= agreement["ratio"] <= 1.0 and agreement["windowSeconds"] == 600
        teacher_metrics = metrics(teacher_url)
        assert teacher_metrics[("logdistill_teacher_lines_total", ())] >= len(stream)
        stored = (store / os.listdir(store)[0]).read_text().splitlines()
        assert len(stored) == teacher_metrics[("logdistill_teacher_stored_lines_total", ())] > 0

        # The teacher stops: the edge keeps answering at once and counts what it cannot escalate.
        assert teacher.stop() == 0
        fresh = [f"RAS APP FATAL widget{i} error raised in module{i}" for i in range(60)]
        started = time.monotonic()
        answered = classify(edge_url, fresh)
        assert len(answered) == len(fresh) and time.monotonic() - started < 5
        wait_for(lambda: (c := escalations(edge_url))["dropped_error"] + c["dropped_queue_full"] > 0,
                 what="drops counted")
        assert edge.proc.poll() is None
    finally:
        teacher.stop()
        if edge is not None:
            assert edge.stop() == 0


class FaultyTeacher(BaseHTTPRequestHandler):
    """A teacher that is slow, fails, or answers garbage (mode set on the server)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.authorizations.add(self.headers.get("Authorization"))
        self.server.requests += 1
        mode = self.server.mode
        if mode == "slow":
            self.server.release.wait(20)  # holds the request until the test ends
        status, body = {"500": (500, b'{"error": "boom"}'), "garbage": (200, b"{not json"),
                        "wrong": (200, b'{"results": [1, 2]}')}.get(mode, (200, b'{"results": []}'))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("mode", ["slow", "500", "garbage", "wrong"])
def test_edge_never_blocks_or_crashes_on_a_faulty_teacher(artifacts, mode):
    root, _, student_dir = artifacts
    server = ThreadingHTTPServer(("127.0.0.1", 0), FaultyTeacher)
    server.mode, server.requests, server.release = mode, 0, threading.Event()
    server.authorizations = set()
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    token = root / "token"
    token.write_text(TOKEN)
    edge = Process("classify", "--model", str(student_dir), "--host", "127.0.0.1", "--port", "0", "--no-tail",
                   "--token-file", str(token),
                   "--reload-interval", "0", "--teacher-url", f"http://127.0.0.1:{server.server_address[1]}",
                   "--escalation-queue", "20", "--escalation-batch", "8", "--escalation-timeout", "1",
                   "--sample-rate", "0.5", cwd=root)
    try:
        edge_url = edge.url()
        for round_ in range(3):
            lines = [f"RAS APP FATAL thing{round_}x{i} error raised in place{i}" for i in range(100)]
            started = time.monotonic()
            results = classify(edge_url, lines)
            assert len(results) == len(lines) and all(r["label"] in STUDENT_LABELS for r in results)
            assert time.monotonic() - started < 5
        counts = wait_for(lambda: (c := escalations(edge_url))["dropped_queue_full"] > 0
                          and (mode == "slow" or c["dropped_error"] > 0) and c, timeout=30, what="drops")
        assert counts["answered"] == 0
        assert server.requests >= 1
        assert server.authorizations == {AUTH["Authorization"]}  # every escalation carried the token
        assert edge.proc.poll() is None
    finally:
        server.release.set()
        assert edge.stop() == 0
        server.shutdown()
        server.server_close()
