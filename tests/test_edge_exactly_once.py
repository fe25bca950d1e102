"""Exactly-once lines through faults: every input line comes out as one verdict, none lost, none repeated.

Every test line is an alert-class line (``<seq> error <word> on node``: the tiny model's keyword
``error`` votes ERROR), so the alert stream is the verdict stream and each line must appear in it.
Each line has its own template (the word spells its number), so every line is a cache miss and
``classify`` runs the real ONNX model in micro-batches. The faults:

- ``kill -9`` of the real ``logdistill classify`` process, restarted on the same ``--state-dir``
  while a writer goes on appending;
- a ``classify`` that raises mid-batch (the model fails on a later micro-batch) in the real
  :class:`TailPipeline`;
- copytruncate that regrows past the old size before the next poll;
- rename rotation while the writer goes on (the rotated file is drained through its descriptor);
- teacher outages (every line escalated to a teacher that answers 503, then refuses connections).

Figures: ``lost`` (lines never seen), ``repeated`` (lines seen more than once once the first object
of each ``id`` is kept, as the alert contract tells consumers to) and ``raw repeats`` (before that,
possible only for the batch in flight at a ``kill -9``). Run with ``-s`` to print them
(docs/benchmarks.md, "Exactly-once lines").
"""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from helpers.controlplane import wait_for
from helpers.edge_process import Process, command
from helpers.onnx_artifacts import build_onnx_artifact
from logdistill.edge.alerts import restates_a_line
from logdistill.edge.main import load_classifier
from logdistill.edge.metrics import ClassifierMetrics
from logdistill.edge.pipeline import ISOLATE_AFTER, TailPipeline
from logdistill.edge.reload import ModelHolder
from logdistill.edge.sources import Tailer

LABELS = ["-", "ERROR", "FATAL"]
_LETTERS = "klmnopqrst"  # digits spelt in letters that are not hex digits (the masker keeps the word)


def line(seq: int) -> str:
    return f"{seq:06d} error {''.join(_LETTERS[int(d)] for d in f'{seq:06d}')} on node"


def lines(first: int, count: int) -> bytes:
    return "".join(line(seq) + "\n" for seq in range(first, first + count)).encode()


@dataclass
class Figures:
    lines: int
    lost: int
    repeated: int
    raw_repeats: int
    torn: int

    def report(self, fault: str, **more) -> None:
        extra = "".join(f" {key}={value}" for key, value in more.items())
        print(f"\nexactly-once [{fault}]: lines={self.lines} lost={self.lost} repeated={self.repeated}"
              f" raw_repeats={self.raw_repeats} torn={self.torn}{extra}")


class Tally:
    """Every alert object read from the stream(s), and what they add up to."""

    def __init__(self) -> None:
        self.objects: list[dict] = []
        self.torn = 0  # a process killed in the middle of writing a line: its fragment, not counted
        self.seen: set[int] = set()

        self.by_process: defaultdict[int, list[int]] = defaultdict(list)  # the lines each process wrote, in order

    def add(self, text: str, process: int = 0) -> None:
        if not text.endswith("\n"):
            self.torn += 1
            return
        record = json.loads(text)
        if restates_a_line(record):
            return
        self.objects.append(record)
        self.seen.add(int(record["line"][:6]))
        self.by_process[process].append(int(record["line"][:6]))

    def repeats_are_the_tail_of_a_killed_process(self) -> bool:
        """Whether each line written twice was among the last ones a process wrote before it was killed,
        written again by the next process: the batch in flight, never an older one."""
        for process, written in self.by_process.items():
            again = set(self.by_process.get(process + 1, ())) & set(written)
            if set(written[len(written) - len(again):]) != again or len(set(written)) != len(written):
                return False
        return True

    def figures(self, expected: int) -> Figures:
        raw = Counter(int(o["line"][:6]) for o in self.objects)
        first_of_id: dict[str, dict] = {}
        ids_of_line: defaultdict[int, set[str]] = defaultdict(set)
        for record in self.objects:
            first_of_id.setdefault(record["id"], record)
            ids_of_line[int(record["line"][:6])].add(record["id"])
        # A repeat is a true copy: one id per line, and the repeat's line is the line that id names.
        assert all(len(ids) == 1 for ids in ids_of_line.values()), "a line came out under two ids"
        assert all(first_of_id[o["id"]]["line"] == o["line"] for o in self.objects), "an id named two lines"
        deduped = Counter(int(o["line"][:6]) for o in first_of_id.values())
        assert set(raw) <= set(range(expected)), "a line that was never written came out (a fragment?)"
        return Figures(lines=expected, lost=len(set(range(expected)) - set(raw)),
                       repeated=sum(c - 1 for c in deduped.values()), raw_repeats=sum(c - 1 for c in raw.values()),
                       torn=self.torn)


# -- the real classify process ---------------------------------------------------------------------


class Node:
    """A log directory, a state directory and the real classifier process on them (restartable);
    every alert line any of its processes wrote ends up in ``tally``."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.tmp_path = tmp_path
        self.model = tmp_path / "model"
        build_onnx_artifact(self.model, LABELS)
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.argv = command("--model", str(self.model), "--host", "127.0.0.1", "--port", "0",
                            "--paths", str(self.logs / "*.log"), "--format", "plain",
                            "--state-dir", str(tmp_path / "state"), "--poll-interval", "0.02",
                            "--reload-interval", "0", *extra)
        self.tally = Tally()
        self.process: Process | None = None
        self.stderr: list[str] = []
        self.seen_at_start = 0
        self.starts = 0

    def start(self) -> None:
        self.process = Process(self.argv, cwd=self.tmp_path)
        self.seen_at_start = len(self.tally.seen)
        self.starts += 1

    def collect(self) -> set[int]:
        while self.process is not None and not self.process.stdout.empty():
            self.tally.add(self.process.stdout.get_nowait(), self.starts)
        return self.tally.seen

    def progress(self) -> int:
        """Lines seen since the current process started."""
        return len(self.collect()) - self.seen_at_start

    def kill(self) -> None:
        assert self.process is not None
        assert self.process.proc.poll() is None, "the classifier died: " + "".join(self.process.stderr)[-2000:]
        self.process.kill()
        self._retire()

    def stop(self) -> None:
        """SIGTERM once the process is tailing: a restart right after the last line can still be loading its
        model, before its handler is installed, and would die of the signal (-15) rather than stop."""
        assert self.process is not None
        self.process.wait_for_stderr(r"tailing ", timeout=60)
        assert self.process.stop() == 0
        self._retire()

    def _retire(self) -> None:
        self.collect()
        self.stderr += self.process.stderr
        self.process = None

    def wait_seen(self, count: int, timeout: float = 90.0) -> None:
        try:
            wait_for(lambda: len(self.collect()) >= count, timeout=timeout, interval=0.02,
                     what=f"{count} distinct lines in the alert stream")
        except TimeoutError as err:
            tail = "".join(self.process.stderr if self.process else self.stderr)[-3000:]
            missing = sorted(set(range(count)) - self.tally.seen)
            raise AssertionError(f"{err}: {len(self.tally.seen)} seen, missing {missing[:3]}..{missing[-3:]};"
                                 f" stderr:\n{tail}") from None


@pytest.fixture
def make_node(tmp_path):
    made: list[Node] = []

    def make(*extra: str) -> Node:
        made.append(Node(tmp_path, *extra))
        return made[-1]

    yield make
    for each in made:
        if each.process is not None:
            each.process.kill()


def test_kill_9_mid_stream_loses_nothing_and_repeats_only_the_batch_in_flight_with_its_ids(make_node):
    node = make_node()
    total, kills = 4000, 0
    rng = random.Random(17)
    target = rng.randint(20, 200)
    node.start()
    with open(node.logs / "app.log", "ab", buffering=0) as app, open(node.logs / "web.log", "ab", buffering=0) as web:
        seq = 0
        while seq < total or kills < 6:
            (app if seq % 20 else web).write(lines(seq, 10))  # two files, 10 lines at a time
            seq += 10
            time.sleep(0.04)  # pacing the writer (~250 lines/s), not synchronisation
            if node.progress() >= target:  # mid-stream: the process is busy with the lines still coming
                node.kill()
                kills += 1
                node.start()
                target = rng.randint(20, 200)
    node.wait_seen(seq)
    node.stop()
    figures = node.tally.figures(seq)
    figures.report("kill -9", kills=kills)
    assert figures.lost == 0 and figures.repeated == 0
    assert node.tally.repeats_are_the_tail_of_a_killed_process()  # at most the batch in flight at each kill
    assert figures.torn <= kills


def test_a_second_classifier_on_the_same_offsets_waits_not_ready_and_resumes_where_the_first_stopped(make_node):
    # A forced pod delete lets a node's next classifier start before the last one has exited.
    node = make_node()
    log = node.logs / "app.log"
    node.start()
    log.write_bytes(lines(0, 300))
    node.wait_seen(300)
    second = Process(node.argv, cwd=node.tmp_path)
    try:
        second.wait_for_stderr(r"another classifier is using these read offsets")
        url = second.wait_for_stderr(r"listening on (http://\S+)").group(1)
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"{url}/readyz", timeout=10)
        assert not_ready.value.code == 503 and b"waiting for another classifier" in not_ready.value.read()
        with open(log, "ab", buffering=0) as app:
            app.write(lines(300, 300))
        node.wait_seen(600)  # the first one classifies them; the second reads nothing while it waits
        assert second.stdout.empty()
        node.stop()
        second.wait_for_stderr(r"taken; reading from the offsets the other classifier left")
        with open(log, "ab", buffering=0) as app:
            app.write(lines(600, 300))
        for record in second.stdout_records(300):
            node.tally.add(json.dumps(record) + "\n", process=2)
        assert second.stop() == 0
    finally:
        if second.proc.poll() is None:
            second.kill()
    figures = node.tally.figures(900)
    assert figures.lost == 0 and figures.raw_repeats == 0
    assert sorted(node.tally.by_process[2]) == list(range(600, 900))  # exactly what the first left unread


def test_copytruncate_regrowing_past_the_old_size_is_read_from_0_without_a_fragment(make_node):
    node = make_node()
    log = node.logs / "app.log"
    node.start()
    seq, rounds = 0, 0
    log.write_bytes(lines(seq, 100))
    seq += 100
    while seq < 2000:
        node.wait_seen(seq)  # copytruncate keeps what the copy holds; the tailer has read it all
        shutil.copyfile(log, node.logs / f"app.log.{rounds}")  # not matched by *.log
        with open(log, "r+b") as handle:
            handle.truncate(0)
            handle.write(lines(seq, 101 + rounds))  # longer than the old content, before the next poll
        seq += 101 + rounds
        rounds += 1
    node.wait_seen(seq)
    node.stop()
    figures = node.tally.figures(seq)
    regrown = [m for m in (re.search(r"truncated \((\d+) bytes now, (\d+) read\)", s) for s in node.stderr) if m]
    figures.report("copytruncate + regrowth", truncations=rounds, detected_past_old_size=sum(
        int(m.group(1)) >= int(m.group(2)) for m in regrown))
    assert figures.lost == 0 and figures.repeated == 0 and figures.raw_repeats == 0
    assert any(int(m.group(1)) >= int(m.group(2)) for m in regrown)  # told by the first bytes, not the size


def test_rename_rotation_drains_the_rotated_file_through_its_descriptor(make_node):
    node = make_node()
    log = node.logs / "app.log"
    log.touch()
    node.start()
    # A file renamed away before the tailer ever saw it is out of reach (the glob does not match *.log.N):
    # rotations start once the tailer follows the file; each later file is then found at the next poll.
    node.process.wait_for_stderr(re.escape(str(log)) + ": tailing from offset 0", timeout=60)
    seq, rotations = 0, 0
    out = open(log, "ab", buffering=0)
    try:
        while seq < 2000:
            out.write(lines(seq, 10))
            seq += 10
            time.sleep(0.01)  # pacing
            if seq % 100 == 0:  # rotate without waiting: the tail is read after the rename
                out.close()
                log.rename(node.logs / f"app.log.{rotations}")
                out = open(log, "ab", buffering=0)
                rotations += 1
    finally:
        out.close()
    node.wait_seen(seq)
    node.stop()
    figures = node.tally.figures(seq)
    figures.report("rename rotation", rotations=rotations)
    assert figures.lost == 0 and figures.repeated == 0 and figures.raw_repeats == 0


class Teacher(BaseHTTPRequestHandler):
    posts = 0

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        Teacher.posts += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_teacher_outages_never_hold_back_or_repeat_a_verdict(make_node):
    teacher = ThreadingHTTPServer(("127.0.0.1", 0), Teacher)
    threading.Thread(target=teacher.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{teacher.server_address[1]}"
    node = make_node("--teacher-url", url, "--escalate-below", "1.01", "--sample-rate", "1",
                "--escalation-timeout", "0.2", "--escalation-rps", "200")
    node.start()
    seq = 0
    with open(node.logs / "app.log", "ab", buffering=0) as app:
        while seq < 2000:
            if seq == 1000:  # the teacher goes away altogether: connections refused from now on
                node.wait_seen(seq)
                teacher.shutdown()
                teacher.server_close()
            app.write(lines(seq, 20))
            seq += 20
            time.sleep(0.01)  # pacing
    node.wait_seen(seq)
    node.stop()
    figures = node.tally.figures(seq)
    unanswered = [s for s in node.stderr if "teacher did not answer" in s]
    figures.report("teacher outage", teacher_requests_refused_503=Teacher.posts, batches_unanswered=len(unanswered))
    assert figures.lost == 0 and figures.repeated == 0 and figures.raw_repeats == 0
    assert Teacher.posts > 0 and unanswered  # the lines really were escalated, to a teacher that was down


# -- the pipeline in process, with a model that fails mid-batch --------------------------------------


class FlakyModel:
    """The real ONNX model, except that one ``predict`` call fails when armed: a later micro-batch of a
    ``classify`` call, after earlier ones succeeded."""

    def __init__(self, model, poison: str | None = None) -> None:
        self._model = model
        self.fail_on_call: int | None = None
        self.calls = 0
        self.failures = 0
        self.poison = poison

    def __getattr__(self, name):
        return getattr(self._model, name)

    def arm(self, call: int) -> None:
        self.fail_on_call, self.calls = call, 0

    def predict(self, texts):
        self.calls += 1
        if self.calls == self.fail_on_call or (self.poison is not None and any(self.poison in t for t in texts)):
            self.fail_on_call = None
            self.failures += 1
            raise RuntimeError("injected: the model failed on this micro-batch")
        return self._model.predict(texts)


def pipeline_over(tmp_path: Path, poison: str | None = None) -> tuple[TailPipeline, FlakyModel, io.StringIO]:
    build_onnx_artifact(tmp_path / "model", LABELS)
    classifier = load_classifier(tmp_path / "model", threads=1, cache_size=20_000, batch_size=16,
                                 max_line_chars=16 * 1024)
    flaky = classifier.model = FlakyModel(classifier.model, poison)
    holder = ModelHolder()
    holder.swap(classifier)
    tailer = Tailer([str(tmp_path / "logs" / "*.log")], state_dir=tmp_path / "state", fmt="plain",
                    scan_interval=0.0, rotate_wait=0.0)
    out = io.StringIO()
    return TailPipeline(tailer, holder, ClassifierMetrics(CollectorRegistry()), out), flaky, out


def step(pipeline: TailPipeline) -> int:
    """What ``logdistill classify``'s loop does: a failed step is logged and the loop goes on."""
    try:
        return pipeline.step()
    except RuntimeError:
        return -1


def test_a_classify_that_raises_mid_batch_hands_the_batch_back_and_nothing_is_lost(tmp_path):
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "app.log"
    pipeline, flaky, out = pipeline_over(tmp_path)
    rng = random.Random(7)
    seq, failed_steps = 0, 0
    while seq < 2000:
        count = rng.randint(40, 160)
        with open(log, "ab") as app:
            app.write(lines(seq, count))
        seq += count
        if rng.random() < 0.6:
            flaky.arm(call=rng.randint(2, 3))  # after one or two micro-batches of this batch succeeded
        if rng.random() < 0.2:  # and the file rotates now and then, its tail not yet read
            log.rename(log.with_name(f"app.log.{seq}"))
        failed_steps += step(pipeline) < 0
        while step(pipeline) > 0:
            pass
    while step(pipeline) != 0:
        pass
    tally = Tally()
    for text in out.getvalue().splitlines(keepends=True):
        tally.add(text)
    figures = tally.figures(seq)
    figures.report("classify raises mid-batch", failed_batches=flaky.failures)
    assert flaky.failures >= 10 and failed_steps >= 10
    assert figures.lost == 0 and figures.repeated == 0 and figures.raw_repeats == 0


def test_a_line_that_always_breaks_the_model_is_skipped_after_retries_and_the_rest_go_through(tmp_path, caplog):
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "app.log"
    log.write_bytes(lines(0, 20) + b"poison error pill\n" + lines(20, 5))
    pipeline, flaky, out = pipeline_over(tmp_path, poison="pill")
    for _attempt in range(ISOLATE_AFTER):
        assert step(pipeline) == -1
        assert out.getvalue() == "" and pipeline.tailer.files == {str(log): 0}
    assert step(pipeline) == 26  # line by line: the poison line alone fails
    assert [json.loads(text)["line"] for text in out.getvalue().splitlines()] == [line(i) for i in range(25)]
    assert pipeline.tailer.files == {str(log): log.stat().st_size}
    assert "cannot classify the line" in caplog.text and str(log) in caplog.text
    with open(log, "ab") as app:
        app.write(lines(25, 3))
    assert step(pipeline) == 3  # back to whole batches
