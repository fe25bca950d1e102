"""The cascade's parts without processes: escalation queue, rate limit, retries, the cache update
on a teacher answer, the agreement window, the teacher's batching service and template store."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from helpers.controlplane import wait_for
from helpers.onnx_artifacts import build_onnx_artifact
from prometheus_client import CollectorRegistry

from logdistill.edge.agreement import AgreementWindow
from logdistill.edge.classifier import TemplateClassifier
from logdistill.edge.escalation import (Escalation, EscalationClient, RateLimiter, TeacherAnswer, TeacherAnswers,
                                        TeacherError)
from logdistill.edge.teacher_policy import validate_results
from logdistill.edge.metrics import ClassifierMetrics
from logdistill.edge.reload import ModelHolder
from logdistill.model.runtime.data import read_logs
from logdistill.model.runtime.inference import OnnxClassifier
from logdistill.model.services.serve_teacher import TeacherMetrics, TeacherService, TeacherStore
from logdistill.model.runtime.templates import mask

LABELS = ["-", "ERROR", "FATAL"]


def known() -> list[str]:
    return LABELS  # the served model's label set, as EscalationClient asks for it


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def item(template: str, *, sample: bool = False, student: str = "-") -> Escalation:
    return Escalation(template, f"line of {template}", student, 0.99, sample)


def value(registry: CollectorRegistry, name: str, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> OnnxClassifier:
    directory = tmp_path_factory.mktemp("student")
    build_onnx_artifact(directory, LABELS, {"error": "ERROR"})  # knows nothing of "panic"
    return OnnxClassifier(directory)


# -- queue ---------------------------------------------------------------------------------------

def test_queue_is_bounded_counts_drops_and_never_blocks():
    metrics = ClassifierMetrics(CollectorRegistry())
    client = EscalationClient("http://127.0.0.1:9", labels=known, queue_size=3, batch_size=2, metrics=metrics)
    accepted = [client.offer(item(f"t{i}")) for i in range(5)]
    assert accepted == [True, True, True, False, False]
    assert len(client) == 3
    assert value(metrics.registry, "logdistill_classifier_escalations_total", result="dropped_queue_full") == 2
    # A template already queued is not queued twice (and that is no drop); samples always are.
    assert client.offer(item("t0")) is False
    assert client.counts["dropped_queue_full"] == 2


def test_take_batches_up_to_batch_size_in_order():
    client = EscalationClient("http://x", labels=known, queue_size=10, batch_size=4)
    for i in range(6):
        client.offer(item(f"t{i}"))
    assert [e.template for e in client.take()] == ["t0", "t1", "t2", "t3"]
    assert [e.template for e in client.take()] == ["t4", "t5"]
    assert client.take() == []


def test_rate_limiter_allows_rate_per_second():
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock)
    assert [limiter.delay() for _ in range(2)] == [0.0, 0.0]  # a burst of max(1, rate)
    wait = limiter.delay()
    assert wait == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.delay() == 0.0
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_deliver_retries_with_backoff_then_answers():
    calls = []

    def post(url, payload, timeout):
        calls.append(payload)
        if len(calls) < 3:
            raise TeacherError("connection refused")
        return {"results": [{"label": "FATAL", "score": 0.8, "template": "t"}] * len(payload["lines"]),
                "model": "v1"}

    answered = []
    client = EscalationClient("http://x", labels=known, rps=1000, backoff=0.001, retries=3, post=post,
                              on_answer=lambda items, answers, version: answered.append((items, answers, version)))
    client.offer(item("a"))
    client.offer(item("b", sample=True, student="ERROR"))
    assert client.deliver(client.take()) is True
    assert len(calls) == 3
    assert calls[0] == {"lines": ["line of a", "line of b"], "student": [None, "ERROR"]}
    items, answers, version = answered[0]
    assert [e.template for e in items] == ["a", "b"] and answers[0] == TeacherAnswer("FATAL", 0.8) and version == "v1"
    assert client.counts == {"sent": 2, "answered": 2, "dropped_queue_full": 0, "dropped_error": 0}
    assert client.offer(item("a")) is True  # answered: may be escalated again


@pytest.mark.parametrize("failure", [TeacherError("HTTP 500"), {"results": "garbage"}, ["not", "an", "object"]])
def test_deliver_drops_and_counts_after_retries(failure):
    def post(url, payload, timeout):
        if isinstance(failure, Exception):
            raise failure
        return failure

    metrics = ClassifierMetrics(CollectorRegistry())
    client = EscalationClient("http://x", labels=known, rps=1000, backoff=0.001, retries=2, post=post,
                              metrics=metrics)
    client.offer(item("a"))
    assert client.deliver(client.take()) is False
    assert value(metrics.registry, "logdistill_classifier_escalations_total", result="dropped_error") == 1
    assert value(metrics.registry, "logdistill_classifier_teacher_latency_seconds_count") == 3
    # An answer that came and was refused is counted per attempt; an HTTP error is no answer.
    refused = value(metrics.registry, "logdistill_classifier_teacher_answers_rejected_total", reason="bad_shape")
    assert refused == (0 if isinstance(failure, Exception) else 3)


def test_client_errors_are_not_retried():
    calls = []

    def post(url, payload, timeout):
        calls.append(1)
        raise TeacherError("HTTP 400", retry=False)

    client = EscalationClient("http://x", labels=known, rps=1000, backoff=0.001, retries=5, post=post)
    client.offer(item("a"))
    assert client.deliver(client.take()) is False and len(calls) == 1


def test_validate_results_checks_count():
    assert validate_results({"results": [{"label": "-", "score": 1.0}]}, 2, LABELS)[0] == "bad_shape"
    assert validate_results({"results": [{"label": "-", "score": 1}]}, 1, LABELS) == ([TeacherAnswer("-", 1.0)],
                                                                                       "teacher")


def test_worker_thread_against_a_dead_port_drops_without_blocking_offer():
    client = EscalationClient("http://127.0.0.1:1", labels=known, queue_size=5, rps=1000, backoff=0.001, retries=1,
                              timeout=0.5)
    client.start()
    try:
        for i in range(50):
            client.offer(item(f"t{i}"))  # returns at once even while the worker retries
        done = threading.Event()
        for _ in range(500):
            if client.counts["dropped_error"] + client.counts["dropped_queue_full"] == 50 and len(client) == 0:
                done.set()
                break
            done.wait(0.02)
        assert done.is_set(), client.counts
    finally:
        client.stop()


# -- classifier hooks -----------------------------------------------------------------------------

def test_new_and_unsure_templates_are_offered_once(student):
    client = EscalationClient("http://x", labels=known, queue_size=100)
    classifier = TemplateClassifier(student, cache_size=100)
    classifier.attach_escalation(client, escalate_below=0.9, sample_rate=0.0)
    lines = ["kernel panic 1", "kernel panic 2", "disk error 3", "job 4 started"]
    classifier.classify(lines)
    offered = client.take()
    assert sorted(e.template for e in offered) == sorted({mask(line) for line in lines})
    assert all(not e.sample for e in offered)
    classifier.classify(lines)  # cached: nothing new
    assert client.take() == []


def test_teacher_answer_becomes_the_cached_answer_and_corrections_are_emitted(student, tmp_path):
    import io

    metrics = ClassifierMetrics(CollectorRegistry())
    holder = ModelHolder()
    classifier = TemplateClassifier(student, cache_size=100, metrics=metrics)
    holder.swap(classifier)
    out = io.StringIO()
    answers = TeacherAnswers(holder, metrics, out, node="n1")
    client = EscalationClient("http://x", labels=known, queue_size=100, on_answer=answers, rps=1000,
                              post=lambda url, payload, timeout: {
                                  "results": [{"label": "FATAL" if "panic" in line else "-", "score": 0.97}
                                              for line in payload["lines"]], "model": "teacher-v"})
    classifier.attach_escalation(client, escalate_below=0.5, sample_rate=0.0)
    first = classifier.classify(["kernel panic 1", "job 2 started"])
    assert [r.label for r in first] == ["-", "-"]  # the student alone
    assert client.deliver(client.take())
    second = classifier.classify(["kernel panic 7", "kernel panic 8", "job 9 started"])
    assert [r.label for r in second] == ["FATAL", "FATAL", "-"]  # both cache levels learned it
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == 1
    assert records[0]["correction"] is True and records[0]["label"] == "FATAL" and records[0]["student"] == "-"
    assert records[0]["line"] == "kernel panic 1" and records[0]["node"] == "n1"
    assert value(metrics.registry, "logdistill_classifier_corrections_total", label="FATAL") == 1


def test_samples_are_uniform_and_carry_the_students_own_label(student):
    client = EscalationClient("http://x", labels=known, queue_size=100_000)
    classifier = TemplateClassifier(student, cache_size=100)
    classifier.attach_escalation(client, escalate_below=0.0, sample_rate=0.05, seed=1)
    lines = [f"job {i} started" for i in range(20_000)]
    for start in range(0, len(lines), 100):
        classifier.classify(lines[start:start + 100])
    samples = [e for e in client._queue if e.sample]
    assert 800 < len(samples) < 1200  # 5% of 20k = 1000
    # After the teacher relabels a template, samples still report what the student said.
    classifier.learn_from_teacher([(mask("job 1 started"), "-", "ERROR", 0.9)])
    assert classifier.classify(["job 5 started"])[0].label == "ERROR"
    classifier.attach_escalation(client, escalate_below=0.0, sample_rate=1.0)
    classifier.classify(["job 6 started"])
    assert client._queue[-1].sample and client._queue[-1].student == "-"


# -- agreement -----------------------------------------------------------------------------------

def test_agreement_window_slides_and_splits_by_teacher_label():
    clock = FakeClock()
    window = AgreementWindow(60, clock=clock)
    assert window.ratio() is None and window.snapshot()["samples"] == 0
    window.add("-", "-")
    window.add("-", "KERNDTLB")
    window.add("KERNDTLB", "KERNDTLB")
    assert window.ratio() == pytest.approx(2 / 3)
    assert window.by_label() == {"-": (1.0, 1), "KERNDTLB": (0.5, 2)}
    clock.now += 30
    window.add("-", "-")
    assert window.samples() == 4
    clock.now += 31  # the first three fall out
    assert window.samples() == 1 and window.ratio() == 1.0 and window.by_label() == {"-": (1.0, 1)}
    snapshot = window.snapshot()
    assert snapshot["windowSeconds"] == 60 and snapshot["ratio"] == 1.0 and snapshot["updated"].endswith("Z")
    assert window.samples_total == 4


def test_agreement_window_is_bounded():
    window = AgreementWindow(600, max_samples=10)
    for i in range(100):
        window.add("-", "-" if i < 95 else "X")
    assert window.samples() == 10 and window.ratio() == pytest.approx(0.5)


# -- teacher service -----------------------------------------------------------------------------

class KeywordScorer:
    """A scorer like the teacher's: FATAL for "panic", else normal; counts its calls."""

    labels = LABELS
    normal_label = "-"
    model_input = staticmethod(mask)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_proba(self, templates):
        self.calls.append(len(templates))
        probs = np.full((len(templates), 3), 0.05, dtype=np.float32)
        for row, template in enumerate(templates):
            probs[row, 2 if "panic" in template else 0] = 0.9
        return probs


def test_teacher_service_batches_stores_once_and_tracks_agreement(tmp_path):
    metrics = TeacherMetrics(CollectorRegistry())
    scorer = KeywordScorer()
    store = TeacherStore(tmp_path / "store", name="pod-a")
    service = TeacherService(scorer, version="v", max_batch=4, max_concurrency=2, metrics=metrics, store=store)
    lines = [f"kernel panic {i} on cpu{i % 3}" for i in range(6)] + ["job 1 ok", "job 2 ok"]
    results = service.classify(lines, student=["-", None, None, None, None, None, "-", None])
    assert [r["label"] for r in results] == ["FATAL"] * 6 + ["-", "-"]
    assert max(scorer.calls) <= 4
    service.classify(lines)  # the same templates again: nothing new stored
    stored = [json.loads(line) for line in (tmp_path / "store" / "pod-a.jsonl").read_text().splitlines()]
    assert len(stored) == len({mask(line) for line in lines}) == metrics.stored._value.get()
    assert stored[0]["text"] == lines[0] and stored[0]["label"] == "FATAL" and set(stored[0]["probs"]) == set(LABELS)
    records = read_logs(tmp_path / "store", "jsonl", strict=True).records
    assert [r.label for r in records] == [s["label"] for s in stored]
    assert service.agreement.ratio() == 0.5 and metrics.agreement._value.get() == 0.5
    # A restart reads the templates back: nothing is written twice.
    store.close()
    again = TeacherStore(tmp_path / "store", name="pod-a")
    assert len(again) == len(stored)
    assert again.add(lines[0], mask(lines[0]), "FATAL", {}) == "known"


def test_teacher_store_is_bounded(tmp_path):
    store = TeacherStore(tmp_path, name="p", max_bytes=300)
    outcomes = [store.add(f"line {i}", f"template {'x' * i}", "-", {"-": 1.0}) for i in range(10)]
    assert outcomes[0] == "stored" and outcomes[-1] == "full"
    assert (tmp_path / "p.jsonl").stat().st_size <= 300


def test_teacher_service_requests_merge_into_batches():
    scorer = KeywordScorer()
    entered, gate = threading.Event(), threading.Event()
    inner = scorer.predict_proba

    def held(templates):
        entered.set()
        gate.wait(120)  # released below
        return inner(templates)

    scorer.predict_proba = held
    service = TeacherService(scorer, version="v", max_batch=32, max_concurrency=1)
    words = [chr(97 + i % 26) * (1 + i // 26) for i in range(40)]
    threads = [threading.Thread(target=service.classify, args=([f"job {w} started"],)) for w in words]
    try:
        threads[0].start()  # the worker takes it alone and holds it
        assert entered.wait(60), "the first request never reached the scorer"
        for thread in threads[1:]:
            thread.start()
        wait_for(lambda: service._pending.qsize() >= 39, 60, 0.01, "39 requests queued behind the first")
    finally:
        gate.set()
    for thread in threads:
        thread.join(10)
    assert sum(scorer.calls) == 40
    assert scorer.calls == [1, 32, 7]  # queued requests merged into full batches


def test_agreement_gauge_is_absent_until_a_teacher_has_answered() -> None:
    """Without a teacher the gauge must not read 0 ("total disagreement"): it would trip the alert."""
    registry = CollectorRegistry()
    metrics = ClassifierMetrics(registry)
    assert registry.get_sample_value("logdistill_classifier_teacher_agreement_ratio") is None
    window = AgreementWindow()
    window.add("-", "-")
    window.add("-", "KERNDTLB")
    metrics.set_agreement(window, 2)
    metrics.set_agreement(window, 0)  # a second publication must not register twice
    assert registry.get_sample_value("logdistill_classifier_teacher_agreement_ratio") == 0.5


def test_decide_flags_a_low_normal_probability_as_the_top_alert():
    from logdistill.model.runtime.inference import decide

    probs = np.array([[0.35, 0.30, 0.35],   # a tie at the top: argmax picks normal (index 0)
                      [0.45, 0.40, 0.15],   # normal is the argmax but below the bar
                      [0.90, 0.05, 0.05],   # confidently normal
                      [0.10, 0.20, 0.70]])  # an alert either way
    assert decide(probs, 0).tolist() == [0, 0, 0, 2]
    assert decide(probs, 0, alert_below=0.5).tolist() == [2, 1, 0, 2]
    assert decide(probs, 0, alert_below=0.3).tolist() == [0, 0, 0, 2]
    assert decide(probs[:, [1, 0, 2]], 1, alert_below=0.5).tolist() == [2, 0, 1, 2]  # normal need not be first


def test_teacher_service_alert_below_answers_the_top_alert_when_unsure():
    class UnsureScorer(KeywordScorer):
        def predict_proba(self, templates):
            return np.array([[0.4, 0.35, 0.25] if "strange" in t else [0.9, 0.05, 0.05] for t in templates],
                            dtype=np.float32)

    plain = TeacherService(UnsureScorer(), version="v", max_batch=4, max_concurrency=1)
    barred = TeacherService(UnsureScorer(), version="v", max_batch=4, max_concurrency=1, alert_below=0.5)
    lines = ["strange parity event 7", "job 1 ok"]
    assert [r["label"] for r in plain.classify(lines)] == ["-", "-"]
    answers = barred.classify(lines)
    assert [r["label"] for r in answers] == [LABELS[1], "-"]
    assert answers[0]["score"] == pytest.approx(0.35)
