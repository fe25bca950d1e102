"""A tiny end-to-end distillation through the CLI: tiny teacher, tiny data, real artifact."""

from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("torch")

from helpers.tiny_models import build_tiny_teacher, tiny_log_lines  # noqa: E402

from logdistill.cli import main as cli  # noqa: E402
from logdistill.model.runtime.artifact import verify_artifact  # noqa: E402
from logdistill.model.runtime.data import load_records  # noqa: E402
from logdistill.model.runtime.splits import make_split  # noqa: E402
from logdistill.spec import parse_spec  # noqa: E402

pytestmark = pytest.mark.torch
STUDENT = {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32, "maxLength": 32}
TRAINING = {"epochs": 4, "learningRate": 0.003, "threads": 1, "batchSize": 32, "patience": 2}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    data = root / "logs.log"
    data.write_text("\n".join(tiny_log_lines()) + "\n")
    # The teacher learns the train part of the same split distill makes (same data spec, seed).
    spec = parse_spec({"teacher": {"checkpoint": "unused"}, "data": {"path": str(data)}})
    train = make_split(load_records(spec.data).records, spec.data, spec.training.seed).train
    teacher = build_tiny_teacher(root, [r.label for r in train], [r.text for r in train])
    return root, data, teacher


def _config(root, name, body):
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _spec(data, teacher, student=STUDENT, **training):
    return {"teacher": {"checkpoint": str(teacher)}, "data": {"path": str(data)}, "student": student,
            "training": {**TRAINING, **training}, "gate": {"minMacroF1": 0.05, "minRetention": 0.1}}


@pytest.fixture(scope="module")
def distilled(workspace):
    root, data, teacher = workspace
    config = _config(root, "ok", _spec(data, teacher, student={**STUDENT, "alertBelow": 0.9}))
    out, progress, summary = root / "student", root / "progress.json", root / "summary.json"
    code = cli(["distill", "--config", str(config), "--out", str(out), "--progress-file", str(progress),
                "--summary-file", str(summary)])
    return code, out, progress, summary


def test_distill_writes_a_verified_student_artifact(distilled):
    code, out, _, _ = distilled
    assert code == 0
    manifest = verify_artifact(out)
    assert manifest.kind == "student"
    assert manifest.info["student"] == {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32}
    assert manifest.info["maxLength"] == 32 and manifest.info["labels"] == ["-", "APPERR", "KERNFAIL"]
    assert set(manifest.info["summary"]) == {"teacher", "student"}
    assert manifest.spec["training"]["seed"] == 13
    assert manifest.info["alertBelow"] == 0.9 and manifest.alert_below == 0.9  # what the edge decides with
    assert not list(out.parent.glob(".student.*")), "staging left behind"


def test_report_holds_both_models_on_the_same_test_split(distilled):
    _, out, _, _ = distilled
    report = json.loads((out / "report.json").read_text())
    for who in ("teacher", "student"):
        scores = report[who]["onnxInt8"]
        assert scores["n"] == report["split"]["test"]["lines"]
        for key in ("accuracy", "macro_f1", "per_class", "confusion", "alert", "latency_ms_p50",
                    "latency_ms_p99", "throughput_lines_per_s"):
            assert key in scores, (who, key)
        assert report[who]["parameters"] > 0 and report[who]["sizeBytes"] > 0
    assert report["student"]["parameters"] < report["teacher"]["parameters"]
    training = report["training"]
    assert training["distilled"] and training["transferSet"]["augmentedLines"] > 0
    assert 1 <= training["bestEpoch"] <= training["epochsRun"] <= 4
    assert len(training["history"]) == training["epochsRun"]


def test_summary_is_compact_and_complete(distilled):
    _, out, _, summary_path = distilled
    raw = summary_path.read_bytes()
    assert len(raw) < 4096
    summary = json.loads(raw)
    assert set(summary) == {"version", "sha256", "artifact", "teacher", "student", "retention", "gatePassed"}
    assert set(summary["teacher"]) == {"accuracy", "macroF1", "latencyMsP50"}
    assert set(summary["student"]) == {"accuracy", "macroF1", "latencyMsP50", "latencyMsP99", "parameters",
                                       "sizeBytes"}
    manifest = verify_artifact(out)
    assert summary["version"] == manifest.version and summary["sha256"] == manifest.sha256
    assert summary["retention"] == pytest.approx(summary["student"]["macroF1"] / summary["teacher"]["macroF1"],
                                                 abs=2e-3)
    assert summary["gatePassed"] is (summary["student"]["macroF1"] >= 0.05 and summary["retention"] >= 0.1)


def test_progress_file_ends_done(distilled):
    _, _, progress, _ = distilled
    body = json.loads(progress.read_text())
    assert body["stage"] == "done" and body["percent"] == 100.0
    assert body["epochs"] == 4 and 1 <= body["epoch"] <= 4 and 0 < body["step"] <= body["steps"]
    assert isinstance(body["devMacroF1"], float)
    assert body["updated"].endswith("Z")
    assert not progress.with_name(progress.name + ".tmp").exists()


def test_distillation_is_reproducible(workspace, distilled):
    root, data, teacher = workspace
    _, first, _, _ = distilled
    config = _config(root, "again", _spec(data, teacher))
    assert cli(["distill", "--config", str(config), "--out", str(root / "again")]) == 0
    # Weights are bit-identical for the same seed; report.json (timings) legitimately differs.
    assert verify_artifact(root / "again").files["model.safetensors"] == verify_artifact(first).files[
        "model.safetensors"]


def test_hard_labels_only_control_runs_without_augmentation(workspace):
    root, data, teacher = workspace
    from logdistill.model.cli.distill import run_distill

    spec = parse_spec(_spec(data, teacher, alpha=0.0, epochs=2))
    summary, report = run_distill(spec, root / "nokd")
    assert report["training"]["distilled"] is False
    assert report["training"]["transferSet"]["augmentedLines"] == 0
    assert summary["student"]["parameters"] > 0


def test_config_error_names_the_field(workspace, capsys):
    root, data, teacher = workspace
    body = _spec(data, teacher)
    body["student"] = {**STUDENT, "layerz": 3}
    body["training"] = {**TRAINING, "temperature": -1}
    summary = root / "bad-summary.json"
    code = cli(["distill", "--config", str(_config(root, "bad", body)), "--out", str(root / "bad"),
                "--summary-file", str(summary)])
    assert code == 2
    err = capsys.readouterr().err
    assert "student.layerz" in err and "training.temperature" in err
    assert "student.layerz" in json.loads(summary.read_text())["error"]
    assert not (root / "bad").exists()


def test_endpoint_teacher_is_refused_by_name(workspace, capsys):
    root, data, _ = workspace
    body = _spec(data, "x")
    body["teacher"] = {"endpoint": {"url": "http://llm:8000/v1", "model": "m"}}
    summary = root / "ep-summary.json"
    code = cli(["distill", "--config", str(_config(root, "ep", body)), "--out", str(root / "ep"),
                "--summary-file", str(summary)])
    assert code == 1
    assert "teacher.endpoint" in capsys.readouterr().err
    assert "teacher.endpoint" in json.loads(summary.read_text())["error"]


def test_missing_teacher_checkpoint_is_an_error_naming_the_field(workspace, capsys):
    root, data, _ = workspace
    code = cli(["distill", "--config", str(_config(root, "nt", _spec(data, root / "nope"))), "--out",
                str(root / "nt")])
    assert code == 1
    assert "teacher.checkpoint" in capsys.readouterr().err


def test_summary_json_cuts_long_errors():
    from logdistill.contracts import ErrorSummary

    text = ErrorSummary(error="x" * 10000).serialize()
    assert len(text.encode()) <= 4096 and json.loads(text)["error"].startswith("xxx")


def test_augmented_transfer_lines_are_new_deterministic_and_bounded():
    from logdistill.model.engine.augment import augment_templates

    templates = ["RAS KERNEL FATAL data storage interrupt", "RAS APP FATAL ciod: Error reading message <NUM>",
                 "RAS KERNEL INFO cache parity error corrected"]
    first = augment_templates(templates * 3, per_template=5, seed=1)
    assert first == augment_templates(templates, per_template=5, seed=1)  # duplicates in the input ignored
    assert first != augment_templates(templates, per_template=5, seed=2)
    assert 0 < len(first) <= 15 and len(set(first)) == len(first)
    assert not set(first) & set(templates)
    assert augment_templates(templates, per_template=0, seed=1) == []
    assert len(augment_templates(templates, per_template=5, seed=1, limit=4)) == 4
    many = augment_templates(templates, per_template=30, seed=1)
    swapped = [v for v in many for t in templates if sorted(v.split()) == sorted(t.split()) and v != t]
    assert swapped, "no token-swap variant among 30 per template"


def _pretrained_with_its_own_tokenizer(root):
    """A small encoder whose vocabulary is not the teacher's (as all-MiniLM-L6-v2 under an mpnet teacher)."""
    from helpers.tiny_models import build_tokenizer, tiny_bert

    directory = root / "pretrained-own-vocab"
    if not directory.exists():
        texts = [line.split(" ", 6)[6] for line in tiny_log_lines(seed=5)]
        tokenizer = build_tokenizer(texts, vocab_size=200)
        tiny_bert(len(tokenizer), ["x", "y"], hidden=16, layers=2, heads=2, intermediate=32, seed=4) \
            .save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    return directory


def test_a_pretrained_student_keeps_its_own_tokenizer(workspace):
    from tokenizers import Tokenizer

    root, data, teacher = workspace
    pretrained = _pretrained_with_its_own_tokenizer(root)
    body = _spec(data, teacher, epochs=2)
    body["student"] = {**STUDENT, "init": "pretrained", "pretrained": str(pretrained)}
    assert cli(["distill", "--config", str(_config(root, "own-vocab", body)), "--out", str(root / "own")]) == 0
    shipped = Tokenizer.from_file(str(root / "own" / "tokenizer.json")).get_vocab()
    assert shipped == Tokenizer.from_file(str(pretrained / "tokenizer.json")).get_vocab()
    assert shipped != Tokenizer.from_file(str(teacher / "tokenizer.json")).get_vocab()
    report = json.loads((root / "own" / "report.json").read_text())
    assert report["training"]["initDetail"].startswith(f"from {pretrained}: ")
    assert report["student"]["onnxInt8"]["n"] == report["split"]["test"]["lines"]


def test_intermediate_loss_with_a_student_of_another_tokenizer_is_refused_by_name(workspace, capsys):
    root, data, teacher = workspace
    body = _spec(data, teacher, epochs=1, intermediate={"enabled": True})
    body["student"] = {**STUDENT, "init": "pretrained", "pretrained": str(_pretrained_with_its_own_tokenizer(root))}
    code = cli(["distill", "--config", str(_config(root, "own-vocab-inter", body)), "--out", str(root / "oi")])
    assert code == 1
    assert "training.intermediate" in capsys.readouterr().err and not (root / "oi").exists()


def test_an_ensemble_of_teachers_with_different_tokenizers_reports_each_member(workspace):
    root, data, teacher = workspace
    spec = parse_spec({"teacher": {"checkpoint": "unused"}, "data": {"path": str(data)}})
    train = make_split(load_records(spec.data).records, spec.data, spec.training.seed).train
    other = build_tiny_teacher(root, [r.label for r in train], [r.text for r in train], seed=1, name="teacher-b",
                               vocab_size=25)
    assert verify_artifact(other).files["tokenizer.json"] != verify_artifact(teacher).files["tokenizer.json"]
    body = _spec(data, teacher, epochs=2)
    body["teacher"] = {"ensemble": [{"checkpoint": str(teacher), "weight": 2.0},
                                    {"checkpoint": str(other), "weight": 1.0}]}
    assert cli(["distill", "--config", str(_config(root, "ensemble", body)), "--out", str(root / "ens")]) == 0
    report = json.loads((root / "ens" / "report.json").read_text())
    members = report["teacher"]["members"]
    assert [(m["source"], m["weight"]) for m in members] == [(str(teacher), 2.0), (str(other), 1.0)]
    assert all(0.0 <= m["macro_f1"] <= 1.0 and 0.0 <= m["alert_f1"] <= 1.0 for m in members)
    assert report["teacher"]["source"] == f"{teacher},{other}"
