"""OnnxClassifier: the single-line fast path scores exactly like the batch path."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from helpers.tiny_models import build_tokenizer, tiny_bert, tiny_log_lines  # noqa: E402

from logdistill.model.engine.export import save_artifact  # noqa: E402
from logdistill.model.runtime.inference import OnnxClassifier  # noqa: E402
from logdistill.model.runtime.templates import mask  # noqa: E402

pytestmark = pytest.mark.torch
LABELS = ["-", "APPERR", "KERNFAIL"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    texts = [line.split(" ", 1)[1] for line in tiny_log_lines()[:60]]
    tokenizer = build_tokenizer(texts)
    model = tiny_bert(len(tokenizer), LABELS, seed=5).eval()
    out = tmp_path_factory.mktemp("runtime") / "student"
    info = {"maxLength": 16, "teacher": "tiny", "student": {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64}}
    save_artifact(model, tokenizer, LABELS, "-", out, kind="student", spec={"x": 1}, report={}, info=info)
    return OnnxClassifier(out), [mask(t) for t in texts]


def test_single_line_probabilities_equal_the_batch_rows(classifier):
    scorer, templates = classifier
    # Mixed lengths, some longer than maxLength (truncated), so the batch path pads and truncates.
    assert len({len(t.split()) for t in templates}) > 1
    batch = scorer.predict_proba(templates)
    single = np.vstack([scorer.predict_proba([t]) for t in templates])
    assert single.shape == batch.shape == (len(templates), len(LABELS))
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, batch, atol=1e-5)
    np.testing.assert_allclose(single.sum(axis=1), 1.0, atol=1e-5)


def test_single_line_predict_matches_batch_predict(classifier):
    scorer, templates = classifier
    assert [scorer.predict([t])[0][0] for t in templates] == [label for label, _ in scorer.predict(templates)]


def test_an_artifact_with_an_unknown_model_input_is_refused_naming_the_field(tmp_path):
    from helpers.onnx_artifacts import build_onnx_artifact

    from logdistill.model.runtime.artifact import ArtifactError, verify_artifact

    build_onnx_artifact(tmp_path / "old", ["-", "ERROR"], {"error": "ERROR"})
    assert verify_artifact(tmp_path / "old").input == "template"  # made before inputs were recorded
    build_onnx_artifact(tmp_path / "new", ["-", "ERROR"], {"error": "ERROR"}, model_input="subword-soup")
    with pytest.raises(ArtifactError, match=r"info.input 'subword-soup' is not one of template, light"):
        verify_artifact(tmp_path / "new")
