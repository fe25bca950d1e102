"""The admission policy as pure code (src/logdistill/policy.py): hostile DistilledModels refused, naming the
field; benign ones and the shipped example admitted; the settings validated; the flags and the chart
template built from the same definition."""

from __future__ import annotations


import pytest
import yaml
from pydantic import ValidationError

from logdistill.operator import admission
from logdistill.operator.main import admission_policy, add_arguments
from logdistill.policy import (
    AdmissionPolicy,
    RULES,
    cel_validations,
    image_allowed,
    log_path_allowed,
    violations,
    within_roots,
)
from logdistill.spec import DistilledModelSpec, parse_spec
from policy_cases import BENIGN, HOSTILE, LOOSE_VALUES, ROOT, example, spec_of

DEFAULT = AdmissionPolicy()


def parsed(spec: dict) -> DistilledModelSpec:
    return parse_spec(spec, DistilledModelSpec)


@pytest.mark.parametrize("case, sections, field", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_cr_is_refused_naming_the_field(case, sections, field):
    found = violations(parsed(spec_of(sections)), DEFAULT)
    assert found, f"{case} was admitted"
    assert found[0].field == field
    assert str(found[0]).startswith(f"{field}: ")


@pytest.mark.parametrize("case, sections", BENIGN, ids=[c[0] for c in BENIGN])
def test_benign_cr_is_admitted(case, sections):
    assert violations(parsed(spec_of(sections)), DEFAULT) == []


def test_the_shipped_example_is_admitted():
    assert violations(parsed(example()["spec"]), DEFAULT) == []


def test_every_violation_is_reported_with_its_value():
    spec = parsed(spec_of({"job": {"image": "evil.io/x", "serviceAccountName": "admin"},
                           "rollout": {"logPaths": ["/x.log", "/var/log/ok.log", "/etc/passwd"]}}))
    found = violations(spec, DEFAULT)
    assert [(v.field, v.value) for v in found] == [
        ("spec.job.image", "evil.io/x"), ("spec.job.serviceAccountName", "admin"),
        ("spec.rollout.logPaths", "/x.log"), ("spec.rollout.logPaths", "/etc/passwd")]
    assert "(got '/etc/passwd')" in str(found[-1])


def test_looser_settings_admit_what_they_name():
    loose = AdmissionPolicy.model_validate(LOOSE_VALUES)
    admitted = {case for case, sections, _ in HOSTILE if not violations(parsed(spec_of(sections)), loose)}
    assert admitted == {"job-image-outside-prefixes", "escalation-image-outside-prefixes", "custom-service-account",
                        "job-toleration-exists-without-key", "rollout-toleration-exists-without-key",
                        "rollout-toleration-exists-empty-key", "http-endpoint", "log-path-one-bad-of-two"}
    # A Secret never goes to plain http, whatever the settings.
    secret = next(s for c, s, _ in HOSTILE if c == "http-endpoint-with-secret-ref")
    assert [v.field for v in violations(parsed(spec_of(secret)), loose)] == ["spec.teacher.endpoint.secretRef"]


@pytest.mark.parametrize("image, allowed", [
    ("ghcr.io/logdistill/logdistill", True),
    ("ghcr.io/logdistill/logdistill:1.0", True),
    ("ghcr.io/logdistill/logdistill@sha256:abc", True),
    ("ghcr.io/logdistill/logdistill-edge:1.0", True),
    ("ghcr.io/logdistill/logdistill-evil:1.0", False),
    ("ghcr.io/logdistill/logdistillx", False),
    ("ghcr.io/logdistill/other:1", False),
    ("ghcr.io/logdistill/logdistill/../x", False),
])
def test_image_prefixes_match_a_repository_not_a_string_prefix(image, allowed):
    assert image_allowed(image, DEFAULT.image_prefixes) is allowed


def test_a_prefix_ending_in_a_slash_admits_everything_below_it():
    assert image_allowed("registry.example.com/ml/teacher:2", ["registry.example.com/ml/"])
    assert not image_allowed("registry.example.com/mlx/teacher:2", ["registry.example.com/ml/"])


@pytest.mark.parametrize("path, allowed", [
    ("/var/log/pods/*/*/*.log", True), ("/var/log/syslog", True), ("/var/log/x..y.log", True),
    ("var/log/x.log", False),                     # relative
    ("/var/log", False), ("/var/log/", False),    # the root itself is a folder, not a log path
    ("/var/log/a/../b", False), ("/var/log/.hidden/./x", False), ("/var/log/a//b", False),
    ("/var/logx/y", False), ("/x.log", False),
])
def test_log_paths_are_normalised_and_under_a_root(path, allowed):
    assert log_path_allowed(path, DEFAULT.log_roots) is allowed


def test_within_roots_never_holds_for_the_host_root_or_a_parent():
    assert within_roots("/var/log", ["/var/log"]) and within_roots("/var/log/pods", ["/var/log"])
    assert not any(within_roots(folder, ["/var/log"]) for folder in ("/", "/var", "/var/logs", ""))


@pytest.mark.parametrize("roots", [["/"], ["var/log"], ["/var/log/"], ["/var/../etc"], ["/var/log/*"], ["//var"]])
def test_bad_log_roots_are_refused_naming_the_setting(roots):
    with pytest.raises(ValidationError, match="log root"):
        AdmissionPolicy(log_roots=tuple(roots))


def test_defaults_are_secure():
    assert DEFAULT.log_roots == ("/var/log",) and DEFAULT.https_only_endpoints
    assert not DEFAULT.allow_custom_service_accounts and not DEFAULT.allow_unkeyed_exists_tolerations
    assert DEFAULT.image_prefixes == ("ghcr.io/logdistill/logdistill", "ghcr.io/logdistill/logdistill-edge")


def _flags(*argv: str) -> AdmissionPolicy:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return admission_policy(parser.parse_args(list(argv)))


def test_operator_flags_build_the_policy():
    assert _flags() == DEFAULT
    loose = _flags("--allowed-image-prefix=evil.example.com/", "--allowed-log-root=/var/log",
                   "--allowed-log-root=/etc/kubernetes", "--allow-unkeyed-exists-tolerations",
                   "--allow-custom-service-accounts", "--no-https-only-endpoints")
    assert loose == AdmissionPolicy.model_validate(LOOSE_VALUES)
    with pytest.raises(ValueError, match="log root"):
        _flags("--allowed-log-root=/")


def test_chart_values_are_the_policy_settings():
    """values.yaml's admissionPolicy.* (besides `enabled`) are exactly the policy's settings, and valid."""
    values = yaml.safe_load((ROOT / "charts" / "logdistill" / "values.yaml").read_text())["admissionPolicy"]
    settings = {k: v for k, v in values.items() if k != "enabled"}
    assert sorted(settings) == sorted(admission.setting_names())
    chart = AdmissionPolicy.model_validate({**settings, "imagePrefixes": list(DEFAULT.image_prefixes)})
    assert chart == DEFAULT


def test_one_cel_validation_per_rule_naming_its_field():
    cel = cel_validations()
    assert [v["message"].split(":")[0] for v in cel] == [r.field for r in RULES]
    assert all(v["expression"] for v in cel)


def test_committed_admission_policy_template_matches_the_rules():
    committed = (ROOT / admission.TEMPLATE_PATH).read_text(encoding="utf-8")
    assert committed == admission.render_template(), "drifted: run `python -P hack/generate.py`"


@pytest.mark.parametrize("settings", [{}, LOOSE_VALUES], ids=["default", "loose"])
def test_the_chart_gives_the_operator_and_the_admission_policy_the_same_settings(settings):
    from chart_helpers import find, render

    docs = render(set_values={f"admissionPolicy.{k}": v for k, v in settings.items()})
    (deployment,) = find(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    operator = _flags(*[a for a in args if a.split("=")[0].lstrip("-").removeprefix("no-") in (
        "allowed-image-prefix", "allowed-log-root", "allow-unkeyed-exists-tolerations",
        "allow-custom-service-accounts", "https-only-endpoints")])
    (vap,) = find(docs, "ValidatingAdmissionPolicy")
    variables = {v["name"]: yaml.safe_load(v["expression"]) for v in vap["spec"]["variables"]}  # JSON = CEL literals
    assert AdmissionPolicy.model_validate(variables) == operator
    expected = {**settings, "imagePrefixes": [*DEFAULT.image_prefixes, *settings.get("imagePrefixes", [])]}
    assert operator == AdmissionPolicy.model_validate(expected)
    assert [v["expression"] for v in vap["spec"]["validations"]] == [r.cel for r in RULES]


def test_the_policy_can_be_left_out_of_the_chart():
    from chart_helpers import render

    kinds = {d["kind"] for d in render(set_values={"admissionPolicy.enabled": False})}
    assert "Deployment" in kinds and not kinds & {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
