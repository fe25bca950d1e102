"""A student's alert bar (``student.alertBelow``) is recorded in its artifact and decides its answers wherever
the artifact is scored: the edge's classifier, the distiller's evaluation and gate, the quality protocol."""

from __future__ import annotations

import pytest

from helpers.onnx_artifacts import build_onnx_artifact

from logdistill.model.engine.evaluate import predict_texts, quality
from logdistill.model.engine.quality_models import ArtifactModel
from logdistill.model.runtime.artifact import ArtifactError, verify_artifact
from logdistill.model.runtime.inference import OnnxClassifier
from logdistill.spec import parse_spec

LABELS = ["-", "ERROR", "FAIL"]
UNSURE = "kernel widget job started"  # no keyword: P(normal) = 0.58, P(ERROR) = P(FAIL) = 0.21
SURE = "disk error seen"


def test_a_barred_artifact_answers_its_top_alert_when_unsure_and_an_unbarred_one_its_top_label(tmp_path):
    build_onnx_artifact(tmp_path / "plain", LABELS, {"error": "ERROR"})
    build_onnx_artifact(tmp_path / "barred", LABELS, {"error": "ERROR"}, alert_below=0.7)
    plain, barred = OnnxClassifier(tmp_path / "plain"), OnnxClassifier(tmp_path / "barred")
    assert plain.alert_below is None and barred.alert_below == 0.7

    (label, score), (sure, _) = barred.predict([UNSURE, SURE])
    assert (label, sure) == ("ERROR", "ERROR")  # the first of two equally likely alerts
    assert score == pytest.approx(1 / (2.718281828 + 2), abs=1e-3)  # its own probability, below any confidence bar
    assert [label for label, _ in plain.predict([UNSURE, SURE])] == ["-", "ERROR"]
    assert [label for label, _ in barred.predict([UNSURE])] == [barred.predict([UNSURE, SURE])[0][0]]  # one line

    # The distiller's evaluation (and so the gate) and the quality protocol decide as the edge does.
    assert [label for label, _ in predict_texts(barred, [UNSURE, SURE])] == ["ERROR", "ERROR"]
    assert quality(barred, [UNSURE], ["-"])["alert"]["fp"] == 1
    assert quality(plain, [UNSURE], ["-"])["alert"]["fp"] == 0
    assert ArtifactModel(tmp_path / "barred", threads=1).predict([UNSURE]) == ["ERROR"]


@pytest.mark.parametrize("bar", [0, 1.5, "0.5", True])
def test_an_artifact_with_a_bar_that_is_not_a_probability_is_refused_naming_the_field(tmp_path, bar):
    build_onnx_artifact(tmp_path / "bad", LABELS, {"error": "ERROR"}, alert_below=bar)
    with pytest.raises(ArtifactError, match=r"info.alertBelow .* is not a probability in \(0, 1\]"):
        verify_artifact(tmp_path / "bad")


def test_the_spec_takes_a_bar_in_0_1_and_names_the_field_otherwise():
    body = {"teacher": {"checkpoint": "t"}, "student": {"alertBelow": 0.7}}
    assert parse_spec(body).student.alert_below == 0.7
    assert parse_spec({"teacher": {"checkpoint": "t"}}).student.alert_below is None
    for bad in (0, 1.2):
        with pytest.raises(Exception, match="student.alertBelow"):
            parse_spec({"teacher": {"checkpoint": "t"}, "student": {"alertBelow": bad}})


def test_the_edges_self_test_reports_the_answer_the_bar_gives(tmp_path):
    from logdistill.edge.selftest import run_self_test

    build_onnx_artifact(tmp_path / "plain", LABELS, {"panic": "FAIL"})  # the self-test line has no keyword
    build_onnx_artifact(tmp_path / "barred", LABELS, {"panic": "FAIL"}, alert_below=0.7)
    assert run_self_test(OnnxClassifier(tmp_path / "plain")).label == "-"
    assert run_self_test(OnnxClassifier(tmp_path / "barred")).label == "ERROR"
