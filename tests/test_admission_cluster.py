"""The admission policy on the real control plane, both halves of it:

* the chart's ValidatingAdmissionPolicy + binding (``helm template``, bound to this module's namespaces
  only through ``operator.watchNamespaces``) refuses every hostile DistilledModel at ``kubectl apply``,
  naming the field; the CEL and the Python rules agree on every case under the default and under
  looser settings (the drift test of the one definition);
* the operator, on a namespace without the policy, refuses the same objects itself: phase Failed, a
  Warning Event naming the field, and no child at all.
"""

from __future__ import annotations

import time
import uuid

import pytest
import yaml

from chart_helpers import render
from logdistill.operator.main import OperatorThread
from logdistill.operator.names import GROUP, PLURAL, VERSION
from logdistill.policy import AdmissionPolicy, violations
from logdistill.spec import DistilledModelSpec, parse_spec
from policy_cases import EXAMPLE, HOSTILE, LOOSE_VALUES, all_specs, example, spec_of
from test_operator_cluster import apis, cluster, condition, cr, get_cr, wait_events  # noqa: F401 - fixtures

POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
ACTIVE_TIMEOUT_S = 60
SETTINGS = {"default": {}, "loose": LOOSE_VALUES}


def policy_objects(release: str, namespace: str, settings: dict) -> list[dict]:
    values = {"operator.watchNamespaces": [namespace], **{f"admissionPolicy.{k}": v for k, v in settings.items()}}
    return [d for d in render(release=release, set_values=values) if d["kind"] in POLICY_KINDS]


def apply(cluster, namespace: str, name: str, spec: dict, *extra: str):
    return cluster.kubectl("apply", "-n", namespace, *extra, "-f", "-", input=yaml.safe_dump(cr(name, spec)),
                           check=False)


def wait_active(cluster, namespace: str) -> float:
    """A new policy takes a moment to reach the API server's admission: poll a known-bad object (dry run)."""
    started = time.monotonic()
    bad = spec_of(HOSTILE[0][1])
    cluster.wait_for(lambda: "denied request" in apply(cluster, namespace, "probe", bad, "--dry-run=server").stderr,
                     ACTIVE_TIMEOUT_S, 0.2, f"the ValidatingAdmissionPolicy to refuse a hostile object in {namespace}")
    return time.monotonic() - started


@pytest.fixture(scope="module")
def policy_namespaces(cluster):
    """One namespace per settings, each with the chart's policy bound to it alone."""
    suffix = uuid.uuid4().hex[:6]
    installed: dict[str, str] = {}
    objects: list[dict] = []
    try:
        for name, settings in SETTINGS.items():
            namespace = f"admission-{name}-{suffix}"
            cluster.create_namespace(namespace)
            installed[name] = namespace
            docs = policy_objects(f"adm-{name}-{suffix}", namespace, settings)
            assert [d["kind"] for d in docs] == list(POLICY_KINDS)
            objects += docs
            cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        for name, namespace in installed.items():
            print(f"[admission] {name} policy refusing after {wait_active(cluster, namespace):.2f} s")
        yield installed
    finally:
        for doc in reversed(objects):
            cluster.kubectl("delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found", check=False)
        for namespace in installed.values():
            cluster.delete_namespace(namespace)


def expected_refusal(spec: dict, settings: dict) -> str | None:
    """The field the Python rules refuse first under these settings (None: admitted)."""
    policy = AdmissionPolicy.model_validate({**settings, "imagePrefixes": [
        *AdmissionPolicy().image_prefixes, *settings.get("imagePrefixes", [])]})
    found = violations(parse_spec(spec, DistilledModelSpec), policy)
    return found[0].field if found else None


@pytest.mark.parametrize("case, sections, field", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_cr_is_refused_at_admission_naming_the_field(cluster, policy_namespaces, case, sections, field):
    proc = apply(cluster, policy_namespaces["default"], case, spec_of(sections))
    assert proc.returncode != 0, f"{case} was admitted: {proc.stdout}"
    assert f"denied request: {field}: " in proc.stderr, proc.stderr


@pytest.mark.parametrize("settings_name", list(SETTINGS))
def test_cel_and_python_rules_agree_on_every_case(cluster, policy_namespaces, settings_name):
    """The drift test of the one definition: same objects, same settings, same verdict and field."""
    namespace, settings = policy_namespaces[settings_name], SETTINGS[settings_name]
    disagree, refused = [], 0
    for case, spec in all_specs():
        field = expected_refusal(spec, settings)
        proc = apply(cluster, namespace, case, spec, "--dry-run=server")
        if field is None:
            ok = proc.returncode == 0
        else:
            refused += 1
            ok = proc.returncode != 0 and f"denied request: {field}: " in proc.stderr
        if not ok:
            disagree.append(f"{case}: python {field or 'admits'}; API server: {proc.stderr.strip() or 'admits'}")
    assert not disagree, "\n".join(disagree)
    assert refused >= (len(HOSTILE) if settings_name == "default" else 2)


def test_the_shipped_example_is_admitted(cluster, policy_namespaces):
    proc = cluster.kubectl("apply", "-n", policy_namespaces["default"], "-f", EXAMPLE, check=False)
    assert proc.returncode == 0, proc.stderr


# ---- the operator, on a cluster without the policy ---------------------------------------------

def children(apis, namespace: str) -> list[str]:
    """Everything the operator could have created in the namespace."""
    core, apps, batch = apis["core"], apis["apps"], apis["batch"]
    found = [f"Job {j.metadata.name}" for j in batch.list_namespaced_job(namespace).items]
    found += [f"DaemonSet {d.metadata.name}" for d in apps.list_namespaced_daemon_set(namespace).items]
    found += [f"Deployment {d.metadata.name}" for d in apps.list_namespaced_deployment(namespace).items]
    found += [f"Service {s.metadata.name}" for s in core.list_namespaced_service(namespace).items]
    found += [f"PVC {c.metadata.name}" for c in core.list_namespaced_persistent_volume_claim(namespace).items]
    found += [f"ConfigMap {c.metadata.name}" for c in core.list_namespaced_config_map(namespace).items
              if c.metadata.name != "kube-root-ca.crt"]
    return found


def test_operator_refuses_hostile_crs_without_creating_children(cluster, apis, namespace):
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    with OperatorThread(namespaces=[namespace], api_client=api):
        for case, sections, _ in HOSTILE:
            apis["custom"].create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                           cr(case, spec_of(sections)))
        started = time.monotonic()
        for case, _, field in HOSTILE:
            def refused(case=case):
                status = get_cr(apis, namespace, case).get("status") or {}
                return status if status.get("phase") == "Failed" else None

            status = cluster.wait_for(refused, 60, 0.1, f"{case} Failed")
            assert f"refused by the admission policy: {field}: " in status["message"], status["message"]
            assert condition({"status": status}, "Distilled")["reason"] == "PolicyViolation"
            wait_events(cluster, apis, namespace, case, {"PolicyViolation", "PhaseFailed"})
            (event,) = [e for e in apis["core"].list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={case}").items if e.reason == "PolicyViolation"]
            assert event.type == "Warning" and field in event.message
        print(f"[admission] operator refused {len(HOSTILE)} objects in {time.monotonic() - started:.2f} s")
        assert children(apis, namespace) == []

        # The same operator creates children for a benign object: the refusals were the policy.
        body = example()
        apis["custom"].create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        name = body["metadata"]["name"]
        def started():
            status = get_cr(apis, namespace, name).get("status") or {}
            return status if status.get("phase") and any(c.startswith("Job ") for c in children(apis, namespace)) \
                else None

        assert cluster.wait_for(started, 30, 0.1, f"the Job and status of the example {name}")["phase"] != "Failed"


def test_a_spec_update_that_violates_the_policy_is_refused_and_then_recovers(cluster, apis, namespace):
    """An admitted object turned hostile (a new training generation with a foreign image) gets no Job for that
    generation; fixing the spec resumes."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    with OperatorThread(namespaces=[namespace], api_client=api):
        body = example()
        name = body["metadata"]["name"]
        apis["custom"].create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        cluster.wait_for(lambda: f"Job {name}-distill-g1" in children(apis, namespace), 30, 0.1, "the first Job")

        def status_of(generation):
            status = get_cr(apis, namespace, name).get("status") or {}
            return status if status.get("observedGeneration") == generation else None

        patch = {"spec": {"training": {"epochs": 3}, "job": {"image": "evil.example.com/miner:1"}}}
        apis["custom"].patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
        status = cluster.wait_for(lambda: status_of(2), 30, 0.1, "the refusal of generation 2")
        assert status["phase"] == "Failed" and "spec.job.image" in status["message"]
        assert f"Job {name}-distill-g2" not in children(apis, namespace)

        patch = {"spec": {"job": {"image": None}}}
        apis["custom"].patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
        cluster.wait_for(lambda: f"Job {name}-distill-g3" in children(apis, namespace), 30, 0.1,
                         "the Job of the fixed generation 3")
        assert status_of(3) is None or status_of(3)["phase"] != "Failed"
