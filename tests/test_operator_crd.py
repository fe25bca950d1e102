"""The DistilledModel CRD: generated from the pydantic models, structural, and committed as generated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from logdistill.operator import crd
from logdistill.operator.status import DistilledModelStatus
from logdistill.spec import DistilledModelSpec

ROOT = Path(__file__).resolve().parent.parent


def _walk(node, path="$"):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _schema():
    return crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_committed_crd_matches_the_models():
    committed = (ROOT / crd.CRD_PATH).read_text(encoding="utf-8")
    assert committed == crd.render_crd(), "the committed CRD drifted: run `python -P hack/generate.py`"


def test_every_generated_file_is_current():
    """hack/generate.py --check: the CRD, the chart's RBAC rules and its admission policy."""
    proc = subprocess.run([sys.executable, "-P", str(ROOT / "hack" / "generate.py"), "--check"],
                          capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr


def test_identity_names_and_printer_columns():
    doc = yaml.safe_load((ROOT / crd.CRD_PATH).read_text())
    assert doc["metadata"]["name"] == "distilledmodels.logdistill.io"
    spec = doc["spec"]
    assert spec["scope"] == "Namespaced" and spec["names"]["kind"] == "DistilledModel"
    assert spec["names"]["shortNames"] == ["dm"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Teacher-F1": ".status.evaluation.teacher.macroF1",
        "Student-F1": ".status.evaluation.student.macroF1",
        "Serving": ".status.servingVersion",
        "Age": ".metadata.creationTimestamp",
    }


def test_schema_is_structural_and_closed():
    for path, node in _walk(_schema()):
        if not isinstance(node, dict):
            continue
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        for bad in ("anyOf", "oneOf", "allOf", "$ref", "$defs", "title", "const", "patternProperties",
                    "propertyNames"):
            assert bad not in node, f"{path} has {bad}"
        if "properties" in node and path.rsplit(".", 1)[-1] not in ("properties",):
            # every schema node with properties is an object; every property has a type
            assert node.get("type") == "object", path
            for name, child in node["properties"].items():
                assert "type" in child or child.get("x-kubernetes-int-or-string"), f"{path}.{name}"
        if node.get("type") == "array":
            assert "items" in node, path


def test_every_spec_field_is_in_the_schema_with_its_description():
    spec = _schema()["properties"]["spec"]

    def check(model, node, where):
        for name, field in model.model_fields.items():
            alias = field.alias or name
            assert alias in node["properties"], f"{where}.{alias} missing"
            child = node["properties"][alias]
            assert child.get("description"), f"{where}.{alias} has no description"
            sub = getattr(field.annotation, "model_fields", None)
            if sub is not None and child.get("type") == "object":
                check(field.annotation, child, f"{where}.{alias}")

    check(DistilledModelSpec, spec, "spec")


def test_constraints_enums_and_defaults_carry_over():
    props = _schema()["properties"]["spec"]["properties"]
    student = props["student"]["properties"]
    assert student["layers"] == {**student["layers"], "type": "integer", "minimum": 1, "maximum": 12, "default": 2}
    assert student["init"]["enum"] == ["scratch", "teacher", "pretrained"]
    gate = props["gate"]["properties"]["minMacroF1"]
    assert gate["minimum"] == 0.0 and gate["exclusiveMinimum"] is True and gate["maximum"] == 1.0
    assert props["teacher"]["properties"]["endpoint"]["properties"]["url"]["pattern"] == "^https?://"
    rollout = props["rollout"]["properties"]
    assert rollout["nodeSelector"]["default"] == {"node-role.kubernetes.io/edge": ""}
    assert rollout["nodeSelector"]["additionalProperties"]["type"] == "string"
    assert props["job"]["properties"]["tolerations"]["items"]["properties"]["effect"]["enum"] == [
        "NoSchedule", "PreferNoSchedule", "NoExecute"]
    cpu = props["job"]["properties"]["resources"]["properties"]["requests"]["properties"]["cpu"]
    assert cpu["type"] == "string" and cpu["pattern"]
    # object sections default to their full default (the API server checks it against their CEL rules)
    assert props["student"]["default"]["hidden"] == 128 and "pretrained" not in props["student"]["default"]
    # no claimName default: unset = the operator's default claim (--default-claim)
    assert props["storage"]["default"] == {"persistentVolumeClaim": {"subPath": "models"}}
    assert "default" not in props["teacher"]
    assert _schema()["properties"]["spec"]["required"] == ["teacher"]


def test_cel_rules_mirror_the_validators():
    props = _schema()["properties"]["spec"]["properties"]
    rules = lambda node: [r["rule"] for r in node.get("x-kubernetes-validations", [])]  # noqa: E731
    assert any("has(self.checkpoint)" in r for r in rules(props["teacher"]))
    assert "self.hidden % self.heads == 0" in rules(props["student"])
    assert any("pretrained" in r for r in rules(props["student"]))
    assert "self.testFraction + self.devFraction < 0.9" in rules(props["data"])
    assert rules(props["storage"]["properties"]["persistentVolumeClaim"])
    assert rules(_schema())  # metadata.name length


def test_status_schema_is_typed():
    status = _schema()["properties"]["status"]
    props = status["properties"]
    assert props["phase"]["enum"] == ["Pending", "Distilling", "RollingOut", "Ready", "Degraded", "Failed"]
    cond = props["conditions"]["items"]
    assert set(cond["required"]) >= {"type", "status", "reason", "lastTransitionTime", "observedGeneration"}
    assert cond["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    for key in ("observedGeneration", "servingVersion", "evaluation", "progress", "history"):
        assert key in props
    assert props["history"]["maxItems"] == 5
    assert set(props) == {f.alias or n for n, f in DistilledModelStatus.model_fields.items()}


def test_crd_subcommand_prints_the_same_yaml():
    proc = subprocess.run([sys.executable, "-P", "-m", "logdistill", "operator", "crd"], capture_output=True,
                          text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == crd.render_crd()
    peering = subprocess.run([sys.executable, "-P", "-m", "logdistill", "operator", "crd", "--peering"],
                             capture_output=True, text=True, cwd="/")
    docs = [d for d in yaml.safe_load_all(peering.stdout) if d]
    assert {d["metadata"]["name"] for d in docs} == {"kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}


def test_converter_rejects_unions_it_cannot_express():
    import pytest

    with pytest.raises(crd.SchemaError):
        crd.to_structural({"anyOf": [{"type": "integer"}, {"type": "string"}]}, {})
    json.dumps(crd.build_crd())  # plain data all the way down
