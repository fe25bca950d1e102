"""The Helm chart rendered by the real helm: lint and template over every ci/*-values.yaml scenario, the
values schema refusing misspelt or mistyped values by name, the operator pod's security settings,
least-privilege RBAC, the monitors and the dashboard ConfigMap."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from chart_helpers import CHART, CI_VALUES, DASHBOARD_JSON, ROOT, find, helm, render, template_args



def test_ci_scenarios_exist():
    names = {p.name for p in CI_VALUES}
    assert {"default-values.yaml", "monitoring-values.yaml", "namespaced-values.yaml", "minimal-values.yaml"} <= names


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_lint_and_template_every_scenario(values):
    lint = helm("lint", "--strict", CHART, "-f", values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(values_files=[values])
    kinds = {d["kind"] for d in docs}
    assert "Deployment" in kinds
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "logdistill", doc["metadata"]["name"]


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("operator.replica=2", "replica"),
        ("metrics.podMonitor.enable=true", "enable"),
        ("prometheusRule.accuracyGat=0.8", "accuracyGat"),
        ("imagee.tag=x", "imagee"),
        ("dashboard.label.x=y", "label"),
    ],
)
def test_misspelt_value_fails_naming_it(setting, named):
    for args in (template_args(), ["lint", str(CHART)]):
        proc = helm(*args, "--set", setting)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"{setting} was accepted by helm {args[0]}"
        assert re.search(rf"additional propert(y|ies) '{named}' not allowed", output), output


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("operator.replicas=two", "/operator/replicas"),
        ("operator.logLevel=verbose", "/operator/logLevel"),
        ("prometheusRule.accuracyGate=1.5", "/prometheusRule/accuracyGate"),
        ("metrics.interval=soon", "/metrics/interval"),
        ("operator.healthPort=80", "/operator/healthPort"),
    ],
)
def test_mistyped_value_fails_naming_its_path(setting, path):
    proc = helm(*template_args(), "--set", setting)
    assert proc.returncode != 0, f"{setting} was accepted"
    assert path in proc.stderr, proc.stderr


def _leaf_paths(values: dict, schema: dict, prefix: str = ""):
    """(path, schema node) of every key in values.yaml, recursing where the schema names properties."""
    for key, value in values.items():
        node = schema["properties"].get(key)
        assert node is not None, f"values.yaml key {prefix}{key} is not in values.schema.json"
        yield f"{prefix}{key}", node
        if isinstance(value, dict) and "properties" in node:
            yield from _leaf_paths(value, node, f"{prefix}{key}.")


def test_every_value_is_in_the_schema_documented_and_closed():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    paths = dict(_leaf_paths(values, schema))
    assert len(paths) > 40
    # Every object with named properties refuses unknown keys.
    def closed(node, where):
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"schema {where} is open"
            for key, child in node["properties"].items():
                closed(child, f"{where}.{key}")
    closed(schema, "<root>")
    # Every schema property exists in values.yaml (no dead schema), except helm's own `global`.
    def schema_paths(node, prefix=""):
        for key, child in node.get("properties", {}).items():
            yield f"{prefix}{key}"
            yield from schema_paths(child, f"{prefix}{key}.")
    assert set(schema_paths(schema)) - set(paths) == {"global"}
    # Every leaf value carries a comment on the line above it (sections are documented by their leaves).
    undocumented = [f"values.yaml:{n}: {path}" for path, (n, above) in _key_lines().items()
                    if path in paths and "properties" not in paths[path] and not above.startswith("#")]
    assert not undocumented, "\n".join(undocumented)


def _key_lines() -> dict[str, tuple[int, str]]:
    """dotted path -> (line number, the stripped line above) for every mapping key in values.yaml."""
    found: dict[str, tuple[int, str]] = {}
    stack: list[tuple[int, str]] = []
    lines = (CHART / "values.yaml").read_text().splitlines()
    for number, line in enumerate(lines, 1):
        match = re.match(r"^(\s*)([A-Za-z][\w]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        found[".".join(key for _, key in stack)] = (number, lines[number - 2].strip() if number > 1 else "")
    return found


def test_operator_pod_meets_restricted_pod_security():
    (deployment,) = find(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["command"] == ["logdistill", "operator"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "health"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert any(f"--liveness=http://0.0.0.0:{ports['health']}/healthz" == a for a in container["args"])
    assert "--job-image=ghcr.io/logdistill/logdistill:0.1.0" in container["args"]
    assert "--edge-image=ghcr.io/logdistill/logdistill-edge:0.1.0" in container["args"]
    assert "--standalone" in container["args"]  # one replica: no peering objects needed
    assert pod["serviceAccountName"] == "logdistill"


def _rules(docs, kind):
    return [(rule, doc) for doc in find(docs, kind) for rule in doc["rules"]]


def _granted(docs, kind):
    granted: dict[tuple[str, str], set[str]] = {}
    for rule, _ in _rules(docs, kind):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_rbac_grants_what_the_operator_uses_and_reads_no_secrets():
    docs = render()
    for rule, doc in _rules(docs, "ClusterRole") + _rules(docs, "Role"):
        where = doc["metadata"]["name"]
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], where
        assert not {"nodes", "clusterroles", "roles", "rolebindings", "serviceaccounts"} & set(rule["resources"]), where
        if "secrets" in rule["resources"]:  # it creates each model's API token Secret, and reads none
            assert rule["resources"] == ["secrets"] and rule["verbs"] == ["create"], where
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), where
    # Pods are only read: the Job controller and the DaemonSet controller create them.
    assert _granted(docs, "ClusterRole")[("", "pods")] == {"get", "list", "watch"}


def test_namespaced_scenario_has_no_cluster_wide_write_access():
    docs = render(values_files=[CHART / "ci" / "namespaced-values.yaml"])
    for rule, doc in _rules(docs, "ClusterRole"):
        assert set(rule["verbs"]) <= {"get", "list", "watch", "patch"}, doc["metadata"]["name"]
        assert set(rule["resources"]) <= {"customresourcedefinitions", "clusterkopfpeerings"}, rule
    namespaces = {doc["metadata"]["namespace"] for rule, doc in _rules(docs, "Role") if "jobs" in rule["resources"]}
    assert namespaces == {"team-a", "team-b"}
    for binding in find(docs, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "logdistill", "namespace": "logdistill-system"}]
    (deployment,) = find(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    # Two replicas: peering through a KopfPeering per watched namespace.
    assert "--peering=logdistill" in args and "--standalone" not in args
    assert {(p["kind"], p["metadata"]["namespace"]) for p in find(docs, "KopfPeering")} == {
        ("KopfPeering", "team-a"), ("KopfPeering", "team-b")}


def test_minimal_scenario_creates_no_rbac_or_service_account():
    docs = render(values_files=[CHART / "ci" / "minimal-values.yaml"])
    assert not {"ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding", "ServiceAccount", "ConfigMap"} & {
        d["kind"] for d in docs
    }
    (deployment,) = find(docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "logdistill-operator"


def test_monitors_select_classifier_pods_and_label_node_and_model():
    docs = render(values_files=[CHART / "ci" / "monitoring-values.yaml"])
    (pod_monitor,) = find(docs, "PodMonitor", "-classifier")
    (service_monitor,) = find(docs, "ServiceMonitor", "-classifier")
    for monitor, key in ((pod_monitor, "podMetricsEndpoints"), (service_monitor, "endpoints")):
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "logdistill",
                                                              "app.kubernetes.io/component": "classifier"}
        assert monitor["spec"]["namespaceSelector"] == {"any": True}
        (endpoint,) = monitor["spec"][key]
        assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "15s")
        targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
        assert targets["node"] == ["__meta_kubernetes_pod_node_name"]
        assert targets["distilledmodel"] == ["__meta_kubernetes_pod_label_logdistill_io_model"]
    (rule,) = find(docs, "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert alerts == ["LogdistillStudentAccuracyBelowGate", "LogdistillLatencySLOBreach",
                      "LogdistillNewTemplateSurge", "LogdistillDaemonSetRolloutIncomplete"]
    assert all(r["labels"]["team"] == "aiops" for g in rule["spec"]["groups"] for r in g["rules"])
    assert "< 0.85" in rule["spec"]["groups"][0]["rules"][0]["expr"]


def test_monitoring_objects_are_opt_in():
    kinds = {d["kind"] for d in render()}
    assert not {"PodMonitor", "ServiceMonitor", "PrometheusRule"} & kinds


def test_dashboard_configmap_carries_the_committed_json_for_the_sidecar():
    docs = render(values_files=[CHART / "ci" / "monitoring-values.yaml"])
    (configmap,) = find(docs, "ConfigMap", "-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "AIOps"}
    assert json.loads(configmap["data"]["logdistill.json"]) == json.loads(DASHBOARD_JSON.read_text())




# ---- artifacts storage and the children's pull policy ------------------------------------------------

def _operator_args(docs) -> list[str]:
    (deployment,) = find(docs, "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_default_storage_flags_and_host_path_when_no_default_class_is_found():
    """`helm template` cannot look up StorageClasses: auto finds no default one and turns the hostPath on."""
    docs = render()
    args = _operator_args(docs)
    for flag in ("--image-pull-policy=IfNotPresent", "--default-claim=logdistill-artifacts", "--create-claims",
                 "--artifacts-size=10Gi", "--artifacts-access-mode=ReadWriteOnce",
                 "--artifacts-host-path=/var/lib/logdistill/artifacts"):
        assert flag in args, (flag, args)
    assert not any(a.startswith("--artifacts-storage-class") for a in args)
    (storage,) = find(docs, "ClusterRole", "-storage")
    assert storage["rules"] == [{"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "create"]}]
    (binding,) = find(docs, "ClusterRoleBinding", "-storage")
    assert binding["roleRef"]["name"] == storage["metadata"]["name"]


def test_chart_rules_are_generated_from_rbac_py():
    from logdistill.operator.rbac import render_chart_rules

    assert (CHART / "templates" / "_rules.tpl").read_text() == render_chart_rules(), \
        "the chart's RBAC rules drifted from operator/rbac.py: run `python -P hack/generate.py`"


# (values, install mode, claims created, hostPath storage ClusterRole)
RBAC_MODES = [
    ({}, "all", True, True),
    ({"operator.watchNamespaces": ["team-a", "team-b"], "artifacts.hostPath": ""}, "namespaced", True, False),
    ({"operator.watchNamespaces": ["team-*", "ops"], "artifacts.create": False}, "globs", False, False),
    ({"artifacts.existingClaim": "team"}, "all", False, False),
]


@pytest.mark.parametrize("values, mode, create_claims, host_path", RBAC_MODES,
                         ids=["all-namespaces", "namespaced", "globs", "existing-claim"])
def test_chart_rbac_is_exactly_the_operator_rules(values, mode, create_claims, host_path):
    """The chart grants the rules the operator runs under in the tests (operator/rbac.py), no more, no less."""
    from logdistill.operator.rbac import HOST_PATH_RULES, operator_rules

    docs = render(set_values=values)
    expected = operator_rules(mode, create_claims=create_claims)
    main = [d for d in docs if d["kind"] in ("ClusterRole", "Role") and d["metadata"]["name"] == "logdistill"]
    if mode == "namespaced":
        assert [(d["kind"], d["metadata"]["namespace"]) for d in main] == [("Role", "team-a"), ("Role", "team-b")]
        assert not [d for d in find(docs, "ClusterRole") if d["metadata"]["name"] == "logdistill"]
    else:
        assert [d["kind"] for d in main] == ["ClusterRole"]
    for doc in main:
        assert doc["rules"] == expected, doc["metadata"]
    storage = find(docs, "ClusterRole", "-storage")
    assert [d["rules"] for d in storage] == ([HOST_PATH_RULES] if host_path else [])
    roles = {d["metadata"]["name"] for d in find(docs, "ClusterRole") + find(docs, "Role")}
    assert roles <= {"logdistill", "logdistill-storage"}, roles


@pytest.mark.parametrize("values", [{"artifacts.hostPath": ""}, {"artifacts.storageClassName": "fast"},
                                    {"artifacts.create": False}, {"artifacts.existingClaim": "team"}],
                         ids=["off", "named-class", "no-create", "existing-claim"])
def test_no_host_path_volumes_and_no_cluster_storage_rights_otherwise(values):
    docs = render(set_values=values)
    args = _operator_args(docs)
    assert not any(a.startswith("--artifacts-host-path") for a in args), args
    assert not find(docs, "ClusterRole", "-storage")
    assert ("", "persistentvolumes") not in _granted(docs, "ClusterRole")
    if "artifacts.storageClassName" in values:
        assert "--artifacts-storage-class=fast" in args and "--create-claims" in args
    if "artifacts.create" in values or "artifacts.existingClaim" in values:
        assert "--no-create-claims" in args and "--create-claims" not in args
        assert _granted(docs, "ClusterRole")[("", "persistentvolumeclaims")] == {"get"}
    if "artifacts.existingClaim" in values:
        assert "--default-claim=team" in args


def test_forced_host_path_and_pull_policy_reach_the_operator():
    args = _operator_args(render(set_values={"artifacts.hostPath": "/srv/logdistill", "image.pullPolicy": "Never",
                                             "artifacts.accessModes": ["ReadWriteOnce", "ReadWriteOncePod"]}))
    assert "--artifacts-host-path=/srv/logdistill" in args and "--image-pull-policy=Never" in args
    assert "--artifacts-access-mode=ReadWriteOncePod" in args


@pytest.mark.parametrize("setting, named", [
    ({"artifacts.hostPath": "relative/dir"}, "hostPath"),
    ({"artifacts.accessModes": ["ReadWriteSometimes"]}, "accessModes"),
    ({"artifacts.size": "lots"}, "size"),
    ({"artifacts.sizes": "1Gi"}, "sizes"),
])
def test_storage_values_are_checked_by_the_schema(setting, named):
    proc = helm(*template_args(set_values=setting))
    assert proc.returncode != 0 and named in proc.stderr, proc.stderr
