"""What the operator and its Jobs may do: the least-privilege RBAC rules, as data: the one source.

The chart renders exactly these: ``python -P hack/generate.py`` writes them into
charts/logdistill/templates/_rules.tpl (a test fails on drift, another compares the rendered Roles
per install mode with :func:`operator_rules`); ``logdistill operator rbac`` prints them;
tests/test_operator_cluster.py runs the operator under exactly them and fails on any 403.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from logdistill.operator.names import GROUP, PLURAL

# Namespaced: a Role per watched namespace, or a ClusterRole bound cluster-wide with --all-namespaces.
OPERATOR_RULES: list[dict] = [
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch"]},
    # ownerReferences with blockOwnerDeletion (checked when OwnerReferencesPermissionEnforcement is on)
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/finalizers"], "verbs": ["update"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    # a running Job's progress lines (its log tail), where its ServiceAccount may not annotate its pod
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    # the artifacts claim a CR names (is it an operator-made hostPath one?); see CLAIM_RULES
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get"]},
    # classifier metrics, teacher (escalation) and rendezvous (workers > 1) Services; the teacher's
    # is deleted when escalation is turned off
    # (list: the drift repair finds the ones deleted under a settled CR)
    {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "create", "delete"]},
    # the API token Secret of each CR: created once, never read back (the pods mount it)
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    # the teacher's NetworkPolicy, updated when its ports change and deleted with the teacher service
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
     "verbs": ["get", "create", "update", "delete"]},
    {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["get", "list", "watch", "create", "update"]},
    # the teacher service (escalation.enabled)
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "create", "update", "delete"]},
    # create: kopf's Events on the CR; list: a stuck pod's Warning events (FailedMount, Unhealthy)
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "list"]},
    {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "verbs": ["get", "list", "watch", "patch", "create"]},
]
# Only with --create-claims (the default): the artifacts claim a CR names, created when missing.
CLAIM_RULES: list[dict] = [
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["create"]},
]
# Only with --all-namespaces (cluster-wide peering object).
CLUSTERWIDE_RULES: list[dict] = [
    {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"],
     "verbs": ["get", "list", "watch", "patch", "create"]},
]
# Only with --namespace patterns (globs): kopf then watches Namespaces and CRDs.
GLOB_RULES: list[dict] = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
]
# Only with --artifacts-host-path (cluster-scoped): the hostPath PersistentVolume behind each claim it creates.
HOST_PATH_RULES: list[dict] = [
    {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "create"]},
]
# The distillation Job's ServiceAccount (spec.job.serviceAccountName): publish progress on its own pod;
# the teacher service runs under it too and publishes its agreement the same way.
JOB_RULES: list[dict] = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]},
]


# Rule sets by name, as the chart's generated named templates ("logdistill.rules.<name>") carry them.
RULE_SETS: dict[str, list[dict]] = {
    "operator": OPERATOR_RULES, "claims": CLAIM_RULES, "clusterWide": CLUSTERWIDE_RULES,
    "namespaceGlobs": GLOB_RULES, "hostPath": HOST_PATH_RULES,
}


def operator_rules(mode: str, create_claims: bool = True) -> list[dict]:
    """The operator's namespaced rules for an install mode: "namespaced" (a Role per watched namespace),
    "all" (a ClusterRole: every namespace) or "globs" (a ClusterRole: namespace patterns). The
    hostPath PersistentVolume rules (:data:`HOST_PATH_RULES`) are a ClusterRole of their own."""
    extra = {"namespaced": [], "all": CLUSTERWIDE_RULES, "globs": GLOB_RULES}[mode]
    return [*OPERATOR_RULES, *(CLAIM_RULES if create_claims else []), *extra]


RULES_TEMPLATE_PATH = Path("charts/logdistill/templates/_rules.tpl")


def render_chart_rules() -> str:
    """charts/logdistill/templates/_rules.tpl: one named template per rule set."""
    out = ["{{/* Generated from operator/rbac.py by hack/generate.py: do not edit (a test fails on drift). */}}"]
    for name, rules in RULE_SETS.items():
        out += [f'{{{{- define "logdistill.rules.{name}" -}}}}', yaml.safe_dump(rules, sort_keys=False).rstrip(),
                "{{- end }}"]
    return "\n".join(out) + "\n"


def render_rbac() -> str:
    return yaml.safe_dump({
        "operator": OPERATOR_RULES, "operatorCreateClaims": CLAIM_RULES, "operatorClusterWide": CLUSTERWIDE_RULES, "operatorNamespaceGlobs": GLOB_RULES,
        "operatorHostPathStorage": HOST_PATH_RULES, "job": JOB_RULES,
    }, sort_keys=False)
