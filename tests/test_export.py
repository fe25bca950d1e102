"""Artifact export (weights, tokenizer, labels, int8 ONNX, manifest) and loading."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from helpers.tiny_models import build_tokenizer, tiny_bert, tiny_log_lines  # noqa: E402

from logdistill.model.runtime.artifact import LABELS, MANIFEST, ONNX_MODEL, REPORT, ArtifactError, verify_artifact  # noqa: E402
from logdistill.model.engine.export import export_onnx_fp32, load_torch_model, save_artifact  # noqa: E402
from logdistill.model.runtime.templates import mask  # noqa: E402
from logdistill.model.engine.train import encode  # noqa: E402

pytestmark = pytest.mark.torch
LABELS_ = ["-", "APPERR", "KERNFAIL"]
INFO = {"maxLength": 32, "teacher": "tiny", "student": {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64}}


@pytest.fixture(scope="module")
def texts():
    return [line.split(" ", 1)[1] for line in tiny_log_lines()[:60]]


@pytest.fixture(scope="module")
def model_and_tokenizer(texts):
    tokenizer = build_tokenizer(texts)
    model = tiny_bert(len(tokenizer), LABELS_, seed=3).eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    out = tmp_path_factory.mktemp("export") / "student"
    save_artifact(model, tokenizer, LABELS_, "-", out, kind="student", spec={"x": 1}, report={"ok": True}, info=INFO)
    return out


def test_artifact_has_every_file_and_a_verified_manifest(artifact):
    for name in ("config.json", "model.safetensors", "tokenizer.json", LABELS, ONNX_MODEL, REPORT, MANIFEST):
        assert (artifact / name).is_file(), name
    manifest = verify_artifact(artifact)
    assert manifest.kind == "student"
    assert manifest.info["labels"] == LABELS_ and manifest.info["maxLength"] == 32
    assert manifest.info["parameters"] > 1000 and manifest.info["student"]["layers"] == 2
    assert json.loads((artifact / REPORT).read_text()) == {"ok": True}
    assert not list(artifact.parent.glob(".student.tmp-*")), "staging directory left behind"


def test_published_files_get_the_umasks_modes_not_private_temp_modes(artifact):
    """mkdtemp makes 0700 and safetensors writes 0600: a classifier running as another user of the
    group could not read the weights the Job wrote."""
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    assert artifact.stat().st_mode & 0o777 == 0o777 & ~mask
    for path in artifact.iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path.name


def test_fp32_onnx_matches_torch_logits(tmp_path, model_and_tokenizer, texts):
    import onnxruntime as ort

    model, tokenizer = model_and_tokenizer
    path = export_onnx_fp32(model, tmp_path / "m.onnx", max_length=32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for batch in ([mask(texts[0])], [mask(t) for t in texts[:7]]):  # batch 1 and a padded batch
        feeds = {k: v.numpy() for k, v in encode(tokenizer, batch, 32).items()}
        (onnx_logits,) = session.run(["logits"], feeds)
        with torch.no_grad():
            torch_logits = model(**encode(tokenizer, batch, 32)).logits.numpy()
        assert np.abs(onnx_logits - torch_logits).max() < 1e-4
    assert not model.training


def test_int8_runtime_agrees_with_torch(artifact, model_and_tokenizer, texts):
    from logdistill.model.runtime.inference import OnnxClassifier

    model, tokenizer = model_and_tokenizer
    templates = [mask(t) for t in texts]
    probs = OnnxClassifier(artifact).predict_proba(templates)
    with torch.no_grad():
        reference = torch.softmax(model(**encode(tokenizer, templates, 32)).logits, -1).numpy()
    assert np.abs(probs - reference).max() < 0.05  # int8 weights: close, not equal


def test_load_round_trip(artifact, model_and_tokenizer, texts):
    model, tokenizer = model_and_tokenizer
    loaded = load_torch_model(artifact)
    assert loaded.labels == LABELS_ and loaded.normal == "-" and loaded.max_length == 32
    assert loaded.manifest is not None
    batch = encode(tokenizer, [mask(t) for t in texts[:5]], 32)
    with torch.no_grad():
        assert torch.allclose(loaded.model(**batch).logits, model(**batch).logits, atol=1e-6)


@pytest.mark.parametrize("victim", ["model.safetensors", LABELS, ONNX_MODEL, "tokenizer.json"])
def test_a_tampered_file_is_refused_naming_it(tmp_path, artifact, victim):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    data = bytearray((copy / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / victim).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=victim.replace(".", r"\.")):
        load_torch_model(copy)


def test_an_extra_file_is_refused(tmp_path, artifact):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    (copy / "evil.bin").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="evil.bin"):
        load_torch_model(copy)


def test_a_plain_transformers_checkpoint_loads_with_labels_from_config(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    model.save_pretrained(tmp_path / "plain")
    tokenizer.save_pretrained(tmp_path / "plain")
    loaded = load_torch_model(tmp_path / "plain")
    assert loaded.manifest is None
    assert loaded.labels == LABELS_ and loaded.normal == "-"


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ArtifactError, match="no config.json"):
        load_torch_model(tmp_path)
    with pytest.raises(ArtifactError, match="no such model directory"):
        load_torch_model(tmp_path / "missing")


def test_a_failed_save_leaves_nothing_behind(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match="normal label"):
        save_artifact(model, tokenizer, LABELS_, "NOPE", tmp_path / "out", kind="student", spec={}, report={},
                      info=INFO)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="student"):
        save_artifact(model, tokenizer, LABELS_, "-", tmp_path / "out", kind="student", spec={}, report={},
                      info={"maxLength": 32, "teacher": "t"})


def test_save_replaces_an_existing_artifact_whole(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    out = tmp_path / "out"
    first = save_artifact(model, tokenizer, LABELS_, "-", out, kind="teacher", spec={}, report={"n": 1}, info=INFO)
    second = save_artifact(model, tokenizer, LABELS_, "-", out, kind="teacher", spec={}, report={"n": 2}, info=INFO)
    assert first.version != second.version
    assert verify_artifact(out).version == second.version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
