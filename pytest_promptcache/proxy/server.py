"""The proxy's listener: an HTTP server on 127.0.0.1 whose calls go to a ``CacheSession``'s engine.

The standard library's ``ThreadingHTTPServer``, a thread per client connection: the engine is
synchronous (a recording read, a key lock, a save), so a thread is its natural caller, the same path
the sync client adapters take; nothing here can block an event loop, since there is none; and
``promptcache serve`` needs no dependency beyond the plugin's. Connections are bounded (one past the
limit is answered 503 at once), as is every read and wait (see ``handler``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import ThreadingHTTPServer
from typing import Any

from ..session import CacheSession
from .handler import ProxyHandler
from .upstreams import Upstream
from .wire import error_body

HOST = "127.0.0.1"
MAX_CONNECTIONS = 128
# How long stopping waits for calls in progress (a stream being recorded) before cutting them.
STOP_GRACE = 5.0
# How long a connection over the limit waits for one to end before it is turned away: a client that
# opens its next connection as soon as it has read an answer races the thread that served the last one.
FULL_GRACE = 0.5


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, proxy: ProxyServer, port: int) -> None:
        self.proxy = proxy
        self._count = 0
        self._count_lock = threading.Condition()
        super().__init__((HOST, port), ProxyHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count_lock:
            limit = self.proxy.max_connections
            full = not self._count_lock.wait_for(lambda: self._count < limit, timeout=FULL_GRACE)
            if not full:
                self._count += 1
        if full:
            self._turn_away(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._count_lock:
            self._count -= 1
            self._count_lock.notify()

    def _turn_away(self, request: socket.socket) -> None:
        limit = self.proxy.max_connections
        body = error_body(
            f"promptcache serve: {limit} connections are open already; try again", "promptcache_busy"
        )
        head = (
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            request.settimeout(1.0)
            request.sendall(head.encode() + body)
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-request; anything the engine decided is in the report


class ProxyServer:
    """``promptcache serve`` and the ``promptcache_proxy`` fixture: start, the URLs to hand to clients,
    stop. Every call goes through ``session``'s engine, attributed to the test running when it arrives."""

    def __init__(
        self,
        session: CacheSession,
        upstreams: Mapping[str, Upstream],
        *,
        port: int = 0,
        max_connections: int = MAX_CONNECTIONS,
        grace: float = STOP_GRACE,
    ) -> None:
        self.session = session
        self.upstreams = dict(upstreams)
        self.max_connections = max_connections
        self.max_body = session.settings.limits.max_recording_size
        self._port = port
        self._grace = grace
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._handlers: dict[ProxyHandler, bool] = {}  # open connections: whether one is in a call
        self._idle = threading.Condition(self._lock)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> ProxyServer:
        httpd = self._httpd = _HTTPServer(self, self._port)
        self.session.add_proxy(self.port, self._paths())
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="promptcache-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting; let calls in progress finish for up to ``grace`` seconds, then cut them."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        port = int(httpd.server_address[1])
        httpd.shutdown()
        httpd.server_close()
        deadline = time.monotonic() + self._grace
        with self._lock:
            self._close_where(busy=False)
            while any(self._handlers.values()) and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            self._close_where(busy=True)
        if self._thread is not None:
            self._thread.join(timeout=self._grace)
        self.session.remove_proxy(port)

    def _close_where(self, *, busy: bool) -> None:
        for handler, in_call in self._handlers.items():
            if busy or not in_call:
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what clients are given ------------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens: always 127.0.0.1, never any other interface."""
        if self._httpd is None:
            raise RuntimeError("the proxy is not running")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_urls(self) -> dict[str, str]:
        """A client's base URL for each upstream: ``{"openai": "http://127.0.0.1:PORT/openai/v1", ...}``."""
        return {name: self.url + upstream.mount for name, upstream in self.upstreams.items()}

    @property
    def env(self) -> dict[str, str]:
        """Environment variables for a subprocess: each SDK's base URL variable, ``PROMPTCACHE_PROXY_URL``,
        and ``NO_PROXY`` extended so an HTTP proxy of the machine is not asked for 127.0.0.1."""
        env: dict[str, str] = {}
        for name, url in self.base_urls.items():
            for variable in self.upstreams[name].env_names:
                env[variable] = url
        env["PROMPTCACHE_PROXY_URL"] = self.url
        for variable in ("NO_PROXY", "no_proxy"):
            present = [h for h in os.environ.get(variable, "").split(",") if h.strip()]
            env[variable] = ",".join(dict.fromkeys([*present, HOST, "localhost"]))
        return env

    def _paths(self) -> list[str]:
        return [f"/{name}/" for name in self.upstreams]

    # -- the handlers' bookkeeping ---------------------------------------------------------------------------

    def opened(self, handler: ProxyHandler) -> None:
        with self._lock:
            self._handlers[handler] = False

    def closed(self, handler: ProxyHandler) -> None:
        with self._lock:
            self._handlers.pop(handler, None)
            self._idle.notify_all()

    @contextlib.contextmanager
    def busy(self, handler: ProxyHandler) -> Iterator[None]:
        with self._lock:
            self._handlers[handler] = True
        try:
            yield
        finally:
            with self._lock:
                if handler in self._handlers:
                    self._handlers[handler] = False
                self._idle.notify_all()
