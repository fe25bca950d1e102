"""The Job's termination-message summary: valid, missing, garbage, too big, an engine error."""

from __future__ import annotations

import json

import pytest

from logdistill.operator.summary import MAX_SUMMARY_BYTES, JobReportedError, SummaryError, gate_decision, parse_summary

VALID = {
    "version": "20261128-abc123", "sha256": "0" * 64, "artifact": "/artifacts/models/m/g1",
    "teacher": {"accuracy": 0.97, "macroF1": 0.80, "latencyMsP50": 8.5},
    "student": {"accuracy": 0.95, "macroF1": 0.72, "latencyMsP50": 0.4, "latencyMsP99": 1.1,
                "parameters": 600000, "sizeBytes": 900000},
    "retention": 0.9, "gatePassed": True,
}


def test_valid_summary():
    s = parse_summary(json.dumps(VALID, separators=(",", ":")))
    assert s.version == "20261128-abc123" and s.student.macro_f1 == 0.72 and s.student.parameters == 600000
    assert s.teacher.latency_ms_p50 == 8.5 and s.gate_passed


def test_unknown_extra_fields_are_ignored_for_forward_compatibility():
    assert parse_summary(json.dumps({**VALID, "newField": 1})).retention == 0.9


@pytest.mark.parametrize("message, reason", [
    (None, "SummaryMissing"),
    ("", "SummaryMissing"),
    ("   \n", "SummaryMissing"),
    ("Traceback (most recent call last):", "SummaryUnreadable"),
    ('{"version": "x", "sha', "SummaryUnreadable"),  # truncated by the kubelet
    ("[1, 2]", "SummaryUnreadable"),
    (json.dumps({**VALID, "sha256": "nothex"}), "SummaryInvalid"),
    (json.dumps({k: v for k, v in VALID.items() if k != "student"}), "SummaryInvalid"),
    (json.dumps({**VALID, "student": {**VALID["student"], "macroF1": 1.7}}), "SummaryInvalid"),
])
def test_unusable_summaries_name_the_problem(message, reason):
    with pytest.raises(SummaryError) as err:
        parse_summary(message)
    assert err.value.reason == reason
    assert str(err.value)


def test_too_big():
    big = json.dumps({**VALID, "padding": "x" * MAX_SUMMARY_BYTES})
    with pytest.raises(SummaryError) as err:
        parse_summary(big)
    assert err.value.reason == "SummaryTooLarge" and str(MAX_SUMMARY_BYTES) in str(err.value)


def test_engine_error_is_reported():
    with pytest.raises(JobReportedError) as err:
        parse_summary('{"error": "teacher checkpoint /x not found"}')
    assert err.value.reason == "DistillationError" and "/x not found" in str(err.value)


def test_gate_decision_uses_the_spec_thresholds_and_the_engine_flag():
    s = parse_summary(json.dumps(VALID))
    assert gate_decision(s, 0.5, 0.85)[0] is True
    passed, message = gate_decision(s, 0.8, 0.85)
    assert passed is False and "0.7200" in message and "min 0.8" in message
    assert gate_decision(s, 0.5, 0.95)[0] is False
    disagree = parse_summary(json.dumps({**VALID, "gatePassed": False}))
    passed, message = gate_decision(disagree, 0.5, 0.85)
    assert passed is False and "gatePassed=false" in message
