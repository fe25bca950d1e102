"""Retention of artifact versions: which version folders go (pure), and the Job runner pruning a
real folder layout once its own run succeeded (never the served version, never trained teachers)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from logdistill.operator import jobrun, retention


@pytest.mark.parametrize("names, keep, protected, prunable", [
    (["g1", "g2", "g3"], 3, set(), []),
    (["g1", "g2", "g3", "g4"], 3, set(), ["g1"]),
    (["g1", "g2", "g3", "g4", "g5"], 2, {"g5"}, ["g1", "g2", "g3"]),
    (["g1", "g2", "g3", "g4", "g5"], 2, {"g1"}, ["g2", "g3"]),  # the served version survives
    (["g1", "g1-r1", "g1-r2", "g2", "g10"], 3, set(), ["g1", "g1-r1"]),  # numeric order, re-distillations
    (["g1", "g2", "g3"], 1, set(), ["g1"]),  # never fewer than two
    (["teacher-labels", "soft-targets-g1", "g1", "g2", "g3", "g4", "tmp", "g2x"], 2, set(), ["g1", "g2"]),
])
def test_select_prunable(names, keep, protected, prunable):
    assert retention.select_prunable(names, keep, protected) == prunable


def layout(root):
    """<subPath>/teachers/<digest> and <subPath>/<name>/{g1..g5, teacher-labels}."""
    (root / "teachers" / "abc123").mkdir(parents=True)
    (root / "teachers" / "abc123" / "manifest.json").write_text("{}")
    model = root / "bgl"
    for run in ("g1", "g2", "g3", "g4", "g5", "teacher-labels"):
        (model / run).mkdir(parents=True)
        (model / run / "manifest.json").write_text("{}")
    return model


def test_prune_removes_only_old_versions_of_the_model(tmp_path):
    model = layout(tmp_path)
    assert retention.prune(model, 3, {"g5", "g1"}) == ["g2"]
    assert sorted(p.name for p in model.iterdir()) == ["g1", "g3", "g4", "g5", "teacher-labels"]
    assert (tmp_path / "teachers" / "abc123" / "manifest.json").is_file()
    assert retention.prune(tmp_path / "missing", 3, set()) == []


def _fake_engine(monkeypatch, code: int):
    """`logdistill distill` replaced by a process that writes a summary (and exits ``code``)."""
    real = subprocess.Popen
    script = ("import sys; a = sys.argv; open(a[a.index('--summary-file') + 1], 'w').write('{}'); "
              f"sys.exit({code})")

    def popen(command, **kwargs):
        return real([sys.executable, "-c", script, *command[1:]], **kwargs)

    monkeypatch.setattr(jobrun.subprocess, "Popen", popen)


def _args(tmp_path, model, **extra):
    return argparse.Namespace(engine="distill", config="spec.yaml", out=str(model / "g6"),
                              summary_file=str(tmp_path / "termination-log"), interval=0.1, extra=[],
                              keep_versions=3, protect=["g1"], **extra)


def test_job_runner_prunes_after_its_run_succeeded(tmp_path, monkeypatch):
    model = layout(tmp_path)
    (model / "g6").mkdir()
    _fake_engine(monkeypatch, 0)
    assert jobrun.main(_args(tmp_path, model)) == 0
    assert sorted(p.name for p in model.iterdir()) == ["g1", "g4", "g5", "g6", "teacher-labels"]
    assert (tmp_path / "teachers" / "abc123").is_dir()


def test_job_runner_prunes_nothing_when_its_run_failed(tmp_path, monkeypatch):
    model = layout(tmp_path)
    _fake_engine(monkeypatch, 1)
    assert jobrun.main(_args(tmp_path, model)) == 1
    assert sorted(p.name for p in model.iterdir()) == ["g1", "g2", "g3", "g4", "g5", "teacher-labels"]
