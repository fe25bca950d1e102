"""The HTTP API of a real server on an ephemeral port: contract, ordering, 4xx, readiness, metrics."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from helpers.onnx_artifacts import build_onnx_artifact, expected_label
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from logdistill.edge.main import load_classifier
from logdistill.edge.metrics import ClassifierMetrics
from logdistill.edge.reload import ModelHolder
from logdistill.edge.server import ClassifierServer
from logdistill.model.runtime.templates import mask

LABELS = ["-", "ERROR", "FATAL"]


@pytest.fixture()
def served(tmp_path):
    directory = tmp_path / "model"
    manifest = build_onnx_artifact(directory, LABELS, accuracy=0.875, macro_f1=0.75)
    metrics = ClassifierMetrics(CollectorRegistry())
    holder = ModelHolder()
    server = ClassifierServer(holder, metrics, host="127.0.0.1", port=0, max_lines=50, max_body_bytes=20_000)
    server.start()
    try:
        yield server, holder, metrics, directory, manifest
    finally:
        server.stop()


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type")
    finally:
        connection.close()


def post_lines(server, lines) -> tuple[int, dict]:
    status, body, _ = request(server, "POST", "/v1/classify", json.dumps({"lines": lines}).encode(),
                              {"Content-Type": "application/json"})
    return status, json.loads(body)


def load(holder, metrics, directory):
    holder.swap(load_classifier(directory, threads=1, cache_size=1000, batch_size=8, max_line_chars=4096,
                                metrics=metrics))
    metrics.set_model(holder.current.model.manifest)


def test_readyz_waits_for_a_model_and_healthz_does_not(served):
    server, holder, metrics, directory, _ = served
    assert request(server, "GET", "/healthz")[0] == 200
    status, body, content_type = request(server, "GET", "/readyz")
    assert (status, body) == (503, b"no model loaded yet\n") and content_type.startswith("text/plain")
    assert post_lines(server, ["x"])[0] == 503
    load(holder, metrics, directory)
    status, body, _ = request(server, "GET", "/readyz")
    assert (status, body) == (200, f"ready: model {holder.current.version}\n".encode())
    assert holder.current.self_test.label in LABELS


def test_readyz_needs_the_self_test_and_a_readable_log_source(served):
    server, holder, metrics, directory, _ = served
    load(holder, metrics, directory)
    passed = holder.current.self_test
    holder.current.self_test = None  # loaded, but never self-tested
    status, body, _ = request(server, "GET", "/readyz")
    assert status == 503 and b"has not passed its self-test" in body
    holder.current.self_test = passed
    problem = ["no readable log source: /var/log/pods: permission denied"]
    server.sources = lambda: problem[0]
    status, body, _ = request(server, "GET", "/readyz")
    assert (status, body) == (503, b"no readable log source: /var/log/pods: permission denied\n")
    assert request(server, "GET", "/healthz")[0] == 200  # liveness is not readiness: no restart for this
    problem[0] = None
    assert request(server, "GET", "/readyz")[0] == 200


def test_a_model_failing_its_self_test_is_refused(tmp_path, monkeypatch):
    from logdistill.model.runtime.artifact import ArtifactError
    from logdistill.model.runtime.inference import OnnxClassifier

    directory = tmp_path / "model"
    build_onnx_artifact(directory, LABELS)
    monkeypatch.setattr(OnnxClassifier, "predict_proba",
                        lambda self, templates: np.full((len(templates), len(LABELS)), np.nan, dtype=np.float32))
    with pytest.raises(ArtifactError, match="self-test answer is not a probability distribution"):
        load_classifier(directory, threads=1, cache_size=10, batch_size=8, max_line_chars=4096)


def test_known_counter_labels_are_exported_at_zero_before_any_event(tmp_path):
    from logdistill.edge.lines import MALFORMED_REASONS
    from logdistill.edge.metrics import ESCALATION_RESULTS, RELOAD_RESULTS
    from logdistill.edge.sources import SOURCE_ERROR_REASONS

    directory = tmp_path / "model"
    manifest = build_onnx_artifact(directory, LABELS)
    metrics = ClassifierMetrics(CollectorRegistry())
    metrics.set_sources(["/var/log/pods/*/*/*.log"])
    metrics.set_model(manifest)

    def zeros(name: str, label: str) -> set[str]:
        return {s.labels[label] for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())
                for s in f.samples if s.name == name and s.value == 0}

    assert zeros("logdistill_classifier_malformed_lines_total", "reason") == set(MALFORMED_REASONS)
    assert zeros("logdistill_classifier_source_errors_total", "reason") == set(SOURCE_ERROR_REASONS)
    assert SOURCE_ERROR_REASONS == ("permission_denied", "not_found", "other")
    assert zeros("logdistill_classifier_reloads_total", "result") == set(RELOAD_RESULTS)
    assert zeros("logdistill_classifier_escalations_total", "result") == set(ESCALATION_RESULTS)
    assert zeros("logdistill_classifier_lines_read_total", "source") == {"http", "/var/log/pods/*/*/*.log"}
    assert zeros("logdistill_classifier_lines_classified_total", "label") == set(LABELS)
    assert zeros("logdistill_classifier_corrections_total", "label") == {"ERROR", "FATAL"}  # never to normal
    metrics.malformed.labels(reason="binary").inc()
    assert zeros("logdistill_classifier_malformed_lines_total", "reason") == set(MALFORMED_REASONS) - {"binary"}


def test_classify_contract_and_order(served):
    server, holder, metrics, directory, manifest = served
    load(holder, metrics, directory)
    lines = [f"request {i} ok" if i % 3 else f"request {i} failed: disk error" for i in range(30)]
    lines += ["kernel panic", "", "caf\u00e9 \u2603 ok", "bad \ud800 surrogate"]
    status, payload = post_lines(server, lines)
    assert status == 200
    assert payload["model"] == manifest.version
    results = payload["results"]
    assert len(results) == len(lines)
    for line, result in zip(lines, results):
        assert set(result) == {"label", "score", "template"}
        clean = line.encode("utf-8", "replace").decode()
        assert result["template"] == mask(clean)
        assert result["label"] == expected_label(mask(clean), LABELS)
        assert 0.0 < result["score"] <= 1.0
    status, body, _ = request(server, "GET", "/v1/model")
    info = json.loads(body)
    assert status == 200 and info["version"] == manifest.version and info["info"]["labels"] == LABELS


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"text": "x"}', 400, "JSON object"),
        (b'{"lines": "one line"}', 400, "list of strings"),
        (b'{"lines": ["ok", 3]}', 400, "lines[1]"),
        (json.dumps({"lines": ["x"] * 51}).encode(), 413, "limit is 50"),
        (json.dumps({"lines": ["y" * 30_000]}).encode(), 413, "limit is 20000"),
        (b"\xff\xfe\x00", 400, "not valid JSON"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(served, body, status, message):
    server, holder, metrics, directory, _ = served
    load(holder, metrics, directory)
    got, payload, content_type = request(server, "POST", "/v1/classify", body)
    assert got == status and content_type == "application/json"
    assert message in json.loads(payload)["error"]
    assert request(server, "GET", "/healthz")[0] == 200  # still serving


def test_wrong_method_unknown_route_and_missing_length(served):
    server, holder, metrics, directory, _ = served
    load(holder, metrics, directory)
    assert request(server, "GET", "/v1/classify")[0] == 405
    assert request(server, "GET", "/nope")[0] == 404
    assert request(server, "POST", "/metrics", b"{}")[0] == 405
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("POST", "/v1/classify")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]
    connection.close()


def test_metrics_endpoint_exposes_names_and_values(served):
    server, holder, metrics, directory, manifest = served
    load(holder, metrics, directory)
    post_lines(server, ["disk error 1", "disk error 2", "job 3 ok", "kernel panic", "x" * 5000])
    post_lines(server, ["disk error 9"])
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def get(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    assert get("logdistill_classifier_lines_read_total", source="http") == 6
    assert get("logdistill_classifier_lines_classified_total", label="ERROR") == 3
    assert get("logdistill_classifier_lines_classified_total", label="FATAL") == 1
    assert get("logdistill_classifier_lines_classified_total", label="-") == 2
    # 4 distinct templates; "disk error <NUM>" is then answered twice from the cache.
    assert get("logdistill_classifier_cache_misses_total") == 4
    assert get("logdistill_classifier_cache_hits_total") == 2
    assert get("logdistill_classifier_new_templates_total") == 4
    assert get("logdistill_classifier_cache_entries") == 4
    assert get("logdistill_classifier_inference_line_seconds_count") == 4
    assert get("logdistill_classifier_malformed_lines_total", reason="too_long") == 1
    assert get("logdistill_classifier_inference_batch_seconds_count") == 1
    assert get("logdistill_classifier_classify_seconds_count") == 2
    assert get("logdistill_classifier_model_info", version=manifest.version, kind="student", teacher="test-teacher",
               student="0x3", parameters=str(manifest.info["parameters"])) == 1
    assert get("logdistill_classifier_model_accuracy_ratio", model="student") == 0.875
    assert get("logdistill_classifier_model_macro_f1_ratio", model="student") == 0.75
    assert get("logdistill_classifier_model_accuracy_ratio", model="teacher") == 0.97


def test_http_error_inside_classify_is_a_500_not_a_crash(served, monkeypatch):
    server, holder, metrics, directory, _ = served
    load(holder, metrics, directory)

    def broken(lines):
        raise RuntimeError("boom")

    monkeypatch.setattr(holder.current, "classify", broken)
    assert post_lines(server, ["x"])[0] == 500
    monkeypatch.undo()
    assert post_lines(server, ["x"])[0] == 200


def test_urllib_client_round_trip(served):
    """The plain urllib client a user would use works (keep-alive headers, JSON content type)."""
    server, holder, metrics, directory, _ = served
    load(holder, metrics, directory)
    req = urllib.request.Request(f"{server.url}/v1/classify", data=b'{"lines": ["a failed job"]}', method="POST")
    with urllib.request.urlopen(req, timeout=10) as response:
        assert json.loads(response.read())["results"][0]["label"] == "ERROR"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(f"{server.url}/v1/classify", data=b"{}", method="POST"),
                               timeout=10)
    assert err.value.code == 400
