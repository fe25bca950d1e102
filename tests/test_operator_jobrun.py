"""The Job entrypoint: runs `logdistill distill`, always leaves a summary or an error in place."""

from __future__ import annotations

import json
import subprocess
import sys


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
