"""deploy/ (plain manifests for users without Helm) is exactly what the chart renders: a drift test."""

from __future__ import annotations

import importlib.util
import sys

import yaml

from chart_helpers import ROOT, helm_path


def _renderer():
    spec = importlib.util.spec_from_file_location("logdistill_render_deploy", ROOT / "hack" / "render_deploy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_deploy_manifests_match_the_chart():
    renderer = _renderer()
    rendered = renderer.render(str(helm_path()))
    for name, text in rendered.items():
        path = ROOT / "deploy" / name
        assert path.is_file() and path.read_text() == text, f"deploy/{name} drifted: run python -P hack/render_deploy.py"


def test_deploy_manifests_are_complete_and_namespaced():
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "logdistill.yaml").read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "Namespace"
    assert docs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "CustomResourceDefinition" in kinds and "Deployment" in kinds and "ServiceAccount" in kinds
    # The CRD comes before anything else of the chart so one `kubectl apply` works.
    assert kinds.index("CustomResourceDefinition") < kinds.index("Deployment")
    for doc in docs:
        if doc["kind"] in {"Deployment", "ServiceAccount", "ConfigMap", "Role", "RoleBinding"}:
            assert doc["metadata"]["namespace"] == "logdistill-system", doc["metadata"]["name"]
    monitoring = [d["kind"] for d in yaml.safe_load_all((ROOT / "deploy" / "monitoring.yaml").read_text()) if d]
    assert monitoring == ["PodMonitor", "PrometheusRule"]
