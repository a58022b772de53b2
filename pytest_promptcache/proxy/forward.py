"""The proxy's side of a live call: the request sent upstream with the standard library's
``http.client``, and a watch on the client that ends the upstream read as soon as the client hangs up.

``http.client`` on purpose: no adapter of this package intercepts it, so a proxy running inside a pytest
process never sees its own upstream request come back to the engine; and it needs no dependency.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .upstreams import Upstream

# Between two reads of an upstream answer (a slow model's first token, a pause mid-stream): a bound,
# far above what a live provider takes, so a silent upstream fails the call instead of holding it.
UPSTREAM_TIMEOUT = 600.0
# How often the client watch looks whether the exchange it guards has ended.
_WATCH_POLL = 0.25

# Request headers that describe the connection to the proxy, not the request: never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)


def _decodable() -> tuple[str, ...]:
    try:
        import brotli  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return ("gzip", "deflate")
    return ("gzip", "deflate", "br")


_DECODABLE = _decodable()


def accept_encoding(value: str | None) -> str | None:
    """The client's accept-encoding, less what a recorder could not decode (the recording is stored
    decoded): zstd from a client that also takes gzip becomes gzip alone."""
    if value is None:
        return None
    kept = [part.strip() for part in value.split(",") if part.split(";", 1)[0].strip().lower() in _DECODABLE]
    return ", ".join(kept) if kept else "identity"


@dataclass
class Sent:
    """A request sent upstream: its response (head read), the socket it arrives on (for the client
    watch), the connection (kept for the next request, or closed)."""

    response: http.client.HTTPResponse
    sock: socket.socket | None
    conn: http.client.HTTPConnection
    upstream: str


class UpstreamConnections:
    """One handler thread's connections to its upstreams, kept while its client keeps its connection to
    the proxy (clients send their calls one after another on one connection), so recording a suite
    does not pay a TLS handshake per call."""

    # A connection idle longer is not reused: servers close idle ones after 5 s or more, and a request
    # sent on one the server is closing fails (then it is sent again once, on a new connection).
    KEEP_IDLE = 4.0

    def __init__(self, timeout: float = UPSTREAM_TIMEOUT) -> None:
        self._timeout = timeout
        self._open: dict[str, tuple[http.client.HTTPConnection, float]] = {}

    def _new(self, upstream: Upstream) -> http.client.HTTPConnection:
        if upstream.scheme == "https":
            return http.client.HTTPSConnection(
                upstream.host,
                upstream.connect_port,
                timeout=self._timeout,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(upstream.host, upstream.connect_port, timeout=self._timeout)

    def send(
        self,
        upstream: Upstream,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> Sent:
        """Send, and read the response's head."""
        kept, idle_since = self._open.pop(upstream.name, (None, 0.0))
        if kept is not None and time.monotonic() - idle_since < self.KEEP_IDLE:
            try:
                return self._send(kept, upstream, method, target, headers, body)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                pass  # closed by the upstream while idle, before it answered: once more, on a new one
        elif kept is not None:
            kept.close()
        return self._send(self._new(upstream), upstream, method, target, headers, body)

    def _send(
        self,
        conn: http.client.HTTPConnection,
        upstream: Upstream,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> Sent:
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", upstream.netloc)
            for name, value in headers:
                conn.putheader(name, value)
            if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            sock = conn.sock
            response = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        return Sent(response, sock, conn, upstream.name)

    def done(self, sent: Sent, *, complete: bool) -> None:
        """The relay is over: keep the connection if its answer was read to the end."""
        sent.response.close()  # read to its end: the connection is free for the next request
        if not complete or sent.response.will_close:
            sent.conn.close()
            return
        old, _ = self._open.pop(sent.upstream, (None, 0.0))
        if old is not None:
            old.close()
        self._open[sent.upstream] = (sent.conn, time.monotonic())

    def close(self) -> None:
        for conn, _ in self._open.values():
            conn.close()
        self._open.clear()


class ClientWatch:
    """While a live answer is relayed, watches the client's connection; when the client hangs up, shuts
    the upstream socket, so the upstream read that holds the relay ends at once (and the provider stops
    generating) instead of when the next chunk arrives."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client_left = False
        self._client = client
        self._upstream = upstream
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if upstream is not None:
            self._thread = threading.Thread(target=self._watch, name="promptcache-proxy-watch", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            try:
                readable, _, _ = select.select([self._client], [], [], _WATCH_POLL)
                if not readable:
                    continue
                # A client reading an answer sends nothing: readable means it hung up (or pipelines its
                # next request, which the handler reads after this answer: then stop watching).
                if self._client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b"":
                    return
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                pass  # reset or closed: gone too
            if not self._done.is_set():
                self.client_left = True
                assert self._upstream is not None
                with contextlib.suppress(OSError):
                    self._upstream.shutdown(socket.SHUT_RDWR)
            return

    def stop(self) -> None:
        self._done.set()
