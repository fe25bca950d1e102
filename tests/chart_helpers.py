"""Rendering the Helm chart for the chart, alert, dashboard and Prometheus tests (real ``helm``).

helm comes from ``hack/build-k8s.sh`` (``make cluster-bin``) in ``$K8S_BIN``, like the control plane.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterable

import yaml

from helpers.controlplane import bin_dir

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "logdistill"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
DASHBOARD_JSON = CHART / "dashboards" / "logdistill.json"


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its output."""


def helm_path() -> Path:
    path = bin_dir() / "helm"
    if not path.is_file():
        raise FileNotFoundError(f"helm not found at {path}: run `make cluster-bin` (hack/build-k8s.sh) or set K8S_BIN")
    return path


def helm(*args: Any, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs helm with its caches in a private place; returns the completed process (never raises)."""
    run_env = dict(os.environ if env is None else env)
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"logdistill-helm-{os.getuid()}"
    for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"), ("HELM_DATA_HOME", "data")):
        run_env.setdefault(var, str(home / sub))
    return subprocess.run([str(helm_path()), *map(str, args)], capture_output=True, text=True, env=run_env,
                          timeout=timeout)


def template_args(values_files: Iterable[Path] = (), set_values: dict[str, Any] | None = None,
                  namespace: str = "logdistill-system", release: str = "logdistill") -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for path in values_files:
        args += ["-f", str(path)]
    for key, value in (set_values or {}).items():
        # --set keeps floats as strings; JSON keeps every type.
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def render_text(*extra: str, **kwargs: Any) -> str:
    proc = helm(*template_args(**kwargs), *extra)
    if proc.returncode != 0:
        raise HelmError(f"helm template failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def render(**kwargs: Any) -> list[dict]:
    """The chart's objects (``helm template``), as dicts, empty documents dropped."""
    return [doc for doc in yaml.safe_load_all(render_text(**kwargs)) if doc]


def find(docs: list[dict], kind: str, name_suffix: str = "") -> list[dict]:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]


def rule_groups(set_values: dict[str, Any] | None = None) -> dict:
    """The PrometheusRule's groups as a Prometheus rule file (``{"groups": [...]}``)."""
    values = {"prometheusRule.enabled": True, **(set_values or {})}
    (rule,) = find(render(set_values=values), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}
