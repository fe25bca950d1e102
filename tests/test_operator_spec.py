"""The Kubernetes sections of DistilledModel.spec, load_spec's default model, and a torch-free operator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from logdistill.spec import DistillSpec, DistilledModelSpec, SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_of_the_kubernetes_sections():
    s = parse_spec({"teacher": {"checkpoint": "/t"}}, DistilledModelSpec)
    assert s.rollout.node_selector == {"node-role.kubernetes.io/edge": ""}
    assert s.rollout.max_unavailable == 1 and s.rollout.log_paths == ["/var/log/*.log"]
    assert s.job.backoff_limit == 1 and s.job.image is None
    assert s.storage.persistent_volume_claim.claim_name == "logdistill-artifacts"
    assert s.storage.persistent_volume_claim.sub_path == "models"


def test_load_spec_accepts_a_whole_cr_spec_by_default(tmp_path):
    example = yaml.safe_load((ROOT / "examples" / "distilledmodel.yaml").read_text())
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(example["spec"]))
    s = load_spec(path)
    assert isinstance(s, DistilledModelSpec) and s.training.epochs == 12 and s.student.hidden == 192
    # the engine-only model still refuses the Kubernetes sections when asked for explicitly
    with pytest.raises(SpecError, match="rollout"):
        load_spec(path, DistillSpec)


def test_example_is_a_valid_cr():
    example = yaml.safe_load((ROOT / "examples" / "distilledmodel.yaml").read_text())
    assert example["apiVersion"] == "logdistill.io/v1alpha1" and example["kind"] == "DistilledModel"
    parse_spec(example["spec"], DistilledModelSpec)


def test_k8s_sub_objects_are_typed():
    s = parse_spec({"teacher": {"checkpoint": "/t"},
                    "job": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                            "tolerations": [{"key": "gpu", "operator": "Exists"}]}}, DistilledModelSpec)
    assert s.job.resources.requests.cpu == "500m" and s.job.tolerations[0].operator == "Exists"
    with pytest.raises(SpecError, match="cpu"):
        parse_spec({"teacher": {"checkpoint": "/t"}, "job": {"resources": {"requests": {"cpu": "lots"}}}},
                   DistilledModelSpec)
    with pytest.raises(SpecError, match="gpus"):
        parse_spec({"teacher": {"checkpoint": "/t"}, "job": {"resources": {"requests": {"gpus": "1"}}}},
                   DistilledModelSpec)


def test_operator_package_never_imports_torch():
    code = (
        "import sys\n"
        "import logdistill.operator.main, logdistill.operator.handlers, logdistill.operator.crd\n"
        "import logdistill.operator.jobrun\n"
        "from logdistill.cli import main\n"
        "try:\n    main(['operator', 'crd'])\nexcept SystemExit:\n    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'onnxruntime'))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr


def test_rbac_subcommand_prints_the_rules():
    proc = subprocess.run([sys.executable, "-P", "-m", "logdistill", "operator", "rbac"], capture_output=True,
                          text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    rules = yaml.safe_load(proc.stdout)
    assert {"operator", "job"} <= set(rules)
    resources = {r for rule in rules["operator"] for r in rule["resources"]}
    assert {"distilledmodels", "distilledmodels/status", "jobs", "daemonsets", "events"} <= resources
    assert rules["job"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]


@pytest.mark.parametrize("name", ["distilledmodel.yaml", "distilledmodel-closed-loop.yaml"])
def test_examples_follow_the_measured_demo_recipe(name):
    """The examples document the student and training that docs/benchmarks.md measured."""
    from logdistill.model.demo import DEMO_STUDENT, DEMO_TRAINING

    spec = yaml.safe_load((ROOT / "examples" / name).read_text())["spec"]
    assert {k: spec["student"][k] for k in ("layers", "hidden", "heads", "intermediate")} == {
        k: DEMO_STUDENT[k] for k in ("layers", "hidden", "heads", "intermediate")}
    assert (spec["training"]["epochs"], spec["training"]["learningRate"]) == (
        DEMO_TRAINING["epochs"], DEMO_TRAINING["learningRate"])
