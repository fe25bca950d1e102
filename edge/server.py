"""The classifier's HTTP API on the standard library's ``ThreadingHTTPServer``.

``POST /v1/classify``  ``{"lines": ["...", ...]}``
                       -> ``{"results": [{"label", "score", "template"}, ...], "model": version}``
``GET /v1/model``      the serving version and its manifest info
``GET /healthz``       liveness: 200 while the process runs (a slow model load is no reason to restart)
``GET /readyz``        readiness, meaning "classifying": 200 (``ready: model <version>``) only when
                       (1) a model is loaded, (2) its self-test (a fixed line classified right after
                       the load or reload, see :func:`logdistill.edge.main.load_classifier`) passed,
                       and (3) at least one log source is readable: a file is open, or a ``--paths``
                       glob's directory can be listed and no match failed to open. Without ``--paths``
                       (``--no-tail``, API only) (3) does not apply. Otherwise 503 with a short
                       plain-text reason, e.g. ``no readable log source: /var/log/pods: permission denied``.
``GET /metrics``       Prometheus text format

Limits: a body over ``max_body_bytes`` or more than ``max_lines`` lines gets 413; a body
that is not JSON, or not an object with a list of strings under ``lines``, gets 400;
both with ``{"error": message}``. A thread per connection; no request can crash it.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from logdistill.edge.metrics import HTTP_SOURCE, ClassifierMetrics
from logdistill.edge.reload import ModelHolder

__all__ = ["ClassifierServer", "ApiHandler", "RequestError", "parse_lines", "DEFAULT_MAX_LINES",
           "DEFAULT_MAX_BODY_BYTES"]

log = logging.getLogger(__name__)

DEFAULT_MAX_LINES = 10_000
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
_TEXT = "text/plain; charset=utf-8"


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class ClassifierServer:
    """Serves ``holder`` on ``host:port`` (port 0 = an ephemeral port, see :attr:`port`).

    ``sources``: returns why no log source is readable, or ``None`` (the tailer's ``not_ready``);
    unset when nothing is tailed. May be set after construction, once the tailer exists.
    """

    def __init__(
        self,
        holder: ModelHolder,
        metrics: ClassifierMetrics,
        *,
        host: str = "0.0.0.0",
        port: int = 8080,
        max_lines: int = DEFAULT_MAX_LINES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        sources: Callable[[], str | None] | None = None,
    ) -> None:
        self.holder = holder
        self.sources = sources
        self.metrics = metrics
        self.max_lines = max_lines
        self.max_body_bytes = max_body_bytes
        handler = type("Handler", (ApiHandler,), {"app": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    def start(self) -> None:
        # A short poll interval only makes shutdown prompt; requests are served as they come.
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- routes -----------------------------------------------------------------------------

    def not_ready(self) -> str | None:
        """Why this classifier is not classifying, or ``None`` when it is (see the module docstring)."""
        model = self.holder.current
        if model is None:
            return "no model loaded yet"
        if getattr(model, "self_test", None) is None:
            return f"model {model.version} is loaded but has not passed its self-test"
        if self.sources is not None:
            return self.sources()
        return None

    def classify(self, body: bytes) -> dict[str, Any]:
        lines = parse_lines(body, self.max_lines)
        model = self.holder.current
        if model is None:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "no model loaded yet")
        self.metrics.lines_read.labels(source=HTTP_SOURCE).inc(len(lines))
        results = model.classify(lines)
        return {
            "results": [{"label": r.label, "score": r.score, "template": r.template} for r in results],
            "model": model.version,
        }

    def model_info(self) -> dict[str, Any]:
        model = self.holder.current
        if model is None:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "no model loaded yet")
        manifest = model.model.manifest
        return {"version": manifest.version, "kind": manifest.kind, "created": manifest.created, "info": manifest.info}


def parse_lines(body: bytes, max_lines: int) -> list[str]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {err}") from None
    if not isinstance(payload, dict) or "lines" not in payload:
        raise RequestError(HTTPStatus.BAD_REQUEST, 'body must be a JSON object {"lines": ["...", ...]}')
    lines = payload["lines"]
    if not isinstance(lines, list):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'lines' must be a list of strings, not {type(lines).__name__}")
    if len(lines) > max_lines:
        raise RequestError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{len(lines)} lines in one request; the limit is {max_lines}"
        )
    for index, line in enumerate(lines):
        if not isinstance(line, str):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"lines[{index}] must be a string, not {type(line).__name__}")
    if b"\\ud" in body or b"\\uD" in body:
        # JSON escapes can spell lone surrogates, which are not text: replace them.
        lines = [line.encode("utf-8", "replace").decode("utf-8") for line in lines]
    return lines


class ApiHandler(BaseHTTPRequestHandler):
    app: ClassifierServer
    protocol_version = "HTTP/1.1"
    server_version = "logdistill-classifier"
    timeout = 60  # seconds a connection may sit idle or trickle a body before its thread is freed

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                self._send(HTTPStatus.OK, b"ok\n", _TEXT)
            elif path == "/readyz":
                # The teacher server (logdistill serve-teacher) reuses this handler: it is ready once loaded.
                check = getattr(self.app, "not_ready", None)
                model = self.app.holder.current
                problem = check() if check is not None else (None if model is not None else "no model loaded yet")
                if problem is None:
                    self._send(HTTPStatus.OK, f"ready: model {model.version}\n".encode(), _TEXT)
                else:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"{problem}\n".encode(), _TEXT)
            elif path == "/metrics":
                self._send(HTTPStatus.OK, generate_latest(self.app.metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/v1/model":
                self._json(HTTPStatus.OK, self.app.model_info())
            elif path == "/v1/classify":
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use POST for /v1/classify")
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no route {path}")
        except RequestError as err:
            self._error(err.status, str(err))

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path != "/v1/classify":
            self._error(HTTPStatus.NOT_FOUND if path not in ("/healthz", "/readyz", "/metrics", "/v1/model")
                        else HTTPStatus.METHOD_NOT_ALLOWED, f"no POST route {path}")
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            return
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_header!r}")
            return
        if length > self.app.max_body_bytes:
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes; the limit is {self.app.max_body_bytes}",
            )
            return
        body = self.rfile.read(length)
        try:
            self._json(HTTPStatus.OK, self.app.classify(body))
        except RequestError as err:
            self._error(err.status, str(err))
        except Exception as err:  # a bug must cost one request, not the server
            log.exception("classify failed")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(err).__name__}")

    def _error(self, status: HTTPStatus, message: str) -> None:
        # Unread request bodies make the connection unusable: close it after an error.
        self.close_connection = True
        self._json(status, {"error": message})

    def _json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base class signature)
        log.debug("%s - %s", self.address_string(), format % args)
