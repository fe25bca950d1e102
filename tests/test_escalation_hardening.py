"""The edge does not trust its teacher (issue #17): every answer is checked before it is cached,
refusals are counted by a closed set of reasons, alerts are not downgraded silently, taught cache
entries expire, and metric label values stay within the model's label set.

The fault-injection test drives 1,000 malformed answers from a real HTTP stub server through the
real escalation client into a real classifier (a tiny ONNX student)."""

from __future__ import annotations

import io
import itertools
import json
import logging
import random
import threading
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import pytest
from helpers.controlplane import wait_for
from helpers.onnx_artifacts import build_onnx_artifact
from prometheus_client import CollectorRegistry

from logdistill.edge.classifier import TemplateClassifier
from logdistill.edge.escalation import (Escalation, EscalationClient, RejectionLog, TeacherAnswers, TeacherError,
                                        post_json, read_bounded)
from logdistill.edge.expiring import ExpiringMap
from logdistill.edge.metrics import ClassifierMetrics
from logdistill.edge.reload import ModelHolder
from logdistill.edge.teacher_policy import (DOWNGRADE_ACTIONS, REJECTION_REASONS, Rejection, TeacherAnswer,
                                            downgrade_action, validate_answer, validate_results)
from logdistill.model.runtime.inference import OnnxClassifier
from logdistill.model.runtime.templates import mask

LABELS = ["-", "ERROR", "FATAL"]
REJECTED = "logdistill_classifier_teacher_answers_rejected_total"
DOWNGRADES = "logdistill_classifier_teacher_downgrades_total"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def series(registry: CollectorRegistry) -> set[tuple[str, tuple]]:
    return {(s.name, tuple(sorted(s.labels.items()))) for family in registry.collect() for s in family.samples}


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> OnnxClassifier:
    directory = tmp_path_factory.mktemp("student")
    build_onnx_artifact(directory, LABELS, {"error": "ERROR", "panic": "FATAL"})
    return OnnxClassifier(directory)


def poisoned_entries(classifier: TemplateClassifier, student: OnnxClassifier) -> int:
    """Entries of either cache level that differ from what the student itself says of their template."""
    entries = list(classifier._cache.values()) + list(classifier._by_key.values())
    own = dict(zip((r.template for r in entries), student.predict([r.template for r in entries])))
    return sum((r.label, r.score) != own[r.template] for r in entries)


# -- the checks (pure) ---------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "reason"), [
    ({"label": "PWNED", "score": 0.9}, "unknown_label"),
    ({"label": "fatal", "score": 0.9}, "unknown_label"),  # labels are exact
    ({"label": "", "score": 0.9}, "unknown_label"),
    ({"label": "FATAL", "score": float("nan")}, "bad_score"),
    ({"label": "FATAL", "score": float("inf")}, "bad_score"),
    ({"label": "FATAL", "score": -1}, "bad_score"),
    ({"label": "FATAL", "score": 1.5}, "bad_score"),
    ({"label": "FATAL", "score": 10 ** 400}, "bad_score"),  # too large for a float
    ({"label": "FATAL", "score": "0.9"}, "bad_shape"),
    ({"label": "FATAL", "score": True}, "bad_shape"),
    ({"label": 3, "score": 0.9}, "bad_shape"),
    ({"label": {"nested": ["junk"]}, "score": [0.9]}, "bad_shape"),
    ({"score": 0.9}, "bad_shape"),
    ({"label": "FATAL"}, "bad_shape"),
    (["FATAL", 0.9], "bad_shape"),
    (None, "bad_shape"),
])
def test_validate_answer_refuses_with_a_reason(raw, reason):
    answer = validate_answer(raw, frozenset(LABELS))
    assert isinstance(answer, Rejection) and answer.reason == reason
    assert len(answer.detail) < 200


@pytest.mark.parametrize("raw", [{"label": "FATAL", "score": 0}, {"label": "-", "score": 1},
                                 {"label": "ERROR", "score": 0.5, "template": "extra keys are ignored"}])
def test_validate_answer_accepts_the_model_labels_with_a_probability(raw):
    assert validate_answer(raw, LABELS) == TeacherAnswer(raw["label"], float(raw["score"]))


def test_validate_results_checks_the_response_and_each_result_alone():
    good, bad = {"label": "FATAL", "score": 0.9}, {"label": "PWNED", "score": 0.9}
    assert validate_results({"results": [good, bad], "model": "t-1"}, 2, LABELS) == (
        [TeacherAnswer("FATAL", 0.9), validate_answer(bad, LABELS)], "t-1")
    for payload in ({"results": [good]}, [good, good], {"results": "x"}, {"results": [good, good], "model": 7},
                    {"results": [good, good], "model": "v" * 1000}):
        rejection = validate_results(payload, 2, LABELS)
        assert isinstance(rejection, Rejection) and rejection.reason == "bad_shape"


def test_downgrade_action_follows_the_policy():
    assert downgrade_action("ERROR", "-", "-", "refuse") == "refused"
    assert downgrade_action("ERROR", "-", "-", "record") == "applied"
    assert downgrade_action("-", "-", "-", "refuse") is None  # nothing to downgrade
    assert downgrade_action("ERROR", "FATAL", "-", "refuse") is None  # alert to alert
    assert downgrade_action("-", "FATAL", "-", "refuse") is None  # an upgrade is a correction
    with pytest.raises(ValueError, match="unknown teacher downgrade policy"):
        downgrade_action("ERROR", "-", "-", "ignore")


def test_expiring_map_forgets_after_the_ttl_and_beyond_its_size():
    keys: ExpiringMap[str, int] = ExpiringMap(10, max_size=2)
    assert keys.add("a", 1, now=0) and not keys.add("a", 9, now=5)  # re-adding keeps value and expiry
    assert keys.get("a") == 1 and keys.next_expiry == 10
    keys.add("b", 2, now=5)
    assert keys.pop_expired(9.9) == [] and keys.pop_expired(10) == ["a"] and "b" in keys
    keys.add("c", 3, now=6)
    keys.add("d", 4, now=7)
    assert keys.pop_expired(7) == ["b"] and len(keys) == 2  # over max_size: the oldest goes
    with pytest.raises(ValueError):
        ExpiringMap(0, 1)


# -- the HTTP read --------------------------------------------------------------------------------

class Body:
    """A response that hands out its body in pieces and records how much was read."""

    def __init__(self, size: int, declared: int | None = None, piece: int = 1000) -> None:
        self.left, self.piece, self.read_bytes = size, piece, 0
        self.headers = {} if declared is None else {"Content-Length": str(declared)}

    def read1(self, n: int) -> bytes:
        chunk = min(n, self.piece, self.left)
        self.left -= chunk
        self.read_bytes += chunk
        return b"x" * chunk


def test_read_bounded_reads_at_most_the_cap_and_refuses_past_it():
    body = Body(10_000_000)
    with pytest.raises(TeacherError) as caught:
        read_bounded(body, 50_000, deadline=float("inf"))
    assert caught.value.reason == "too_large" and body.read_bytes == 50_001
    declared = Body(10_000_000, declared=10_000_000)
    with pytest.raises(TeacherError) as caught:
        read_bounded(declared, 50_000, deadline=float("inf"))
    assert caught.value.reason == "too_large" and declared.read_bytes == 0  # refused unread
    assert read_bounded(Body(50_000), 50_000, deadline=float("inf")) == b"x" * 50_000


def test_read_bounded_cuts_a_body_trickled_past_the_deadline():
    clock = FakeClock()
    body = Body(100, piece=1)
    original = body.read1

    def slow_read(n: int) -> bytes:
        clock.now += 0.1  # each byte takes 0.1 s
        return original(n)

    body.read1 = slow_read
    with pytest.raises(TeacherError) as caught:
        read_bounded(body, 1000, deadline=clock.now + 1.0, clock=clock)
    assert caught.value.reason == "timeout" and body.read_bytes <= 11


def test_rejections_are_logged_once_per_reason_and_window(caplog):
    clock = FakeClock()
    report = RejectionLog(window_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="logdistill.edge.escalation"):
        for _ in range(500):
            report("bad_score", 1, "score nan")
            report("unknown_label", 2, "label 'X'")
        clock.now += 61
        report("bad_score", 1, "score inf")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "refused 1 teacher answer(s) (bad_score)" in messages[0]
    assert "refused 500 teacher answer(s) (bad_score)" in messages[2] and "score inf" in messages[2]


# -- the fault-injection run: 1,000 malformed answers over HTTP ----------------------------------

class Stub:
    """A teacher over a real socket that sends the next scripted answer for each request, then
    (when the script is done) valid FATAL answers."""

    def __init__(self) -> None:
        self.script: deque[Callable[[BaseHTTPRequestHandler, int], None]] = deque()
        self.served = 0
        self.valid_served = 0
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                count = len(request["lines"])
                with stub._lock:
                    answer = stub.script.popleft() if stub.script else None
                    if answer is not None:
                        stub.served += 1
                try:
                    if answer is None:
                        send(self, json.dumps({"results": [{"label": "FATAL", "score": 0.97}] * count,
                                               "model": "t-1"}).encode())
                        with stub._lock:
                            stub.valid_served += 1
                    else:
                        answer(self, count)
                except OSError:  # the client gave up on this answer (too large, too slow)
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Stub:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        STUB_RELEASE.set()  # the slow answers end
        self.server.shutdown()
        self.server.server_close()


def send(handler: BaseHTTPRequestHandler, body: bytes, *, length: int | None = None) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)


def json_answer(text: str) -> Callable:
    return lambda handler, count: send(handler, text.encode())


def one(label: Any, score: Any) -> Callable:
    return lambda handler, count: send(handler, json.dumps({"results": [{"label": label, "score": score}] * count})
                                       .encode())


CAP = 64 * 1024


def declared_too_large(handler: BaseHTTPRequestHandler, count: int) -> None:
    send(handler, b"{" + b" " * (4 * CAP) + b"}")


def undeclared_too_large(handler: BaseHTTPRequestHandler, count: int) -> None:
    handler.send_response(200)
    handler.send_header("Connection", "close")  # a body delimited by closing, no length
    handler.end_headers()
    handler.close_connection = True
    handler.wfile.write(b'{"results": [' + b'{"label": "FATAL", "score": 0.5},' * (CAP // 20) + b"]}")


def chunked_too_large(handler: BaseHTTPRequestHandler, count: int) -> None:
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    piece = b" " * 8192
    for _ in range(4 * CAP // len(piece)):
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
    handler.wfile.write(b"0\r\n\r\n")


def slow(handler: BaseHTTPRequestHandler, count: int) -> None:
    STUB_RELEASE.wait(5)  # longer than the client's timeout
    send(handler, json.dumps({"results": [{"label": "FATAL", "score": 0.9}] * count}).encode())


def trickle(handler: BaseHTTPRequestHandler, count: int) -> None:
    body = json.dumps({"results": [{"label": "FATAL", "score": 0.9}] * count}).encode()
    send(handler, b"", length=len(body))
    for byte in body:  # one byte every 20 ms: each within the socket timeout, the whole past it
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        if STUB_RELEASE.wait(0.02):
            return


STUB_RELEASE = threading.Event()

# (reason, answer); the cheap ones are cycled to fill 1,000.
CHEAP = [
    ("unknown_label", one("PWNED", 0.99)), ("unknown_label", one("fatal", 0.9)), ("unknown_label", one("", 0.9)),
    ("unknown_label", one("x" * 5000, 0.9)), ("unknown_label", one("FATAL ", 0.9)),
    ("bad_score", json_answer('{"results": [{"label": "FATAL", "score": NaN}]}')),
    ("bad_score", json_answer('{"results": [{"label": "FATAL", "score": Infinity}]}')),
    ("bad_score", json_answer('{"results": [{"label": "FATAL", "score": -Infinity}]}')),
    ("bad_score", json_answer('{"results": [{"label": "FATAL", "score": 1e999}]}')),
    ("bad_score", json_answer('{"results": [{"label": "FATAL", "score": 1' + "0" * 400 + "}]}")),
    ("bad_score", one("FATAL", -1)), ("bad_score", one("FATAL", 1.5)), ("bad_score", one("-", -0.0001)),
    ("bad_shape", one("FATAL", "0.9")), ("bad_shape", one("FATAL", True)), ("bad_shape", one(5, 0.9)),
    ("bad_shape", one(None, 0.9)), ("bad_shape", one({"a": [1, {"b": [None]}]}, {"c": 0.9})),
    ("bad_shape", json_answer('{"results": [{"score": 0.9}]}')),
    ("bad_shape", json_answer('{"results": [{"label": "FATAL"}]}')),
    ("bad_shape", json_answer('{"results": []}')),
    ("bad_shape", json_answer('{"results": [{"label": "FATAL", "score": 0.9}, {"label": "-", "score": 0.9}]}')),
    ("bad_shape", json_answer('[{"label": "FATAL", "score": 0.9}]')),
    ("bad_shape", json_answer('{"results": "FATAL"}')),
    ("bad_shape", json_answer('{"results": [{"label": "FATAL", "score": 0.9}], "model": {"v": 1}}')),
    ("bad_shape", json_answer('"just a string"')),
    ("not_json", json_answer("not json")), ("not_json", json_answer("")),
    ("not_json", json_answer("<html><body>502 Bad Gateway</body></html>")),
    ("not_json", json_answer('{"results": [{"label": "FATAL", "score": 0.9}')),
    ("not_json", lambda handler, count: send(handler, b"\xff\xfe\x00garbage")),
    ("not_json", json_answer("[" * 50_000 + "]" * 5)),  # nesting deeper than the parser's recursion limit
]
COSTLY = ([("too_large", declared_too_large)] * 10 + [("too_large", undeclared_too_large)] * 10
          + [("too_large", chunked_too_large)] * 10 + [("timeout", slow)] * 6 + [("timeout", trickle)] * 4)
MALFORMED = 1000


def malformed_script() -> list[tuple[str, Callable]]:
    cheap = itertools.islice(itertools.cycle(CHEAP), MALFORMED - len(COSTLY))
    script = list(cheap) + COSTLY
    random.Random(17).shuffle(script)
    return script


def lines_of(words: int, start: int = 0) -> list[str]:
    letters = "ghkmnpqrstvwxyz"  # no hex digits: every line is its own template
    combos = itertools.islice(itertools.product(letters, repeat=3), start, start + words)
    return [f"job {''.join(c)} started on node 7" for c in combos]


def test_a_thousand_malformed_answers_poison_nothing_and_are_counted_by_reason(student, caplog):
    script = malformed_script()
    expected = Counter(reason for reason, _ in script)
    assert sum(expected.values()) == MALFORMED and set(expected) == set(REJECTION_REASONS)

    registry = CollectorRegistry()
    metrics = ClassifierMetrics(registry)
    holder = ModelHolder()
    classifier = TemplateClassifier(student, cache_size=5000, metrics=metrics)
    holder.swap(classifier)
    answers = TeacherAnswers(holder, metrics, io.StringIO())
    lines = lines_of(MALFORMED)

    STUB_RELEASE.clear()
    with Stub() as stub, caplog.at_level(logging.WARNING, logger="logdistill.edge.escalation"):
        stub.script.extend(answer for _, answer in script)
        # A frozen clock: the log window (a minute) cannot pass however slow this machine is.
        client = EscalationClient(stub.url, labels=answers.labels, queue_size=2 * MALFORMED, batch_size=1,
                                  rps=1e6, timeout=0.3, retries=0, metrics=metrics, on_answer=answers,
                                  max_answer_bytes=CAP, clock=FakeClock())
        classifier.attach_escalation(client, escalate_below=0.5, sample_rate=0.0)
        first = classifier.classify(lines)  # the student's answers; every template is new: all offered
        assert len(client) == MALFORMED and poisoned_entries(classifier, student) == 0
        before = series(registry)
        client.start()
        try:
            wait_for(lambda: client.counts["answered"] + client.counts["dropped_error"] == MALFORMED, timeout=120,
                     what="the 1,000 malformed answers")
            assert stub.served == MALFORMED and stub.valid_served == 0

            # Nothing poisoned: every entry of both levels is the student's own, and served as before.
            assert poisoned_entries(classifier, student) == 0 and len(classifier._taught) == 0
            assert classifier.classify(lines) == first
            # Every refusal counted once, by its reason.
            refused = {reason: value(registry, REJECTED, reason=reason) for reason in REJECTION_REASONS}
            assert refused == {reason: float(expected[reason]) for reason in REJECTION_REASONS}
            assert sum(refused.values()) == MALFORMED == sum(client.rejected.values())
            # Bounded cardinality: not one new series, whatever labels the teacher sent.
            assert series(registry) == before
            # No log flood: one line per reason (the window is a minute).
            refusals = [r for r in caplog.records if "teacher answer(s)" in r.getMessage()]
            assert len(refusals) == len(REJECTION_REASONS)

            # Valid answers still teach the cache (both levels).
            valid = lines_of(20, start=MALFORMED)
            assert {r.label for r in classifier.classify(valid)} == {"-"}
            wait_for(lambda: len(classifier._taught) == 20, timeout=30, what="20 valid answers cached")
            assert stub.valid_served == 20
            assert {r.label for r in classifier.classify(valid)} == {"FATAL"}
            # A new first-level key ("node 77") of a taught template: answered by the second level.
            assert {r.label for r in classifier.classify([line.replace("7", "77") for line in valid])} == {"FATAL"}
            assert value(registry, "logdistill_classifier_corrections_total", label="FATAL") == 20
        finally:
            client.stop()


def broken_chunks(handler: BaseHTTPRequestHandler, count: int) -> None:
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    handler.wfile.write(b"zz\r\nnot a chunk size\r\n")
    handler.close_connection = True


def test_a_broken_http_answer_is_a_teacher_error_and_the_worker_survives_any_failure():
    with Stub() as stub:
        stub.script.append(broken_chunks)
        with pytest.raises(TeacherError) as caught:
            post_json(stub.url + "/v1/classify", {"lines": ["x"]}, 2.0)
        assert caught.value.reason is None  # no answer came: a dropped batch, not a refused answer

    calls = []

    def buggy_post(url, payload, timeout):
        calls.append(payload)
        if len(calls) == 1:
            raise KeyError("a bug, not a TeacherError")
        return {"results": [{"label": "FATAL", "score": 0.9}] * len(payload["lines"])}

    client = EscalationClient("http://x", labels=lambda: LABELS, rps=1e6, post=buggy_post)
    client.start()
    try:
        client.offer(Escalation("a", "line a", "-", 0.5, False))
        wait_for(lambda: client.counts["dropped_error"] == 1, timeout=10, what="the failed batch counted")
        client.offer(Escalation("a", "line a", "-", 0.5, False))  # released: may be offered again
        wait_for(lambda: client.counts["answered"] == 1, timeout=10, what="the worker still answering")
    finally:
        client.stop()


# -- the downgrade policy ---------------------------------------------------------------------------

def downgrade_setup(student, policy: str):
    metrics = ClassifierMetrics(CollectorRegistry())
    holder = ModelHolder()
    classifier = TemplateClassifier(student, cache_size=100, metrics=metrics)
    holder.swap(classifier)
    out = io.StringIO()
    answers = TeacherAnswers(holder, metrics, out, node="n1", downgrade=policy)
    line = "disk error 3"
    assert classifier.classify([line])[0].label == "ERROR"  # the student's alert
    item = Escalation(mask(line), line, "ERROR", 0.8, False)
    return metrics, classifier, answers, out, item


def test_refuse_keeps_the_alert_records_the_disagreement_once_and_counts_each(student):
    metrics, classifier, answers, out, item = downgrade_setup(student, "refuse")
    answers([item], [TeacherAnswer("-", 0.99)], "teacher-v")
    answers([item._replace(sample=True)], [TeacherAnswer("-", 0.99)], "teacher-v")  # a sample says so again
    assert classifier.classify(["disk error 4"])[0].label == "ERROR"  # the alert stands
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == 1  # written once per template
    assert records[0]["label"] == "ERROR" and records[0]["teacher"] == "-" and records[0]["downgrade"] == "refused"
    assert records[0]["student"] == "ERROR" and "correction" not in records[0] and records[0]["node"] == "n1"
    assert value(metrics.registry, DOWNGRADES, action="refused") == 2  # every refusal counted
    assert value(metrics.registry, DOWNGRADES, action="applied") == 0
    assert answers.agreement.ratio() == 0.0  # the disagreement still counts against agreement


def test_record_applies_the_downgrade_as_a_counted_correction(student):
    metrics, classifier, answers, out, item = downgrade_setup(student, "record")
    answers([item], [TeacherAnswer("-", 0.99)], "teacher-v")
    assert classifier.classify(["disk error 4"])[0].label == "-"
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == 1
    assert records[0]["label"] == "-" and records[0]["correction"] is True and records[0]["student"] == "ERROR"
    assert records[0]["downgrade"] == "applied" and records[0]["model"] == "teacher-v"
    assert value(metrics.registry, DOWNGRADES, action="applied") == 1
    assert value(metrics.registry, DOWNGRADES, action="refused") == 0
    with pytest.raises(ValueError, match="unknown teacher downgrade policy"):
        TeacherAnswers(ModelHolder(), downgrade="ignore")


def test_a_teacher_taught_alert_is_not_downgraded_by_a_later_answer(student):
    """The served label decides: an alert the teacher taught earlier is not withdrawn silently either."""
    metrics, classifier, answers, out, _ = downgrade_setup(student, "refuse")
    line = "job 5 started"
    classifier.classify([line])
    item = Escalation(mask(line), line, "-", 0.9, False)
    answers([item], [TeacherAnswer("FATAL", 0.9)], "v1")
    answers([item._replace(sample=True)], [TeacherAnswer("-", 0.9)], "v2")
    assert classifier.classify(["job 6 started"])[0].label == "FATAL"
    assert value(metrics.registry, DOWNGRADES, action="refused") == 1


def test_downgrade_and_rejection_counters_are_exported_at_zero():
    registry = CollectorRegistry()
    ClassifierMetrics(registry)
    zeros = {s.labels.get("reason") or s.labels.get("action") for family in registry.collect()
             for s in family.samples if s.name in (REJECTED, DOWNGRADES) and s.value == 0}
    assert zeros == set(REJECTION_REASONS) | set(DOWNGRADE_ACTIONS)


# -- TTL of taught entries -----------------------------------------------------------------------------

def test_taught_entries_expire_from_both_levels_and_are_asked_again(student):
    clock = FakeClock()
    classifier = TemplateClassifier(student, cache_size=100, taught_ttl=600, clock=clock)
    offered: list[Escalation] = []
    classifier.attach_escalation(type("Offers", (), {"offer": staticmethod(offered.append)})(),
                                 escalate_below=0.0, sample_rate=0.0)
    line, template = "job 1 started", mask("job 1 started")
    classifier.classify([line])
    assert [e.template for e in offered] == [template]  # new
    offered.clear()
    assert classifier.learn_from_teacher([(template, "-", "FATAL", 0.9)]) == [template]
    for second in range(599):  # a popular entry: hit all the time, from both levels
        clock.now += 1
        assert classifier.classify([line, f"job {second}{second} started"])[0].label == "FATAL"
    assert offered == []
    clock.now += 1  # 600 s after it was taught
    assert [r.label for r in classifier.classify([line, "job 12345 started"])] == ["-", "-"]
    assert len(classifier._taught) == 0
    assert all(r.label == "-" for r in list(classifier._cache.values()) + list(classifier._by_key.values()))
    assert [e.template for e in offered] == [template]  # asked again at its next miss


def test_taught_entries_beyond_the_cache_size_leave_both_levels(student):
    clock = FakeClock()
    classifier = TemplateClassifier(student, cache_size=3, taught_ttl=600, clock=clock)
    lines = [f"job {w} started" for w in ("gh", "km", "np", "qr")]
    classifier.classify(lines)
    for line in lines:
        clock.now += 1
        classifier.learn_from_teacher([(mask(line), "-", "FATAL", 0.9)])
    assert len(classifier._taught) == 3 and mask(lines[0]) not in classifier._taught
    assert all(r.template != mask(lines[0]) or r.label == "-" for r in classifier._by_key.values())
    assert classifier.classify([lines[0]])[0].label == "-"


def test_a_classify_call_racing_an_expiry_does_not_write_the_expired_answer_back(student):
    """The model runs while the teacher's answer expires: the call's first-level keys, read before
    the expiry, must not bring the expired answer back."""
    clock = FakeClock()
    classifier = TemplateClassifier(student, cache_size=100, taught_ttl=60, clock=clock)
    taught = "job 1 started"
    classifier.classify([taught])
    classifier.learn_from_teacher([(mask(taught), "-", "FATAL", 0.9)])
    model_predict = student.predict

    def predict_while_expiring(templates):
        clock.now += 61
        classifier.expire_taught()  # as the escalation or another classify thread would
        return model_predict(templates)

    classifier.model = type("Racing", (), {"predict": staticmethod(predict_while_expiring),
                                           "normal_label": "-", "version": "v"})()
    # "job 22 started" is a new key of the taught template (a second-level hit); "disk error 9" runs the model.
    results = classifier.classify(["job 22 started", "disk error 9"])
    assert results[0].label == "FATAL"  # answered before the expiry
    classifier.model = student
    assert all(r.label != "FATAL" for r in classifier._by_key.values())
    assert classifier.classify(["job 22 started"])[0].label == "-"


def test_the_classify_flags_are_closed_sets_with_safe_defaults():
    import argparse

    from logdistill.edge.main import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", "m"])
    assert (args.teacher_downgrade, args.teacher_answer_ttl, args.teacher_max_answer_bytes) == (
        "refuse", 3600.0, 4 * 1024 * 1024)
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--teacher-downgrade", "ignore"])
