"""What guards the classifier's API and the teacher service (both on ``http.server``): a bearer token
read from a file, TLS, a cap on connections, a deadline on receiving a request, JSON that cannot
crash the parser.

Standard library only: the edge image carries onnxruntime, tokenizers, numpy and prometheus-client
and nothing else.

* :class:`BearerToken`: the token of a mounted Secret. The file is stat'ed on every check and read
  again when it changed (kubelet swaps a Secret volume's files when the Secret is updated), so a
  rotation needs no restart; compared with :func:`hmac.compare_digest`. An unreadable or empty file
  refuses every request (fail closed).
* :class:`GuardedHTTPServer`: past ``max_connections`` open connections, a new one is answered
  ``503`` with ``Retry-After`` and closed (with TLS it is closed unanswered: an answer would need a
  handshake on the accepting thread). With TLS, the handshake runs on the connection's thread,
  under the deadline.
* :class:`GuardedHandler`: a request (its line, headers and body) must arrive within ``deadline_s``
  of its first wait, however slowly it trickles: a slow client is cut off (``408`` once the headers
  are in, else the connection is closed).
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import os
import socket
import ssl
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

__all__ = ["BearerToken", "GuardedHTTPServer", "GuardedHandler", "RequestError", "load_json", "tls_context",
           "DEFAULT_MAX_CONNECTIONS", "DEFAULT_DEADLINE_S", "RETRY_AFTER_S", "add_listen_arguments",
           "listen_options", "with_bearer"]

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_DEADLINE_S = 30.0
RETRY_AFTER_S = 1
# Seconds one write of a response may wait for a client that does not read.
WRITE_TIMEOUT_S = 10.0
# Seconds a closing connection reads (and drops) what its client still sends, see shutdown_request.
LINGER_S = 1.0


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def load_json(body: bytes) -> Any:
    """The JSON value of a request body; 400 for what is not JSON or is nested too deeply to parse."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {err}") from None
    except RecursionError:
        raise RequestError(HTTPStatus.BAD_REQUEST, "body is not valid JSON: nested too deeply") from None


class BearerToken:
    """The token in ``path`` (surrounding whitespace stripped), re-read when the file changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple | None = None  # (inode, size, mtime) of the file last read
        self._token: bytes | None = None

    def current(self) -> bytes | None:
        """The token now, or ``None`` when the file is missing, unreadable or empty."""
        try:
            st = os.stat(self.path)  # follows the Secret volume's ..data symlink to the live file
        except OSError as err:
            self._forget(f"cannot stat {self.path}: {err.strerror}")
            return None
        key = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        with self._lock:
            if key != self._seen:
                try:
                    token = self.path.read_bytes().strip()
                except OSError as err:
                    self._token, self._seen = None, None
                    log.error("cannot read the API token %s: %s: refusing every request", self.path, err.strerror)
                    return None
                if not token:
                    log.error("the API token file %s is empty: refusing every request", self.path)
                self._token, self._seen = token or None, key
            return self._token

    def _forget(self, why: str) -> None:
        with self._lock:
            if self._seen is not None or self._token is not None:
                log.error("%s: refusing every request", why)
            self._token, self._seen = None, None

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the token."""
        token = self.current()
        if token is None or not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode("utf-8", "replace"), token)

    def header(self) -> dict[str, str]:
        """The ``Authorization`` header a client sends (none while the file is unreadable)."""
        token = self.current()
        return {"Authorization": f"Bearer {token.decode('utf-8', 'replace')}"} if token else {}


def add_listen_arguments(parser: Any, token_note: str = "") -> None:
    """The flags of the guards, the same for ``logdistill classify`` and ``logdistill serve-teacher``."""
    group = parser.add_argument_group("access", "authentication, TLS and limits of the HTTP API")
    group.add_argument("--metrics-port", type=int, default=None,
                       help="serve /healthz, /readyz and /metrics (never a token) on this port, apart from the API")
    group.add_argument("--token-file", type=Path, default=None,
                       help="file holding the bearer token the API requires (re-read when it changes: a mounted"
                            f" Secret rotates without a restart); without it the API is open{token_note}")
    group.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate: serve the API over HTTPS")
    group.add_argument("--tls-key", type=Path, default=None, help="PEM private key of --tls-cert")
    group.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                       help="open connections per listener; past it a connection gets 503 (default %(default)s)")
    group.add_argument("--request-deadline", type=float, default=DEFAULT_DEADLINE_S,
                       help="seconds a request (line, headers, body) may take to arrive (default %(default)s)")


def listen_options(args: Any) -> dict[str, Any]:
    """:class:`~logdistill.edge.server.HttpService` keywords from the flags of :func:`add_listen_arguments`;
    ``ValueError`` naming the flag when they do not fit or the TLS files cannot be loaded."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.max_connections < 1 or args.request_deadline <= 0:
        raise ValueError("--max-connections must be at least 1 and --request-deadline positive")
    if args.metrics_port is not None and args.metrics_port == args.port and args.port != 0:
        raise ValueError(f"--metrics-port and --port are both {args.port}")
    try:
        tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert is not None else None
    except OSError as err:  # ssl.SSLError included
        raise ValueError(f"cannot load --tls-cert/--tls-key: {err}") from err
    return {
        "host": args.host, "port": args.port, "metrics_port": args.metrics_port,
        "token": BearerToken(args.token_file) if args.token_file is not None else None,
        "tls": tls,
        "max_connections": args.max_connections, "deadline_s": args.request_deadline,
    }


def with_bearer(post: Callable[..., Any], token: BearerToken | None) -> Callable[[str, dict, float], Any]:
    """A client's ``post(url, payload, timeout, headers=...)`` sending ``token``'s ``Authorization``
    header, read per request (it rotates); ``post`` itself without a token."""
    if token is None:
        return post
    return lambda url, payload, timeout: post(url, payload, timeout, headers=token.header())


def tls_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server context for ``--tls-cert``/``--tls-key`` (PEM files); raises ``OSError``/``ssl.SSLError``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


_BUSY_BODY = json.dumps({"error": "too many connections; retry later"}).encode()
_BUSY = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         f"Content-Length: {len(_BUSY_BODY)}\r\nRetry-After: {RETRY_AFTER_S}\r\nConnection: close\r\n\r\n"
         ).encode() + _BUSY_BODY


class GuardedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once; optional TLS."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, deadline_s: float = DEFAULT_DEADLINE_S,
                 tls: ssl.SSLContext | None = None) -> None:
        if max_connections < 1 or deadline_s <= 0:
            raise ValueError("max_connections must be at least 1 and the deadline positive")
        self.max_connections = max_connections
        self.deadline_s = deadline_s
        self.tls = tls
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0  # connections answered 503 (read by tests and logs)
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A failed TLS handshake or a reset connection (the routes catch their own errors): no traceback.
        log.info("connection from %s dropped: %s", client_address[0] if client_address else "?", sys.exc_info()[1])

    def _refuse(self, request: socket.socket) -> None:
        try:
            if self.tls is None:
                request.settimeout(1.0)
                request.sendall(_BUSY)  # a fresh socket's send buffer is empty: this does not wait
            request.shutdown(socket.SHUT_WR)
            _discard(request, wait_s=0.0)  # never wait on the accepting thread
        except OSError:
            pass
        self.close_request(request)

    def shutdown_request(self, request: socket.socket) -> None:
        """Send FIN, then read what the client still sends (an unread body after a 401 or 413) for a
        moment before closing: a close with unread bytes is a reset, which can destroy the answer
        before the client has read it."""
        try:
            request.shutdown(socket.SHUT_WR)
            _discard(request, wait_s=LINGER_S)
        except OSError:
            pass
        self.close_request(request)


def _discard(request: socket.socket, wait_s: float, limit: int = 1 << 20) -> None:
    """Read and drop up to ``limit`` bytes until the client closes or ``wait_s`` passes."""
    deadline = time.monotonic() + wait_s
    while limit > 0:
        left = deadline - time.monotonic()
        if left > 0:
            request.settimeout(left)
        else:
            request.setblocking(False)
        try:
            chunk = request.recv(min(limit, 65536))
        except (BlockingIOError, TimeoutError):
            return
        if not chunk:
            return
        limit -= len(chunk)


class _DeadlineReader(io.RawIOBase):
    """Reads a socket, each wait bounded by what is left until ``deadline`` (a monotonic time)."""

    def __init__(self, sock: socket.socket, clock: Callable[[], float] = time.monotonic) -> None:
        self.sock = sock
        self.deadline = float("inf")
        self._clock = clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - self._clock()
        if left <= 0:
            raise TimeoutError("the request did not arrive within its deadline")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class GuardedHandler(BaseHTTPRequestHandler):
    """Reads each request under the server's deadline; TLS-wraps the connection on its own thread."""

    server: GuardedHTTPServer

    def setup(self) -> None:
        if self.server.tls is not None:
            self.request.settimeout(self.server.deadline_s)  # the handshake, too, has the deadline
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = time.monotonic() + self.server.deadline_s
        super().handle_one_request()

    def read_body(self, length: int) -> bytes:
        """Exactly ``length`` bytes of body, or :class:`RequestError` 408 when the deadline passes first."""
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise RequestError(HTTPStatus.REQUEST_TIMEOUT,
                               f"the body did not arrive within {self.server.deadline_s:g} s") from None
        if len(body) < length:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body)} of {length} bytes")
        return body

    def begin_response(self) -> None:
        """Writes get their own timeout (the read deadline may have run out)."""
        self.connection.settimeout(WRITE_TIMEOUT_S)
