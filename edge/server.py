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

Two listeners when ``metrics_port`` is set: the API (``/v1/*``) on ``port``, and ``/healthz``,
``/readyz`` and ``/metrics`` on ``metrics_port`` (what kubelet probes and Prometheus scrape, never
a token). Without it, one listener serves all of them.

With a ``token`` (:class:`~logdistill.edge.httpguard.BearerToken`), every route but the three
above needs ``Authorization: Bearer <token>``: 401 with ``WWW-Authenticate: Bearer`` otherwise.
Which routes need it is :data:`OPEN_ROUTES` (the exceptions) and ``api_routes`` (the handler's
router), so a new route cannot skip it.

Limits: a body over ``max_body_bytes`` or more than ``max_lines`` lines gets 413; a body
that is not JSON (nested too deeply included), or not an object with a list of strings under
``lines``, gets 400; a request not received within ``deadline_s`` gets 408 (or is closed); past
``max_connections`` open connections a new one gets 503 with ``Retry-After`` (see
:mod:`logdistill.edge.httpguard`). All with ``{"error": message}``. A thread per connection; no
request can crash it.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from http import HTTPStatus
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from logdistill.edge.httpguard import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MAX_CONNECTIONS,
    BearerToken,
    GuardedHandler,
    GuardedHTTPServer,
    RequestError,
    load_json,
)
from logdistill.edge.metrics import HTTP_SOURCE, ClassifierMetrics
from logdistill.edge.reload import ModelHolder

__all__ = ["HttpService", "ClassifierServer", "ApiHandler", "RequestError", "parse_lines", "DEFAULT_MAX_LINES",
           "DEFAULT_MAX_BODY_BYTES", "OPEN_ROUTES"]

log = logging.getLogger(__name__)

DEFAULT_MAX_LINES = 10_000
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
_TEXT = "text/plain; charset=utf-8"
# The only routes served without a token: kubelet probes and Prometheus.
OPEN_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "_healthz",
    ("GET", "/readyz"): "_readyz",
    ("GET", "/metrics"): "_metrics",
}
API, METRICS, BOTH = "api", "metrics", "both"  # what one listener serves


def parse_lines(body: bytes, max_lines: int) -> list[str]:
    payload = load_json(body)
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


class ApiHandler(GuardedHandler):
    """Routes a request of one listener (``serves``): :data:`OPEN_ROUTES` without a token, then
    ``api_routes`` (``(method, path) -> method name``; subclasses add theirs) with one."""

    app: HttpService
    serves: str = BOTH
    api_routes: dict[tuple[str, str], str] = {
        ("POST", "/v1/classify"): "_classify",
        ("GET", "/v1/model"): "_model_info",
    }
    protocol_version = "HTTP/1.1"
    server_version = "logdistill-classifier"
    timeout = 60  # seconds a connection may sit idle before its thread is freed

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        route = (self.command, path)
        try:
            if self.serves != API and route in OPEN_ROUTES:
                getattr(self, OPEN_ROUTES[route])()
                return
            if self.serves == METRICS:
                self._not_routed(path, OPEN_ROUTES)
                return
            if not self.app.authorized(self.headers.get("Authorization")):
                self._unauthorized()
                return
            if route in self.api_routes:
                getattr(self, self.api_routes[route])()
            else:
                self._not_routed(path, {**self.api_routes, **(OPEN_ROUTES if self.serves == BOTH else {})})
        except RequestError as err:
            self._error(err.status, str(err))
        except (ConnectionError, TimeoutError) as err:  # the client left, or does not read its answer
            self.close_connection = True
            log.debug("%s %s: connection dropped: %s", self.command, path, err)
        except Exception as err:  # a bug must cost one request, not the server
            log.exception("%s %s failed", self.command, path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(err).__name__}")

    def _not_routed(self, path: str, routes: dict[tuple[str, str], str]) -> None:
        methods = sorted(method for method, known in routes if known == path)
        if methods:
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"use {' or '.join(methods)} for {path}")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no {self.command} route {path}")

    def _unauthorized(self) -> None:
        self.close_connection = True  # its body (if any) is not read
        self._json(HTTPStatus.UNAUTHORIZED, {"error": "a valid 'Authorization: Bearer <token>' header is required"},
                   {"WWW-Authenticate": 'Bearer realm="logdistill"'})

    # -- routes -------------------------------------------------------------------------------

    def _healthz(self) -> None:
        self._send(HTTPStatus.OK, b"ok\n", _TEXT)

    def _readyz(self) -> None:
        problem = self.app.not_ready()
        if problem is None:
            self._send(HTTPStatus.OK, f"ready: model {self.app.holder.current.version}\n".encode(), _TEXT)
        else:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"{problem}\n".encode(), _TEXT)

    def _metrics(self) -> None:
        self._send(HTTPStatus.OK, generate_latest(self.app.metrics.registry), CONTENT_TYPE_LATEST)

    def _model_info(self) -> None:
        self._json(HTTPStatus.OK, self.app.model_info())

    def _classify(self) -> None:
        self._json(HTTPStatus.OK, self.app.classify(self._body()))

    def _body(self) -> bytes:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_header!r}") from None
        if length > self.app.max_body_bytes:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"body of {length} bytes; the limit is {self.app.max_body_bytes}")
        return self.read_body(length)

    # -- responses ----------------------------------------------------------------------------

    def _error(self, status: HTTPStatus, message: str) -> None:
        # Unread request bodies make the connection unusable: close it after an error.
        self.close_connection = True
        self._json(status, {"error": message})

    def _json(self, status: HTTPStatus, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json", headers)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.begin_response()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base class signature)
        log.debug("%s - %s", self.address_string(), format % args)


class HttpService:
    """The listeners of a model behind ``holder``: the API on ``host:port`` (0 = an ephemeral port,
    see :attr:`port`) and, with ``metrics_port``, probes and metrics on their own listener."""

    handler: type[ApiHandler] = ApiHandler

    def __init__(
        self,
        holder: Any,
        metrics: Any,
        *,
        host: str = "0.0.0.0",
        port: int = 8080,
        metrics_port: int | None = None,
        token: BearerToken | None = None,
        tls: ssl.SSLContext | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        deadline_s: float = DEFAULT_DEADLINE_S,
        max_lines: int = DEFAULT_MAX_LINES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.holder = holder
        self.metrics = metrics
        self.token = token
        self.max_lines = max_lines
        self.max_body_bytes = max_body_bytes

        def listen(listen_port: int, serves: str, context: ssl.SSLContext | None) -> GuardedHTTPServer:
            handler = type("Handler", (self.handler,), {"app": self, "serves": serves})
            return GuardedHTTPServer((host, listen_port), handler, max_connections=max_connections,
                                     deadline_s=deadline_s, tls=context)

        self.httpd = listen(port, BOTH if metrics_port is None else API, tls)
        try:
            # Prometheus and kubelet probes speak plain HTTP to the metrics listener.
            self.metrics_httpd = listen(metrics_port, METRICS, None) if metrics_port is not None else None
        except OSError:
            self.httpd.server_close()
            raise
        self._scheme = "https" if tls is not None else "http"

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def metrics_port(self) -> int:
        return (self.metrics_httpd or self.httpd).server_address[1]

    @property
    def url(self) -> str:
        return self._url(self.httpd, self._scheme)

    @property
    def metrics_url(self) -> str:
        return self._url(self.metrics_httpd, "http") if self.metrics_httpd is not None else self.url

    @staticmethod
    def _url(httpd: GuardedHTTPServer, scheme: str) -> str:
        host, port = httpd.server_address[:2]
        return f"{scheme}://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    def start(self) -> None:
        # A short poll interval only makes shutdown prompt; requests are served as they come.
        for httpd in self._listeners():
            threading.Thread(target=httpd.serve_forever, args=(0.05,), name="http", daemon=True).start()

    def stop(self) -> None:
        for httpd in self._listeners():
            httpd.shutdown()
            httpd.server_close()

    def _listeners(self) -> list[GuardedHTTPServer]:
        return [self.httpd, *([self.metrics_httpd] if self.metrics_httpd is not None else [])]

    def authorized(self, authorization: str | None) -> bool:
        return self.token is None or self.token.accepts(authorization)

    def not_ready(self) -> str | None:
        return None if self.holder.current is not None else "no model loaded yet"

    def classify(self, body: bytes) -> dict[str, Any]:
        raise NotImplementedError

    def model_info(self) -> dict[str, Any]:
        raise NotImplementedError


class ClassifierServer(HttpService):
    """Serves ``holder``'s classifier (see :class:`HttpService` for the listeners and guards).

    ``sources``: returns why no log source is readable, or ``None`` (the tailer's ``not_ready``);
    unset when nothing is tailed. May be set after construction, once the tailer exists.
    """

    def __init__(self, holder: ModelHolder, metrics: ClassifierMetrics, *,
                 sources: Callable[[], str | None] | None = None, **listen: Any) -> None:
        super().__init__(holder, metrics, **listen)
        self.sources = sources

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
