"""Hostile and benign DistilledModels for the admission policy, shared by the pure-policy tests, the
ValidatingAdmissionPolicy tests (real API server) and the operator tests: the same objects everywhere."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "distilledmodel.yaml"
BASE = {"teacher": {"checkpoint": "/artifacts/teachers/t"}}
ENDPOINT = {"model": "m"}

# (id, spec sections, the field the refusal names first)
HOSTILE = [
    ("log-path-mounts-host-root", {"rollout": {"logPaths": ["/x.log"]}}, "spec.rollout.logPaths"),
    ("log-path-kubelet-pod-secrets",
     {"rollout": {"logPaths": ["/var/lib/kubelet/pods/*/volumes/kubernetes.io~secret/*/token"]}},
     "spec.rollout.logPaths"),
    ("log-path-dotdot-traversal", {"rollout": {"logPaths": ["/var/log/../../etc/shadow"]}}, "spec.rollout.logPaths"),
    ("log-path-trailing-dotdot", {"rollout": {"logPaths": ["/var/log/pods/.."]}}, "spec.rollout.logPaths"),
    ("log-path-dot-segment", {"rollout": {"logPaths": ["/var/log/./pods/*.log"]}}, "spec.rollout.logPaths"),
    ("log-path-double-slash", {"rollout": {"logPaths": ["/var/log//pods/*.log"]}}, "spec.rollout.logPaths"),
    ("log-path-glob-mounts-parent-of-root", {"rollout": {"logPaths": ["/var/lo*/x.log"]}}, "spec.rollout.logPaths"),
    ("log-path-sibling-of-root", {"rollout": {"logPaths": ["/var/logs/x.log"]}}, "spec.rollout.logPaths"),
    ("log-path-one-bad-of-two", {"rollout": {"logPaths": ["/var/log/pods/*/*/*.log", "/etc/kubernetes/admin.conf"]}},
     "spec.rollout.logPaths"),
    ("job-image-outside-prefixes", {"job": {"image": "evil.example.com/miner:1"}}, "spec.job.image"),
    ("job-image-look-alike-repository", {"job": {"image": "ghcr.io/logdistill/logdistill-evil:1"}}, "spec.job.image"),
    ("rollout-image-outside-prefixes", {"rollout": {"image": "docker.io/library/busybox"}}, "spec.rollout.image"),
    ("escalation-image-outside-prefixes", {"escalation": {"enabled": True, "image": "evil.example.com/teacher"}},
     "spec.escalation.image"),
    ("custom-service-account", {"job": {"serviceAccountName": "cluster-admin-sa"}}, "spec.job.serviceAccountName"),
    ("job-toleration-exists-without-key", {"job": {"tolerations": [{"operator": "Exists"}]}}, "spec.job.tolerations"),
    ("rollout-toleration-exists-without-key",
     {"rollout": {"tolerations": [{"operator": "Exists", "effect": "NoSchedule"}]}}, "spec.rollout.tolerations"),
    ("rollout-toleration-exists-empty-key", {"rollout": {"tolerations": [{"key": "", "operator": "Exists"}]}},
     "spec.rollout.tolerations"),
    ("http-endpoint-with-secret-ref",
     {"teacher": {"endpoint": {**ENDPOINT, "url": "http://collector.evil.example.com/v1",
                               "secretRef": {"name": "database-password", "key": "password"}}}},
     "spec.teacher.endpoint.secretRef"),
    ("http-endpoint", {"teacher": {"endpoint": {**ENDPOINT, "url": "http://vllm.llm.svc:8000/v1"}}},
     "spec.teacher.endpoint.url"),
]

# Allowed under the default policy.
BENIGN = [
    ("chart-job-image-tagged", {"job": {"image": "ghcr.io/logdistill/logdistill:0.2.0"}}),
    ("chart-edge-image-by-digest", {"rollout": {"image": "ghcr.io/logdistill/logdistill-edge@sha256:" + "a" * 64}}),
    ("keyed-exists-toleration",
     {"job": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}}),
    ("log-paths-under-var-log", {"rollout": {"logPaths": ["/var/log/pods/*/*/*.log", "/var/log/syslog"]}}),
    ("https-endpoint-with-secret-ref",
     {"teacher": {"endpoint": {**ENDPOINT, "url": "https://llm.example.com/v1", "secretRef": {"name": "llm-key"}}}}),
]

# Looser settings (chart values admissionPolicy.*), under which some hostile cases become allowed.
LOOSE_VALUES = {
    "imagePrefixes": ["evil.example.com/"],
    "logRoots": ["/var/log", "/etc/kubernetes"],
    "allowUnkeyedExistsTolerations": True,
    "allowCustomServiceAccounts": True,
    "httpsOnlyEndpoints": False,
}


def spec_of(sections: dict) -> dict:
    spec = copy.deepcopy(BASE)
    spec.update(copy.deepcopy(sections))
    return spec


def example() -> dict:
    """The shipped examples/distilledmodel.yaml."""
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def all_specs() -> list[tuple[str, dict]]:
    """Every case's spec, hostile and benign, the example included."""
    return ([(case, spec_of(sections)) for case, sections, _ in HOSTILE]
            + [(case, spec_of(sections)) for case, sections in BENIGN] + [("example", example()["spec"])])
