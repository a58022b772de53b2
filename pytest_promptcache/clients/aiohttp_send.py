"""An LLM request through aiohttp's client, seen by the adapter's middleware: the engine's decision
turned into a ``ClientResponse``, the live body teed through the call's recorder. Imported only once an
LLM request arrives.

Both replayed and teed bodies are ``StreamReader`` subclasses that get their data when a read would
otherwise wait for the network: a replay hands out the next recorded chunk (one per SSE event), a tee
reads the next chunk of the live body, shows it to the recorder, then to the client. So every way of
reading (``read()``, ``text()``, ``json()``, ``readline()``, ``async for line in resp.content``,
``iter_any()``, ``iter_chunked(n)``, ``iter_chunks()``) works unchanged, chunk by chunk, and a live
body is pulled from the network no faster than the client reads it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

from aiohttp import ClientRequest, ClientResponse, HttpVersion11, StreamReader
from aiohttp.helpers import TimerNoop
from multidict import CIMultiDict, CIMultiDictProxy

from ..keys import RawRequest
from ..live import LiveCall
from ..replay import Replay
from ..streams import BodyRecorder
from .drive import decide_async, send_async, tee_chunk, tee_ended, tee_failed
from .registry import Source

Handler = Callable[[ClientRequest], Awaitable[ClientResponse]]

# aiohttp 3.14 hands every response the writer that sent its request; a replay sent nothing.
_NEEDS_STREAM_WRITER = "stream_writer" in ClientResponse.__init__.__code__.co_varnames
_BUFFER_LIMIT = 2**16


class _NothingSent:
    output_size = 0


async def handle(request: ClientRequest, handler: Handler, source: Source, *, decompressed: bool) -> Any:
    """An LLM request: served, missed, waited for, or sent live through ``handler``."""
    decision = await decide_async(source, await raw_request(request))
    if isinstance(decision, Replay):
        return replay_response(request, decision)

    async def send() -> ClientResponse:
        return await handler(request)

    async def close(response: ClientResponse) -> None:
        response.close()

    response = await send_async(decision, send, _head, close)
    return _tee(response, decision, decompressed=decompressed)


async def raw_request(request: ClientRequest) -> RawRequest:
    url = request.url
    body = request.body
    # A file or async-iterable payload is read once here and kept by aiohttp for the send.
    data = body if isinstance(body, bytes) else await body.as_bytes()
    return RawRequest(
        method=request.method,
        scheme=url.scheme,
        host=url.host or "",
        port=url.port,
        path=url.path,
        query=tuple(url.query.items()) if url.raw_query_string else (),
        headers=tuple((k.lower(), v) for k, v in request.headers.items()),
        body=data,
    )


def _head(response: ClientResponse) -> tuple[int, Sequence[tuple[str, str]]]:
    return response.status, list(response.headers.items())


# -- replay ------------------------------------------------------------------------------------------------


def replay_response(request: ClientRequest, replay: Replay) -> ClientResponse:
    """A response of the request's own response class, as aiohttp leaves one once its head has arrived."""
    extra: dict[str, Any] = {"stream_writer": _NothingSent()} if _NEEDS_STREAM_WRITER else {}
    response = request.response_class(
        request.method,
        request.original_url,
        writer=None,
        continue100=None,
        timer=TimerNoop(),
        request_info=request.request_info,
        traces=request._traces,
        loop=request.loop,
        session=request._session,
        **extra,
    )
    headers = replay.headers
    response._closed = False
    response.version = HttpVersion11
    response.status = replay.status
    response.reason = _reason(replay.status)
    response._headers = CIMultiDictProxy(CIMultiDict(headers))
    response._raw_headers = tuple((k.encode("utf-8"), v.encode("utf-8")) for k, v in headers)
    # A body sent without a length was sent chunked: each recorded chunk is one HTTP chunk.
    chunked = all(k != "content-length" for k, _ in headers)
    content = ReplayReader(replay.chunks, chunked=chunked, loop=request.loop)
    # As for a live body: once it has all arrived, the response counts as released.
    content.on_eof(response._response_eof)
    response.content = content
    return response


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class _NoTransport:
    """What a ``StreamReader`` asks its protocol: these readers are fed on demand, never by a socket."""

    connected = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


_NO_TRANSPORT: Any = _NoTransport()


class ReplayReader(StreamReader):
    """A recorded body: each read that would wait for the network gets the next recorded chunk, the end
    of the body with the last one, as a live body arrives."""

    __slots__ = ("_chunked", "_chunks", "_next")

    def __init__(self, chunks: Sequence[bytes], *, chunked: bool, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(_NO_TRANSPORT, _BUFFER_LIMIT, loop=loop)
        self._chunks = chunks
        self._chunked = chunked
        self._next = 0
        if chunked:
            self.begin_http_chunk_receiving()

    def _arrive(self) -> None:
        chunks, index = self._chunks, self._next
        if index < len(chunks):
            self._next = index + 1
            self.feed_data(chunks[index])
            if self._chunked:
                self.end_http_chunk_receiving()
        if self._next >= len(chunks):
            self.feed_eof()

    async def _wait(self, func_name: str) -> None:
        self._arrive()

    async def wait_eof(self) -> None:
        while not self._eof:
            self._arrive()


# -- live -------------------------------------------------------------------------------------------------


def _tee(response: ClientResponse, call: LiveCall, *, decompressed: bool) -> ClientResponse:
    """Hand the live head to the call, and its body through the call's recorder if it wants one."""
    headers = [
        (k, v) for k, v in response.headers.items() if not (decompressed and k.lower() == "content-encoding")
    ]
    recorder = call.recorder_for(response.status, headers, defer=True)
    if recorder is not None:
        tee = TeeReader(response.content, recorder, loop=asyncio.get_running_loop())
        response.content = tee
        # A response dropped unread must still end its call, or identical waiting calls would hang.
        weakref.finalize(tee, recorder.collected)
    return response


# Abandoned bodies' bookkeeping, running in worker threads: kept so their errors are seen, not lost.
_settling: set[asyncio.Future[None]] = set()


class TeeReader(StreamReader):
    """The live body as the client reads it: each read that would wait for the network reads the next
    chunk of the live body, shows it to the recorder, then hands it to the client."""

    __slots__ = ("__weakref__", "_recorder", "_upstream")

    def __init__(
        self, upstream: StreamReader, recorder: BodyRecorder, *, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(_NO_TRANSPORT, _BUFFER_LIMIT, loop=loop)
        self._upstream = upstream
        self._recorder = recorder
        # The live body's HTTP chunks stay chunks for iter_chunks(); a body sent with a length has none.
        self.begin_http_chunk_receiving()

    async def _wait(self, func_name: str) -> None:
        recorder = self._recorder
        try:
            data, end_of_chunk = await self._upstream.readchunk()
        except BaseException as exc:
            await tee_failed(recorder, exc)
            raise
        if data:
            await tee_chunk(recorder, data)
            self.feed_data(data)
        if end_of_chunk:
            self.end_http_chunk_receiving()
        elif not data:
            await tee_ended(recorder)
            self.feed_eof()

    async def wait_eof(self) -> None:
        while not self._eof:
            await self._wait("wait_eof")

    def set_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp's way of telling the body that the client released or closed the response: before
        the end, the body was abandoned."""
        super().set_exception(*args, **kwargs)
        recorder = self._recorder
        recorder.closed()
        pending, recorder.pending = recorder.pending, None
        if pending is not None:
            # Called synchronously on the loop (``release()``), so the bookkeeping goes to a thread.
            settling = self._loop.run_in_executor(None, pending)
            _settling.add(settling)
            settling.add_done_callback(_settled)


def _settled(future: asyncio.Future[None]) -> None:
    _settling.discard(future)
    future.result()
