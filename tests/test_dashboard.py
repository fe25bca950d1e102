"""The Grafana dashboard: the committed JSON is what hack/dashboard.py builds (no drift), it has the
panels the issue lists, and every classifier metric its queries name is one the classifier exports."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

from prometheus_client import CollectorRegistry

from chart_helpers import DASHBOARD_JSON, ROOT
from logdistill.edge.agreement import AgreementWindow
from logdistill.edge.metrics import ClassifierMetrics


def _builder():
    spec = importlib.util.spec_from_file_location("logdistill_dashboard_builder", ROOT / "hack" / "dashboard.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_committed_json_matches_the_code():
    assert DASHBOARD_JSON.read_text() == _builder().render(), "run: python -P hack/dashboard.py"


def test_check_mode_reports_drift(tmp_path, capsys):
    builder = _builder()
    stale = tmp_path / "logdistill.json"
    stale.write_text(DASHBOARD_JSON.read_text().replace("Anomaly rate", "Anomaly ratio"))
    assert builder.main(["--check", "--out", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert builder.main(["--out", str(stale)]) == 0
    assert builder.main(["--check", "--out", str(stale)]) == 0


def test_panels_the_issue_asks_for():
    board = json.loads(DASHBOARD_JSON.read_text())
    titles = [p["title"] for p in board["panels"]]
    for wanted in ("by label", "Anomaly rate", "p50 / p99", "cache hit ratio", "New templates per minute",
                   "Model version per node", "offline report and online estimate", "Distillation runs by phase"):
        assert any(wanted.lower() in t.lower() for t in titles), wanted
    assert board["uid"] == "logdistill-overview"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"]), panel["title"]
        assert panel.get("description"), panel["title"]
    # Panels do not overlap on Grafana's 24-column grid.
    cells = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, panel["title"]
        cells |= mine


def test_every_classifier_metric_in_a_query_is_exported():
    registry = CollectorRegistry()
    metrics = ClassifierMetrics(registry)
    # The agreement gauge registers on its first value (a classifier with a teacher).
    window = AgreementWindow()
    window.add("-", "-")
    metrics.set_agreement(window, 1)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",),
                "gauge": ("",)}
    # By family type: labelled metrics have no samples until first used.
    exported = {family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]}
    future = {m for spec in _builder().PANELS for m in spec.future_metrics}
    board = json.loads(DASHBOARD_JSON.read_text())
    used = {m for p in board["panels"] for t in p["targets"] for m in re.findall(r"logdistill_classifier_\w+", t["expr"])}
    assert used, "no classifier metric in the dashboard"
    unknown = used - exported - future
    assert not unknown, f"dashboard queries name metrics the classifier does not export: {sorted(unknown)}"
    assert not future & exported, f"now exported, drop from future_metrics: {sorted(future & exported)}"
