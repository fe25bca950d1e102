"""Who may call a DistilledModel's APIs, as manifests: the token Secret, its mount in the classifier
DaemonSet and the teacher Deployment, the ports apart, the teacher's NetworkPolicy."""

from __future__ import annotations

import pytest

from logdistill.operator import names
from logdistill.operator.manifests import apitoken, common, daemonset, network_policy, teacher_service
from logdistill.spec import DistilledModelSpec, SpecError, parse_spec

OWNER = common.Owner(name="bgl", namespace="edge-ai", uid="1234-uid", generation=3)
IMAGES = common.Images(job="registry/logdistill:1", edge="registry/logdistill-edge:1")
RELEASE = daemonset.Release(version="v1", generation=3, artifact="models/bgl/g3", sha256="f" * 64)


def spec(**sections) -> DistilledModelSpec:
    return parse_spec({"teacher": {"checkpoint": "/artifacts/teachers/t"}, **sections}, DistilledModelSpec)


def owned(manifest: dict) -> None:
    (ref,) = manifest["metadata"]["ownerReferences"]
    assert ref["uid"] == OWNER.uid and ref["controller"] is True


def container(manifest: dict) -> dict:
    (c,) = manifest["spec"]["template"]["spec"]["containers"]
    return c


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def token_file_of(manifest: dict) -> str:
    """The token file the container is told to read, checked to sit in a mounted volume of the Secret."""
    pod = manifest["spec"]["template"]["spec"]
    c = container(manifest)
    path = flag(c["command"], "--token-file")
    (mount,) = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert mount["readOnly"] is True and "subPath" not in mount  # a subPath mount never sees a rotation
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "bgl-api-token"
    key = path[len(mount["mountPath"].rstrip("/")) + 1:]
    assert {"key": apitoken.TOKEN_KEY, "path": key} in volume["secret"]["items"]
    assert volume["secret"]["defaultMode"] & 0o007 == 0  # not world-readable
    return path


def test_the_token_secret_is_owned_and_holds_the_given_token():
    secret = apitoken.build_token_secret(OWNER, "tok-123")
    owned(secret)
    assert secret["metadata"]["name"] == "bgl-api-token" and secret["metadata"]["namespace"] == "edge-ai"
    assert secret["stringData"] == {"token": "tok-123"} and secret["type"] == "Opaque"
    assert secret["metadata"]["labels"][names.MODEL_LABEL] == "bgl"


def test_the_classifier_mounts_the_token_and_serves_the_api_apart_from_metrics():
    ds = daemonset.build_daemonset(OWNER, spec(rollout={"port": 9500, "apiPort": 9600}), RELEASE, IMAGES)
    c = container(ds)
    assert token_file_of(ds) == apitoken.TOKEN_FILE
    assert (flag(c["command"], "--port"), flag(c["command"], "--metrics-port")) == ("9600", "9500")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9500, "api": 9600}
    # Probes and Prometheus (port name "metrics", the chart's metrics.portName) keep the metrics port.
    assert c["readinessProbe"]["httpGet"]["port"] == c["livenessProbe"]["httpGet"]["port"] == "metrics"
    service = daemonset.build_service(OWNER, spec(rollout={"port": 9500, "apiPort": 9600}))
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("metrics", 9500)]  # no API port


def test_prometheus_scrapes_the_metrics_port_not_the_api():
    """The chart's PodMonitor/ServiceMonitor select the container port named ``metrics.portName``."""
    from pathlib import Path

    import yaml

    values = yaml.safe_load((Path(__file__).resolve().parent.parent / "charts/logdistill/values.yaml").read_text())
    port_name = values["metrics"]["portName"]
    s = spec(rollout={"port": 9500, "apiPort": 9600})
    (scraped,) = [p for p in container(daemonset.build_daemonset(OWNER, s, RELEASE, IMAGES))["ports"]
                  if p["name"] == port_name]
    assert scraped["containerPort"] == 9500
    assert [p["targetPort"] for p in daemonset.build_service(OWNER, s)["spec"]["ports"]] == [port_name]


def test_the_teacher_mounts_the_token_and_probes_its_metrics_port():
    dep = teacher_service.build_teacher_deployment(OWNER, spec(escalation={"enabled": True, "port": 8100,
                                                                           "metricsPort": 8101}), IMAGES)
    c = container(dep)
    assert token_file_of(dep) == apitoken.TOKEN_FILE
    assert (flag(c["command"], "--port"), flag(c["command"], "--metrics-port")) == ("8100", "8101")
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8100, "metrics": 8101}
    assert c["readinessProbe"]["httpGet"]["port"] == c["livenessProbe"]["httpGet"]["port"] == "metrics"


def test_the_classifier_escalates_to_the_port_the_policy_opens():
    s = spec(escalation={"enabled": True, "port": 8100})
    ds = daemonset.build_daemonset(OWNER, s, RELEASE, IMAGES)
    assert flag(container(ds)["command"], "--teacher-url").endswith(":8100")


def test_network_policy_lets_only_the_models_classifiers_reach_the_teacher_api():
    s = spec(escalation={"enabled": True, "port": 8100, "metricsPort": 8101})
    policy = network_policy.build_teacher_network_policy(OWNER, s)
    owned(policy)
    assert policy["kind"] == "NetworkPolicy" and policy["metadata"]["name"] == "bgl-teacher"
    teacher_pod_labels = teacher_service.build_teacher_deployment(OWNER, s, IMAGES)["spec"]["template"]["metadata"][
        "labels"]
    classifier_pod_labels = daemonset.build_daemonset(OWNER, s, RELEASE, IMAGES)["spec"]["template"]["metadata"][
        "labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= teacher_pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    api, metrics = policy["spec"]["ingress"]
    assert api["ports"] == [{"protocol": "TCP", "port": 8100}]
    (peer,) = api["from"]
    assert set(peer) == {"podSelector"}  # this namespace's pods only
    assert peer["podSelector"]["matchLabels"].items() <= classifier_pod_labels.items()
    # Another model's classifiers (same namespace) do not match.
    other = daemonset.build_daemonset(common.Owner("other", "edge-ai", "u2", 1), s, RELEASE, IMAGES)
    assert not peer["podSelector"]["matchLabels"].items() <= other["spec"]["template"]["metadata"]["labels"].items()
    assert metrics == {"ports": [{"protocol": "TCP", "port": 8101}]}  # probes and Prometheus from anywhere


def test_network_policy_hash_follows_the_ports():
    h = lambda s: network_policy.build_teacher_network_policy(OWNER, s)["metadata"]["annotations"][  # noqa: E731
        names.APPLIED_HASH_ANNOTATION]
    on = {"enabled": True}
    assert h(spec(escalation=on)) == h(spec(escalation=on))
    assert h(spec(escalation=on)) != h(spec(escalation={**on, "port": 8200}))


@pytest.mark.parametrize("sections, field", [({"rollout": {"port": 9402}}, "rollout.apiPort"),
                                             ({"escalation": {"metricsPort": 8000}}, "escalation.metricsPort")])
def test_a_port_clash_is_refused_naming_the_field(sections, field):
    with pytest.raises(SpecError, match=field):
        spec(**sections)
