"""The chart's PrometheusRule checked and unit-tested by the real promtool (Debian's prometheus package,
hack/install-prometheus.sh): every alert is shown firing and not firing in tests/alerts/*.test.yaml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from chart_helpers import rule_groups

ALERT_TESTS = Path(__file__).resolve().parent / "alerts"
RULES_FILE = "logdistill-rules.yaml"  # the name the test files' rule_files refer to


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run hack/install-prometheus.sh (apt-get install prometheus)")
    return path


def _write_rules(directory: Path, set_values: dict | None = None) -> Path:
    rules = directory / RULES_FILE
    rules.write_text(yaml.safe_dump(rule_groups(set_values), sort_keys=False))
    for test_file in ALERT_TESTS.glob("*.test.yaml"):
        shutil.copy(test_file, directory / test_file.name)
    return rules


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def test_promtool_check_rules(tmp_path):
    proc = _run("check", "rules", str(_write_rules(tmp_path)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 4 rules found" in proc.stdout


def test_promtool_unit_tests_pass(tmp_path):
    _write_rules(tmp_path)
    tests = sorted(str(p) for p in tmp_path.glob("*.test.yaml"))
    assert tests
    proc = _run("test", "rules", *tests)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_is_shown_firing_and_not_firing():
    alerts = {rule["alert"] for group in rule_groups()["groups"] for rule in group["rules"]}
    firing: set[str] = set()
    quiet: set[str] = set()
    for test_file in ALERT_TESTS.glob("*.test.yaml"):
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alerts == firing == quiet


def test_unit_tests_follow_the_chart_thresholds(tmp_path):
    """The same cases fail when the gate moves: the tests exercise the rendered rules, not a copy."""
    _write_rules(tmp_path, {"prometheusRule.accuracyGate": 0.8})
    proc = _run("test", "rules", *sorted(str(p) for p in tmp_path.glob("*.test.yaml")))
    assert proc.returncode != 0
    assert "LogdistillStudentAccuracyBelowGate" in proc.stdout + proc.stderr
