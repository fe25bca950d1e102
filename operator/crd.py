"""Generate the DistilledModel CustomResourceDefinition from the pydantic models.

One source of truth: ``logdistill.spec.DistilledModelSpec`` (what the engine and the operator
validate) and ``logdistill.operator.status.DistilledModelStatus``. Pydantic's JSON schema is turned
into a *structural* OpenAPI v3 schema the API server accepts: ``$ref`` inlined, ``anyOf [X, null]``
collapsed to ``X`` (an unset field means "use the default"), exclusive bounds rewritten in the
OpenAPI 3.0 style, ``title`` dropped, defaults kept (so ``kubectl get -o yaml`` shows the
effective spec and CEL rules can read every field). The pydantic cross-field validators are mirrored
as CEL ``x-kubernetes-validations`` in :data:`CEL_RULES`; the integration tests check both refuse
the same objects.

Regenerate the committed file with ``logdistill operator crd > charts/logdistill/crds/...`` or
``python -P hack/generate.py``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from logdistill.operator.names import GROUP, KIND, PLURAL, VERSION
from logdistill.operator.status import DistilledModelStatus
from logdistill.spec import (
    DataSpec,
    DistilledModelSpec,
    EscalationSpec,
    PvcStorage,
    RolloutSpec,
    StudentSpec,
    TeacherSpec,
    Toleration,
)

SINGULAR = "distilledmodel"
SHORT_NAMES = ["dm"]
CRD_NAME = f"{PLURAL}.{GROUP}"
# Where the chart keeps it (relative to the repository root).
CRD_PATH = Path("charts/logdistill/crds") / f"{CRD_NAME}.yaml"

# Cross-field rules, by the JSON-schema title of the model they sit on. Each mirrors a pydantic
# validator in logdistill.spec; fieldPath makes the API server's error name the field.
CEL_RULES: dict[str, list[dict[str, str]]] = {
    TeacherSpec.__name__: [
        {
            "rule": "(has(self.checkpoint) ? 1 : 0) + (has(self.ensemble) ? 1 : 0) + (has(self.endpoint) ? 1 : 0)"
                    " + (has(self.train) ? 1 : 0) == 1",
            "message": "exactly one of teacher.checkpoint, teacher.ensemble, teacher.endpoint, teacher.train must be set",
        }
    ],
    StudentSpec.__name__: [
        {
            "rule": "self.hidden % self.heads == 0",
            "message": "student.hidden must be a multiple of student.heads",
            "fieldPath": ".hidden",
        },
        {
            "rule": "self.init != 'pretrained' || (has(self.pretrained) && self.pretrained != '')",
            "message": "student.pretrained is required when student.init is 'pretrained'",
            "fieldPath": ".pretrained",
        },
    ],
    DataSpec.__name__: [
        {
            "rule": "self.testFraction + self.devFraction < 0.9",
            "message": "data.testFraction + data.devFraction must be below 0.9",
            "fieldPath": ".testFraction",
        }
    ],
    Toleration.__name__: [
        {
            "rule": "self.operator != 'Exists' || !has(self.value) || self.value == ''",
            "message": "toleration.value must be empty when toleration.operator is 'Exists'",
            "fieldPath": ".value",
        }
    ],
    DistilledModelSpec.__name__: [
        {
            "rule": "!self.escalation.enabled || !has(self.teacher.endpoint)",
            "message": "escalation.enabled needs teacher.checkpoint, teacher.ensemble or teacher.train",
            "fieldPath": ".escalation.enabled",
        },
        {
            "rule": "!self.training.intermediate.enabled || self.job.workers == 1",
            "message": "training.intermediate.enabled needs job.workers: 1",
            "fieldPath": ".training.intermediate.enabled",
        },
    ],
    RolloutSpec.__name__: [
        {
            "rule": "self.apiPort != self.port",
            "message": "rollout.apiPort and rollout.port must differ",
            "fieldPath": ".apiPort",
        }
    ],
    EscalationSpec.__name__: [
        {
            "rule": "self.metricsPort != self.port",
            "message": "escalation.metricsPort and escalation.port must differ",
            "fieldPath": ".metricsPort",
        }
    ],
    PvcStorage.__name__: [
        {
            "rule": "!self.subPath.matches('(^|/)[.][.](/|$)')",
            "message": "storage.persistentVolumeClaim.subPath must not contain '..'",
            "fieldPath": ".subPath",
        }
    ],
}

# Keywords of pydantic's JSON schema that a structural OpenAPI v3 schema keeps as they are.
_KEEP = {
    "type", "description", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern",
    "minItems", "maxItems", "minProperties", "maxProperties", "required", "format",
}


class SchemaError(ValueError):
    """A pydantic construct the converter cannot express structurally (a bug to fix here)."""


def _deref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = copy.deepcopy(defs[name])
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        return merged
    return node


def _strip_null(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` -> X, carrying description/default of the outer node."""
    if "anyOf" not in node:
        return node
    options = [o for o in node["anyOf"] if o.get("type") != "null"]
    if len(options) != 1:
        raise SchemaError(f"cannot express a union of {len(options)} non-null types structurally: {node}")
    inner = dict(options[0])
    for key, value in node.items():
        if key != "anyOf":
            inner.setdefault(key, value)
    return inner


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _cel_string(text: str) -> str:
    """A CEL single-quoted string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def to_structural(node: dict[str, Any], defs: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Convert one pydantic JSON-schema node (and its children) to a structural OpenAPI v3 schema."""
    node = _deref(_strip_null(_deref(node, defs)), defs)
    node = _strip_null(node)
    title = node.get("title")
    out: dict[str, Any] = {k: copy.deepcopy(v) for k, v in node.items() if k in _KEEP}
    if "const" in node:
        out["enum"] = [node["const"]]
    # JSON Schema 2020 numeric exclusive bounds -> OpenAPI 3.0 boolean form.
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:
            out[plain] = node[bound]
            out[bound] = True
    kind = node.get("type")
    if kind is None:
        raise SchemaError(f"{path or '<root>'}: no type in {node}")
    if kind == "object":
        if "properties" in node:
            out["properties"] = {
                name: to_structural(child, defs, f"{path}.{name}") for name, child in node["properties"].items()
            }
        elif isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = to_structural(node["additionalProperties"], defs, f"{path}[*]")
        elif len(node.get("patternProperties", {})) == 1:
            # dict[Key, Value] with a constrained key: values typed, keys checked by CEL.
            (key_pattern, value_schema), = node["patternProperties"].items()
            out["additionalProperties"] = to_structural(value_schema, defs, f"{path}[*]")
            out.setdefault("x-kubernetes-validations", []).append({
                "rule": f"self.all(k, k.size() <= 316 && k.matches({_cel_string(key_pattern)}))",
                "message": f"{path.lstrip('.')} keys must be label keys (prefix/name)",
            })
        else:
            raise SchemaError(f"{path}: an object needs properties or typed additionalProperties")
        # additionalProperties: false is the structural default (unknown fields are pruned or, with
        # strict field validation, refused); the API server forbids it next to properties.
    elif kind == "array":
        out["items"] = to_structural(node["items"], defs, f"{path}[]")
    if "default" in node and node["default"] is not None:
        # Object sections default to their full default value (nulls dropped): the API server checks
        # a default against the section's CEL rules before nested defaults apply.
        out["default"] = _drop_nulls(copy.deepcopy(node["default"]))
    if title in CEL_RULES and kind == "object":
        out.setdefault("x-kubernetes-validations", []).extend(copy.deepcopy(CEL_RULES[title]))
    return out


def model_schema(model: type) -> dict[str, Any]:
    """The structural schema of a pydantic model (by alias, validation mode)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return to_structural(raw, raw.get("$defs", {}))


def build_crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition manifest (deterministic: same models, same dict)."""
    spec_schema = model_schema(DistilledModelSpec)
    status_schema = model_schema(DistilledModelStatus)
    status_schema.pop("default", None)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "logdistill", "app.kubernetes.io/part-of": "logdistill"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["logdistill"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Teacher-F1", "type": "number", "jsonPath": ".status.evaluation.teacher.macroF1"},
                        {"name": "Student-F1", "type": "number", "jsonPath": ".status.evaluation.student.macroF1"},
                        {"name": "Serving", "type": "string", "jsonPath": ".status.servingVersion"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A log classifier distilled from a teacher and served on every edge node.",
                            "required": ["spec"],
                            "x-kubernetes-validations": [{
                                "rule": "self.metadata.name.size() <= 52",
                                "message": "metadata.name must be at most 52 characters: it names the Job, "
                                           "the DaemonSet and their pods",
                            }],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = (
    "# GENERATED by `logdistill operator crd` from logdistill.spec.DistilledModelSpec and\n"
    "# logdistill.operator.status.DistilledModelStatus. Do not edit: change the models and regenerate\n"
    "# (python -P hack/generate.py). tests/test_operator_crd.py fails when this file drifts.\n"
)


def render_crd() -> str:
    """The CRD as the YAML text committed under charts/logdistill/crds/."""
    return HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=100, allow_unicode=True)


def peering_crds() -> list[dict[str, Any]]:
    """kopf's peering CRDs (kopf.dev/v1): replicas of the operator see each other through them.

    Only kopf's own bookkeeping lives there, which is why these two (unlike DistilledModel) keep
    unknown fields."""
    crds = []
    for scope, kind, plural in (("Cluster", "ClusterKopfPeering", "clusterkopfpeerings"),
                                ("Namespaced", "KopfPeering", "kopfpeerings")):
        crds.append({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.kopf.dev"},
            "spec": {
                "scope": scope,
                "group": "kopf.dev",
                "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                "versions": [{
                    "name": "v1", "served": True, "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}},
                }],
            },
        })
    return crds


def render_peering_crds() -> str:
    return "".join("---\n" + yaml.safe_dump(c, sort_keys=False) for c in peering_crds())
