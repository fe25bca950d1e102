"""The cross-process wire formats of :mod:`logdistill.contracts`: one round trip per contract
(serialize -> parse gives the same message), an oversize body refused, garbage refused with a clear error."""

from __future__ import annotations

import json

import pytest

from logdistill import contracts as c

SHA = "ab" * 32

SUMMARY = c.Summary(
    version="0123456789ab", sha256=SHA, artifact="/artifacts/m/1",
    teacher=c.TeacherScores(accuracy=0.9, macro_f1=0.8, latency_ms_p50=3.2),
    student=c.StudentScores(accuracy=0.88, macro_f1=0.76, latency_ms_p50=0.4, latency_ms_p99=0.9,
                            parameters=1234, size_bytes=56789),
    retention=0.95, gate_passed=True,
)
PROGRESS = c.Progress(stage="training", epoch=2, epochs=5, step=10, steps=40, percent=25.0, dev_macro_f1=0.71,
                      updated="2026-11-30T02:00:00Z")
AGREEMENT = c.Agreement(ratio=0.93, samples=412, window_seconds=600, updated="2026-11-30T02:00:00Z")


@pytest.mark.parametrize("message", [SUMMARY, PROGRESS, AGREEMENT, c.Progress(), c.Agreement(),
                                     c.ErrorSummary(error="teacher.checkpoint: missing")],
                         ids=["summary", "progress", "agreement", "progress-default", "agreement-empty", "error"])
def test_round_trip(message):
    text = message.serialize()
    assert len(text.encode()) <= message.LIMIT and json.loads(text) == message.to_dict()
    if isinstance(message, c.ErrorSummary):
        with pytest.raises(c.JobReportedError, match="teacher.checkpoint: missing"):
            c.Summary.parse(text)
    else:
        assert type(message).parse(text) == message


def test_summary_wire_is_camel_case_and_leaves_an_unmeasured_teacher_latency_out():
    body = json.loads(SUMMARY.model_copy(update={"teacher": c.TeacherScores(accuracy=0.9, macro_f1=0.8)}).serialize())
    assert body["gatePassed"] is True and body["student"]["latencyMsP99"] == 0.9
    assert "latencyMsP50" not in body["teacher"]
    assert c.parse_summary(SUMMARY.serialize()) == SUMMARY


@pytest.mark.parametrize("kind", [c.Summary, c.Progress, c.Agreement])
def test_oversize_is_refused_on_both_sides(kind):
    padded = json.dumps({"padding": "x" * kind.LIMIT})
    with pytest.raises(c.ContractError) as err:
        kind.parse(padded)
    assert err.value.reason.endswith("TooLarge") and str(kind.LIMIT) in str(err.value)
    big = c.Progress(stage="loading", updated="x" * c.MAX_ANNOTATION_BYTES)
    with pytest.raises(c.ContractError, match="over the 2048-byte limit"):
        big.serialize()


def test_summary_limit_is_the_termination_message_limit():
    assert c.Summary.LIMIT == c.MAX_SUMMARY_BYTES == 4096
    text = c.ErrorSummary(error="x" * 10000).serialize()
    assert len(text.encode()) <= c.MAX_SUMMARY_BYTES and json.loads(text)["error"].startswith("xxx")
    assert json.loads(c.WorkerSummary(rank=1).serialize()) == {"rank": 1}


@pytest.mark.parametrize("kind", [c.Summary, c.Progress, c.Agreement])
@pytest.mark.parametrize("garbage, reason", [
    ("", "Missing"), ("   ", "Missing"), (None, "Missing"), ("{not json", "Unreadable"), ("[1, 2]", "Unreadable"),
    ('"text"', "Unreadable"),
])
def test_garbage_is_refused_with_a_clear_error(kind, garbage, reason):
    with pytest.raises(c.ContractError) as err:
        kind.parse(garbage)
    assert err.value.reason.endswith(reason), err.value.reason
    assert kind.NAME in str(err.value)


@pytest.mark.parametrize("kind, body, field", [
    (c.Summary, {**SUMMARY.to_dict(), "sha256": "nope"}, "sha256"),
    (c.Summary, {**SUMMARY.to_dict(), "retention": -1}, "retention"),
    (c.Progress, {"stage": "dreaming"}, "stage"),
    (c.Progress, {"stage": "training", "percent": 140}, "percent"),
    (c.Agreement, {"ratio": 1.5, "samples": 3}, "ratio"),
    (c.Agreement, {"ratio": 0.5, "samples": -3}, "samples"),
])
def test_invalid_fields_are_named(kind, body, field):
    with pytest.raises(c.ContractError) as err:
        kind.parse(json.dumps(body))
    assert err.value.reason.endswith("Invalid") and field in str(err.value)


def test_gate_formula_is_shared_by_engine_and_operator():
    assert c.retention_of(0.5, 0.0) == 0.0 and c.retention_of(0.45, 0.5) == pytest.approx(0.9)
    engine = c.decide_gate(0.45, 0.5, min_macro_f1=0.4, min_retention=0.9)
    assert engine.passed and engine.report() == {"minMacroF1": 0.4, "minRetention": 0.9, "passed": True}
    assert not c.decide_gate(0.45, 0.5, min_macro_f1=0.5, min_retention=0.9).passed
    assert not c.decide_gate(0.44, 0.5, min_macro_f1=0.4, min_retention=0.9).passed
    passed, message = c.gate_decision(SUMMARY, 0.7, 0.9)
    assert passed and "retention 0.9500 (min 0.9)" in message
    disagree = SUMMARY.model_copy(update={"gate_passed": False})
    passed, message = c.gate_decision(disagree, 0.7, 0.9)
    assert not passed and "gatePassed=false" in message


def test_annotation_keys():
    assert c.PROGRESS_ANNOTATION == "logdistill.io/progress" and c.AGREEMENT_ANNOTATION == "logdistill.io/agreement"


def test_progress_travels_as_the_last_log_line_with_its_prefix():
    """The Job's progress as log lines (what the operator reads without pod-annotation RBAC): the last
    complete progress line wins; the engine's own lines in between and a line cut by the tail are skipped."""
    first = c.progress_log_line({"stage": "training", "epoch": 1, "epochs": 3, "percent": 30.0})
    last = c.progress_log_line({"stage": "teacher-training", "epoch": 2, "epochs": 3, "percent": 60.0})
    log = "\n".join(["2026-11-30 INFO engine: epoch 1 loss 0.3", first, "INFO engine: step 5/9", last,
                     "INFO engine: step 6/9"])
    assert json.loads(c.last_progress_in_log(log)) == {"epoch": 2, "epochs": 3, "percent": 60.0,
                                                       "stage": "teacher-training"}
    assert c.last_progress_in_log("INFO nothing yet\n") is None
    assert c.last_progress_in_log(c.PROGRESS_LOG_PREFIX + "\n") is None
