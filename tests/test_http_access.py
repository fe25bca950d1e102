"""Who may call the classifier's API and the teacher service, and what no client can do to them:
the bearer token (every API route, rotation), the probe/metrics listener, the connection cap, the
request deadline, body size and JSON nesting, TLS. Both services, real servers on ephemeral ports."""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import time

import numpy as np
import pytest
from helpers.controlplane import wait_for
from helpers.onnx_artifacts import build_onnx_artifact
from prometheus_client import CollectorRegistry

from logdistill.edge.escalation import EscalationClient, post_json
from logdistill.edge.httpguard import BearerToken, tls_context, with_bearer
from logdistill.edge.main import load_classifier
from logdistill.edge.metrics import ClassifierMetrics
from logdistill.edge.reload import ModelHolder
from logdistill.edge.server import OPEN_ROUTES, ClassifierServer
from logdistill.model.services.serve_teacher import TeacherMetrics, TeacherServer, TeacherService
from logdistill.model.runtime.templates import mask

LABELS = ["-", "ERROR", "FATAL"]
TOKEN = "s3cret-token_value"
SERVICES = ["classifier", "teacher"]
DEADLINE_S = 1.0
# Sequential calls never need more, but a finished connection's slot is freed a moment after its client
# has its answer: the cap test has its own server with a cap of 2.
MAX_CONNECTIONS = 16


class KeywordScorer:
    labels = LABELS
    normal_label = "-"
    model_input = staticmethod(mask)

    def predict_proba(self, templates):
        probs = np.full((len(templates), 3), 0.05, dtype=np.float32)
        for row, template in enumerate(templates):
            probs[row, 1 if "error" in template else 0] = 0.9
        return probs


def start(kind: str, tmp_path, token_file=None, tls=None, metrics_port: int | None = 0,
          max_connections: int = MAX_CONNECTIONS):
    listen = dict(host="127.0.0.1", port=0, metrics_port=metrics_port, max_body_bytes=20_000,
                  max_connections=max_connections, deadline_s=DEADLINE_S, tls=tls,
                  token=BearerToken(token_file) if token_file is not None else None)
    if kind == "classifier":
        directory = tmp_path / "model"
        build_onnx_artifact(directory, LABELS)
        metrics = ClassifierMetrics(CollectorRegistry())
        server = ClassifierServer(ModelHolder(), metrics, **listen)
        server.holder.swap(load_classifier(directory, threads=1, cache_size=100, batch_size=8, max_line_chars=4096,
                                           metrics=metrics))
    else:
        server = TeacherServer(TeacherMetrics(CollectorRegistry()), **listen)
        server.holder.current = TeacherService(KeywordScorer(), version="teacher-v1", max_concurrency=1)
    server.start()
    return server


@pytest.fixture(params=SERVICES)
def served(request, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    server = start(request.param, tmp_path, token_file)
    try:
        yield server, token_file
    finally:
        server.stop()


def call(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def route_request(method: str, path: str, headers: dict) -> tuple[str, str, bytes | None, dict]:
    body = json.dumps({"lines": ["disk error on node 7"]}).encode() if method == "POST" else None
    return method, path, body, {**headers, **({"Content-Type": "application/json"} if body else {})}


def api_routes(server) -> list[tuple[str, str]]:
    """Every route of the service's router that is not a probe or /metrics."""
    routes = sorted(server.handler.api_routes)
    assert routes and not set(routes) & set(OPEN_ROUTES)
    return routes


UNAUTHENTICATED = {
    "no header": {},
    "wrong token": bearer("not-the-token"),
    "token prefix": bearer(TOKEN[:-1]),
    "another scheme": {"Authorization": f"Basic {TOKEN}"},
    "empty bearer": {"Authorization": "Bearer "},
}


# -- the token -------------------------------------------------------------------------------------

def test_every_api_route_refuses_a_call_without_the_token(served):
    server, _ = served
    routes = api_routes(server)
    refused = 0
    for method, path in routes:
        for why, headers in UNAUTHENTICATED.items():
            status, body, response_headers = call(server.port, *route_request(method, path, headers))
            assert status == 401, (method, path, why, body)
            assert response_headers["WWW-Authenticate"].startswith("Bearer"), (method, path, why)
            assert "Authorization: Bearer" in json.loads(body)["error"]
            refused += 1
    # An unknown route is no way around it either.
    assert call(server.port, "GET", "/v1/unknown")[0] == 401
    assert refused == len(routes) * len(UNAUTHENTICATED)


def test_routes_of_both_services():
    """The figure in docs/benchmarks.md: N routes x 2 services, each 401 without the token."""
    from logdistill.edge.server import ApiHandler
    from logdistill.model.services.serve_teacher import TeacherHandler

    assert sorted(ApiHandler.api_routes) == [("GET", "/v1/model"), ("POST", "/v1/classify")]
    assert sorted(TeacherHandler.api_routes) == [("GET", "/v1/agreement"), ("GET", "/v1/model"),
                                                 ("POST", "/v1/classify")]
    assert set(OPEN_ROUTES) == {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


def test_the_token_opens_every_api_route(served):
    server, _ = served
    for method, path in api_routes(server):
        status, body, _ = call(server.port, *route_request(method, path, bearer()))
        assert status == 200, (method, path, body)
    status, body, _ = call(server.port, *route_request("POST", "/v1/classify", bearer()))
    assert json.loads(body)["results"][0]["label"] == "ERROR"


def test_probes_and_metrics_need_no_token_on_their_own_listener_and_are_not_on_the_api_port(served):
    server, _ = served
    assert server.metrics_port != server.port
    for method, path in OPEN_ROUTES:
        status, body, _ = call(server.metrics_port, method, path)
        assert status == 200, (path, body)
        # The API listener serves none of them: without the token 401, with it 404.
        assert call(server.port, method, path)[0] == 401
        assert call(server.port, method, path, headers=bearer())[0] == 404
    # ... and the metrics listener serves no API route, token or not.
    for method, path in api_routes(server):
        assert call(server.metrics_port, *route_request(method, path, bearer()))[0] in (404, 405)


def test_one_listener_keeps_probes_open_and_the_api_closed(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    server = start("classifier", tmp_path, token_file, metrics_port=None)
    try:
        assert server.metrics_port == server.port
        assert [call(server.port, m, p)[0] for m, p in OPEN_ROUTES] == [200, 200, 200]
        assert call(server.port, *route_request("POST", "/v1/classify", {}))[0] == 401
        assert call(server.port, *route_request("POST", "/v1/classify", bearer()))[0] == 200
    finally:
        server.stop()


def test_a_rotated_token_takes_effect_without_a_restart(served):
    server, token_file = served
    classify = lambda token: call(server.port, *route_request("POST", "/v1/classify", bearer(token)))[0]  # noqa: E731
    assert classify(TOKEN) == 200
    # kubelet updates a Secret volume by swapping in a new file: an atomic rename here.
    staged = token_file.with_name("token.new")
    staged.write_text("rotated-token-1")
    os.replace(staged, token_file)
    assert (classify(TOKEN), classify("rotated-token-1")) == (401, 200)
    # Rewritten in place, same length (the mtime or inode differs): read again.
    token_file.write_text("rotated-token-2")
    os.utime(token_file, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert (classify("rotated-token-1"), classify("rotated-token-2")) == (401, 200)


def test_a_missing_or_empty_token_file_refuses_everyone(served):
    server, token_file = served
    classify = lambda token: call(server.port, *route_request("POST", "/v1/classify", bearer(token)))[0]  # noqa: E731
    token_file.unlink()
    assert classify(TOKEN) == 401
    token_file.write_text("   \n")
    assert classify("") == 401 and classify(TOKEN) == 401
    token_file.write_text(TOKEN)
    assert classify(TOKEN) == 200
    assert call(server.metrics_port, "GET", "/healthz")[0] == 200  # probes never depended on it


def test_the_escalation_client_sends_the_token_it_reads(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    teacher = start("teacher", tmp_path, token_file)
    try:
        answers = []
        client = EscalationClient(teacher.url, labels=lambda: LABELS, rps=100, retries=0, timeout=5,
                                  post=with_bearer(post_json, BearerToken(token_file)),
                                  on_answer=lambda items, got, version: answers.append((got, version)))
        unauthorised = EscalationClient(teacher.url, labels=lambda: LABELS, rps=100, retries=0, timeout=5,
                                        post=post_json)
        from logdistill.edge.escalation import Escalation

        item = Escalation("disk error on node <NUM>", "disk error on node 7", "-", 0.5, False)
        for c in (client, unauthorised):
            c.start()
            c.offer(item)
        try:
            wait_for(lambda: answers, 10, what="the teacher's answer")
            wait_for(lambda: unauthorised.counts["dropped_error"], 10, what="the refused batch")
        finally:
            client.stop()
            unauthorised.stop()
        (got, version), = answers
        assert version == "teacher-v1" and got[0].label == "ERROR"
        assert teacher.metrics.registry.get_sample_value("logdistill_teacher_requests_total", {"code": "401"}) == 1
    finally:
        teacher.stop()


# -- limits ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"[" * 15_000, b'{"lines": ' + b"[" * 9_000 + b"]" * 9_000 + b"}",
                                  b'{"lines": ["a"], "student": ' + b"[" * 15_000 + b"}"],
                         ids=["open-brackets", "nested-lines", "nested-student"])
def test_deeply_nested_json_is_a_400_not_a_500(served, body):
    server, _ = served
    status, answer, _ = call(server.port, "POST", "/v1/classify", body, bearer())
    assert status == 400, answer
    assert "JSON" in json.loads(answer)["error"] or "lines" in json.loads(answer)["error"]
    assert call(server.port, *route_request("POST", "/v1/classify", bearer()))[0] == 200  # still serving


def test_a_huge_body_is_a_413_before_it_is_read(served):
    server, _ = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\nContent-Length: 1000000000\r\n\r\n" + b"x" * 1000)
        assert read_status(sock) == 413
    # Unauthenticated, the size is not even looked at: 401.
    status, _, _ = call(server.port, "POST", "/v1/classify", b"x" * 30_000)
    assert status == 401


def read_status(sock: socket.socket) -> int | None:
    """The status of the answer on ``sock``, or None when it was closed unanswered."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    return int(data.split(b" ", 2)[1])


def trickle_until_answered(sock: socket.socket, prefix: bytes, drip: bytes, budget_s: float) -> tuple[float, bytes]:
    """Send ``prefix``, then ``drip`` every 50 ms until the server answers or closes; (seconds, answer)."""
    started = time.monotonic()
    sock.sendall(prefix)
    while time.monotonic() - started < budget_s:
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            try:
                return time.monotonic() - started, sock.recv(4096)
            except ConnectionResetError:
                return time.monotonic() - started, b""
        try:
            sock.sendall(drip)
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started, b""
    raise AssertionError(f"the server still waited for the request after {budget_s} s")


def test_a_trickling_body_is_cut_off_at_the_deadline(served):
    server, _ = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        head = (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer "
                + TOKEN.encode() + b"\r\nContent-Length: 10000\r\n\r\n{\"lines\": [\"")
        # One byte per 50 ms would take 500 s; every wait is well under the idle timeout.
        elapsed, answer = trickle_until_answered(sock, head, b"a", budget_s=10 * DEADLINE_S)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert DEADLINE_S * 0.9 <= elapsed < DEADLINE_S + 3, elapsed


def test_trickling_headers_are_cut_off_at_the_deadline(served):
    server, _ = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        elapsed, answer = trickle_until_answered(sock, b"GET /v1/model HTTP/1.1\r\n", b"X-Slow: 1\r\n",
                                                 budget_s=10 * DEADLINE_S)
    assert answer == b"" and elapsed < DEADLINE_S + 3, (elapsed, answer[:200])
    assert call(server.port, "GET", "/v1/model", headers=bearer())[0] == 200


@pytest.mark.parametrize("kind", SERVICES)
def test_connections_past_the_cap_get_503_with_retry_after(kind, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    server = start(kind, tmp_path, token_file, max_connections=2)
    try:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
        try:
            # The held connections send nothing: accepted in order, they take both slots.
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
                extra.sendall(b"GET /v1/model HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while chunk := extra.recv(4096):
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 1" in head, head
            assert "retry" in json.loads(body)["error"]
            assert server.httpd.refused >= 1
            # Probes have their own listener and slots: kubelet still gets through.
            assert call(server.metrics_port, "GET", "/healthz")[0] == 200
        finally:
            for sock in held:
                sock.close()
        # Slots free up when the held connections go.
        wait_for(lambda: call(server.port, "GET", "/v1/model", headers=bearer())[0] == 200, 10,
                 what="a free connection slot", ignore=(OSError, http.client.HTTPException))
    finally:
        server.stop()


# -- TLS ---------------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_serves_the_api_and_refuses_plain_http(tmp_path):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    server = start("classifier", tmp_path, token_file, tls=tls_context(cert, key))
    try:
        assert server.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
        try:
            connection.request(*route_request("POST", "/v1/classify", bearer())[:2],
                               body=route_request("POST", "/v1/classify", {})[2], headers=bearer())
            assert connection.getresponse().status == 200
        finally:
            connection.close()
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            call(server.port, "GET", "/v1/model", headers=bearer())
        assert call(server.metrics_port, "GET", "/metrics")[0] == 200  # scraped over plain HTTP
    finally:
        server.stop()
