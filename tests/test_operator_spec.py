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
    assert s.rollout.max_unavailable == 1 and s.rollout.log_paths == ["/var/log/pods/*/*/*.log"]
    assert s.job.backoff_limit == 1 and s.job.image is None and s.job.image_pull_policy is None
    assert s.storage.persistent_volume_claim.claim_name is None  # the operator's default claim
    assert s.storage.persistent_volume_claim.sub_path == "models"


def test_load_spec_accepts_a_whole_cr_spec_by_default(tmp_path):
    example = yaml.safe_load((ROOT / "examples" / "distilledmodel-closed-loop.yaml").read_text())
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(example["spec"]))
    s = load_spec(path)
    assert isinstance(s, DistilledModelSpec) and s.training.epochs == 12 and s.student.hidden == 192
    # the engine-only model still refuses the Kubernetes sections when asked for explicitly
    with pytest.raises(SpecError, match="escalation"):
        load_spec(path, DistillSpec)


def test_example_is_a_valid_cr():
    example = yaml.safe_load((ROOT / "examples" / "distilledmodel.yaml").read_text())
    assert example["apiVersion"] == "logdistill.io/v1alpha1" and example["kind"] == "DistilledModel"
    parse_spec(example["spec"], DistilledModelSpec)


def test_teacher_train_is_a_fourth_source_with_the_demo_defaults():
    from logdistill.model.engine.teacher import TeacherOptions

    s = parse_spec({"teacher": {"train": {}}}, DistilledModelSpec)
    train = s.teacher.train
    defaults = TeacherOptions()
    assert train.base == "minilm" and train.data is None and train.seed is None and train.max_per_template is None
    assert (train.epochs, train.learning_rate) == (defaults.epochs, defaults.learning_rate)
    assert s.training.seed == defaults.seed  # unset seed = training.seed = the demo teacher's
    with pytest.raises(SpecError, match="exactly one of .*teacher.train"):
        parse_spec({"teacher": {"train": {}, "checkpoint": "/t"}}, DistilledModelSpec)
    with pytest.raises(SpecError, match="base"):
        parse_spec({"teacher": {"train": {"base": "bert-huge"}}}, DistilledModelSpec)
    with pytest.raises(SpecError, match="epochs"):
        parse_spec({"teacher": {"train": {"epochs": 0}}}, DistilledModelSpec)
    with pytest.raises(SpecError, match="testFraction"):
        parse_spec({"teacher": {"train": {"data": {"testFraction": 0.6, "devFraction": 0.4}}}}, DistilledModelSpec)
    # escalation can serve a trained teacher
    parse_spec({"teacher": {"train": {}}, "escalation": {"enabled": True}}, DistilledModelSpec)


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
    from logdistill.model.cli.demo import DEMO_STUDENT, DEMO_TRAINING

    spec = yaml.safe_load((ROOT / "examples" / name).read_text())["spec"]
    assert {k: spec["student"][k] for k in ("layers", "hidden", "heads", "intermediate", "alertBelow")} == {
        k: DEMO_STUDENT[k] for k in ("layers", "hidden", "heads", "intermediate", "alertBelow")}
    assert {k: spec["training"][k] for k in ("epochs", "learningRate", "alpha", "patience")} == {
        k: DEMO_TRAINING[k] for k in ("epochs", "learningRate", "alpha", "patience")}
    intermediate = spec["training"].get("intermediate")
    if spec.get("job", {}).get("workers", 1) == 1:
        assert intermediate == DEMO_TRAINING["intermediate"]
    else:  # the intermediate-layer loss runs in one pod only (spec validation)
        assert intermediate is None
    # the teacher is trained in the cluster with the demo's teacher recipe; the classifier reads pod logs
    from logdistill.model.engine.teacher import TeacherOptions

    train = spec["teacher"]["train"]
    assert set(spec["teacher"]) == {"train"} and train["base"] == "minilm"
    assert (train.get("epochs", 3), train.get("learningRate", 1e-4), train.get("input", "light")) == (
        TeacherOptions().epochs, TeacherOptions().learning_rate, TeacherOptions().input)
    assert "logPaths" not in spec.get("rollout", {})
