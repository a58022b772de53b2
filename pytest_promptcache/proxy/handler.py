"""One client connection to the proxy: each request read (bounded), routed to its upstream, and answered
through the engine, as an in-process client's would be.

An LLM request becomes the ``RawRequest`` of the request sent upstream (its host, port and path), so it
keys exactly as the same call made in-process: a recording made either way serves the other. The
engine's answer is written back: a recording (a stream one event per HTTP chunk), a miss (404, the
message in the body), or the live response, relayed chunk by chunk as it arrives while its recorder
watches it go by. Other requests are forwarded untouched outside replay; in replay only where the socket
guard would let an in-process client through.
"""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from ..clients.drive import decide_sync, send_sync
from ..keys import RawRequest, display_url
from ..ledger import Outcome
from ..live import LiveCall
from ..session import CacheSession
from ..settings import Mode
from ..streams import BodyRecorder, Replay
from .forward import HOP_BY_HOP, ClientWatch, Sent, UpstreamConnections, accept_encoding
from .upstreams import Route, Upstream, route
from .wire import BadRequest, error_body, header_lines, outsider, read_body, status_line

# Reading a request (its line, headers and body) and writing to a client that does not read: a bound.
CLIENT_TIMEOUT = 60.0
_READ = 64 * 1024
# Response headers about the connection the proxy received the answer on, not the answer.
_RESPONSE_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)


class Proxy(Protocol):
    """What a handler needs of the server that runs it."""

    session: CacheSession
    upstreams: Mapping[str, Upstream]
    max_body: int

    def opened(self, handler: ProxyHandler) -> None: ...

    def closed(self, handler: ProxyHandler) -> None: ...

    def busy(self, handler: ProxyHandler) -> contextlib.AbstractContextManager[None]: ...


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CLIENT_TIMEOUT
    # Small stream chunks go out at once, not after the client's delayed ACK.
    disable_nagle_algorithm = True
    server_version = "promptcache"

    proxy: Proxy
    _upstreams: UpstreamConnections
    _answered = False  # whether this request's answer has begun: a failure can then only hang up

    def setup(self) -> None:
        super().setup()
        self.proxy = self.server.proxy  # type: ignore[attr-defined]
        self._upstreams = UpstreamConnections()
        self.proxy.opened(self)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._upstreams.close()
            self.proxy.closed(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the report says what happened; a line per request would drown a test's output

    def do_CONNECT(self) -> None:
        self._refuse(405, "promptcache serve is not a forward proxy: point a client's base URL at it")

    def do_GET(self) -> None:
        self._answered = False
        with self.proxy.busy(self):
            try:
                self._exchange()
            except Exception as exc:
                # Not a silent hang-up: the client and the running test see what broke (the engine
                # refusing an unsafe state directory, say), and nothing more is read on this connection.
                message = f"promptcache serve: the proxy failed: {exc!r}"
                self.proxy.session.context.add_problem(message)
                self.close_connection = True
                if not self._answered:
                    self._refuse(500, message, kind="promptcache_proxy_error")

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # -- a request ------------------------------------------------------------------------------------------

    def _exchange(self) -> None:
        refusal = outsider(self.headers)
        target = route(self.path, self.proxy.upstreams)
        if refusal is not None or isinstance(target, str):
            # Refused unread: what is left of the request cannot be told from a next one.
            self.close_connection = True
            if refusal is not None:
                self._refuse(403, refusal)
            else:
                self._refuse(404, f"promptcache serve: {target}")
            return
        try:
            body = read_body(self.rfile, self.headers, self.proxy.max_body)
        except BadRequest as exc:
            self.close_connection = True
            self._refuse(exc.status, f"promptcache serve: {exc}")
            return
        upstream = target.upstream
        raw = RawRequest(
            method=self.command,
            scheme=upstream.scheme,
            host=upstream.host,
            port=upstream.port,
            path=unquote(target.path),
            query=tuple(parse_qsl(target.query, keep_blank_values=True)),
            headers=tuple((k.lower(), v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP),
            body=body,
        )
        if self.proxy.session.settings.is_llm_endpoint(upstream.host.lower(), raw.path):
            self._llm(raw, target)
        else:
            self._other(raw, target)

    # -- LLM calls: through the engine ---------------------------------------------------------------------

    def _llm(self, raw: RawRequest, target: Route) -> None:
        try:
            decision = decide_sync(self.proxy.session.engine(), raw)
        except (OSError, http.client.HTTPException) as exc:
            # An identical call in flight could not reach the upstream: this one shares its failure.
            self._unreachable(target, exc)
            return
        if isinstance(decision, Replay):
            self._write_replay(decision)
        else:
            self._live(decision, raw, target)

    def _write_replay(self, replay: Replay) -> None:
        head = [status_line(replay.status), *header_lines(replay.headers)]
        try:
            if any(k.lower() == "content-length" for k, _ in replay.headers):
                self._answer(b"".join([*head, b"\r\n", *replay.chunks]))
                return
            # A stream: one recorded event (or event-stream message) per HTTP chunk, as it was live.
            if self.request_version == "HTTP/1.0":
                self.close_connection = True
                self._answer(b"".join([*head, b"connection: close\r\n\r\n"]))
                for chunk in replay.chunks:
                    self.wfile.write(chunk)
                return
            self._answer(b"".join([*head, b"transfer-encoding: chunked\r\n\r\n"]))
            for chunk in replay.chunks:  # never empty: an event or a message has its framing
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client left; the call is counted all the same

    def _live(self, call: LiveCall | None, raw: RawRequest, target: Route) -> None:
        upstream = target.upstream
        headers = [(k, v) for k, v in raw.headers if k != "accept-encoding"]
        encoding = accept_encoding(raw.header("accept-encoding"))
        if encoding is not None:
            headers.append(("accept-encoding", encoding))
        path = target.path + (f"?{target.query}" if target.query else "")

        def send() -> Sent:
            return self._upstreams.send(upstream, raw.method, path, headers, raw.body)

        try:
            if call is None:
                sent = send()
            else:
                sent = send_sync(call, send, _head, lambda s: self._upstreams.done(s, complete=False))
        except (OSError, http.client.HTTPException) as exc:
            self._unreachable(target, exc)  # send_sync told the call already
            return
        recorder = None
        if call is not None:
            status, head = _head(sent)
            recorder = call.recorder_for(status, list(head))
        self._relay(sent, recorder)

    def _relay(self, sent: Sent, recorder: BodyRecorder | None) -> None:
        """The live answer to the client as it arrives: each chunk shown to the recorder first (a chunk
        that completes a stream is saved before the client has it), then written."""
        response = sent.response
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _RESPONSE_HOP]
        sized = response.length is not None and not response.chunked
        chunked = not (no_body or sized) and self.request_version != "HTTP/1.0"
        head = [status_line(response.status), *header_lines(headers)]
        if chunked:
            head.append(b"transfer-encoding: chunked\r\n")
        elif not (no_body or sized):
            head.append(b"connection: close\r\n")
            self.close_connection = True
        complete = False
        watch = ClientWatch(self.connection, None if no_body else sent.sock)
        try:
            self._answer(b"".join([*head, b"\r\n"]))
            if no_body:
                if recorder is not None:
                    recorder.ended()
                complete = True
            else:
                complete = self._relay_body(response, recorder, watch, chunked)
        except OSError:
            if recorder is not None:
                recorder.closed()  # the client left: an abandoned body is never saved
        finally:
            watch.stop()
            if not complete:
                self.close_connection = True  # a cut chunked body must not look complete to the client
            self._upstreams.done(sent, complete=complete)

    def _relay_body(
        self,
        response: http.client.HTTPResponse,
        recorder: BodyRecorder | None,
        watch: ClientWatch,
        chunked: bool,
    ) -> bool:
        """Whether the body arrived whole and reached the client; raises OSError if the client left."""
        sized = response.length is not None
        while True:
            try:
                data = response.read1(_READ)
            except (OSError, http.client.HTTPException) as exc:
                if watch.client_left:
                    raise OSError("the client left") from None
                if recorder is not None:
                    recorder.failed(f"the live body failed: {exc!r}")
                return False
            if not data:
                break
            if recorder is not None:
                recorder.feed(data)
                if sized and not response.length:
                    # Complete before the client has its last byte: a client that hangs up as soon as it
                    # has the whole body has not abandoned it.
                    recorder.ended()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        if watch.client_left:
            raise OSError("the client left")
        if response.length:
            if recorder is not None:
                recorder.failed("the live body ended before its content-length")
            return False
        if recorder is not None:
            recorder.ended()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        return True

    # -- everything else: forwarded untouched, unless replay refuses it -----------------------------------

    def _other(self, raw: RawRequest, target: Route) -> None:
        session = self.proxy.session
        ctx = session.context
        upstream = target.upstream
        if ctx.mode is Mode.REPLAY and session.guard is not None:
            reason = session.guard.refusal(upstream.host, upstream.connect_port, may_wait=True)
            if reason is not None:
                engine = session.engine()
                engine.scrubber.learn(raw.headers, raw.query)
                url = display_url(raw, engine.scrubber)
                message = (
                    f"promptcache serve: replay does not forward {raw.method} {url}: it is not an LLM "
                    f"endpoint (promptcache_endpoints), so no recording answers it, and {reason}.\n"
                    "  Add its path to promptcache_endpoints to record it, or set promptcache_guard = off."
                )
                ctx.add_problem(message)
                engine.record_call(ctx, Outcome.REFUSED, url, None, None, detail=message)
                self._refuse(404, message, kind="promptcache_refused")
                return
        self._live(None, raw, target)

    # -- the proxy's own answers --------------------------------------------------------------------------

    def _answer(self, head: bytes) -> None:
        """Write an answer's head (and what follows it in the same write)."""
        self._answered = True
        self.wfile.write(head)

    def _unreachable(self, target: Route, exc: BaseException) -> None:
        """What a failed connection is to the client: a 502 it may retry, as it would retry its own."""
        upstream = target.upstream
        message = f"promptcache serve: could not reach {upstream.name} at {upstream.url}: {exc!r}"
        self._refuse(502, message, kind="promptcache_upstream", retry=True)

    def _refuse(
        self, status: int, message: str, *, kind: str = "promptcache_proxy", retry: bool = False
    ) -> None:
        body = error_body(message, kind)
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        if not retry:
            # The SDKs retry 5xx and 429 with backoff; an answer that will not change must not be.
            headers.append(("x-should-retry", "false"))
        if self.close_connection:
            headers.append(("connection", "close"))
        head = [status_line(status), *header_lines(headers)]
        try:
            self._answer(b"".join([*head, b"\r\n", body]))
        except OSError:
            self.close_connection = True


def _head(sent: Sent) -> tuple[int, Sequence[tuple[str, str]]]:
    return sent.response.status, sent.response.getheaders()
