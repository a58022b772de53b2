"""An LLM request through a patched httpx or httpx2 transport: the engine's decision turned into a
response of the module that sent it, the live body teed through the call's recorder. Imported only once
an LLM request arrives."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..keys import RawRequest
from ..live import LiveCall
from ..replay import Replay
from ..streams import BodyRecorder
from .drive import decide_async, decide_sync, send_async, send_sync, tee_chunk, tee_ended, tee_failed
from .registry import Source


@dataclass(frozen=True)
class Flavor:
    """One httpx-like module and the byte-stream classes its clients accept: they check ``isinstance``
    against their own module's ``SyncByteStream``/``AsyncByteStream``, so each module needs its own."""

    module: ModuleType
    replay_stream: type[Any]
    sync_tee: type[Any]
    async_tee: type[Any]

    def response(self, replay: Replay, request: Any) -> Any:
        body = replay.whole
        if body is not None:
            # Built read, as a mock transport's answer is: the client skips its decoding pass (~14 µs).
            return self.module.Response(
                status_code=replay.status, headers=replay.headers, content=body, request=request
            )
        return self.module.Response(
            status_code=replay.status,
            headers=replay.headers,
            stream=self.replay_stream(replay.chunks),
            request=request,
        )


def raw_request(request: Any, body: bytes) -> RawRequest:
    url = request.url
    # A URL without a query needs no QueryParams parse. Hot path.
    return RawRequest(
        method=request.method,
        scheme=url.scheme,
        host=url.host,
        port=url.port,
        path=url.path,
        query=tuple(url.params.multi_items()) if url.query else (),
        headers=_decoded_headers(request.headers),
        body=body,
    )


def _decoded_headers(headers: Any) -> tuple[tuple[str, str], ...]:
    """(lower-case name, value) of each header, decoded as ``Headers`` decodes them: as ASCII when every
    one is ASCII (as good as always), else as UTF-8 or Latin-1, whichever its ``encoding`` finds fits.
    Asking ``encoding`` first would decode every header one more time, on every call (~3 µs)."""
    raw = headers.raw
    try:
        return tuple([(k.decode("ascii").lower(), v.decode("ascii")) for k, v in raw])
    except UnicodeDecodeError:
        encoding = headers.encoding
        return tuple([(k.lower().decode(encoding), v.decode(encoding)) for k, v in raw])


_flavors: dict[str, Flavor] = {}


def flavor_of(module: ModuleType) -> Flavor:
    flavor = _flavors.get(module.__name__)
    if flavor is None or flavor.module is not module:
        flavor = _flavors[module.__name__] = make_flavor(module)
    return flavor


def _head(response: Any) -> tuple[int, list[tuple[str, str]]]:
    return response.status_code, response.headers.multi_items()


def handle_sync(
    module: ModuleType, original: Callable[..., Any], transport: Any, request: Any, source: Source
) -> Any:
    """An LLM request sent by a sync client of ``module``: served, missed, waited for, or sent live."""
    flavor = flavor_of(module)
    decision = decide_sync(source.engine(), raw_request(request, request.read()))
    if isinstance(decision, Replay):
        return flavor.response(decision, request)
    response = send_sync(decision, lambda: original(transport, request), _head, lambda r: r.close())
    return _tee(response, decision, flavor.sync_tee)


async def handle_async(
    module: ModuleType, original: Callable[..., Any], transport: Any, request: Any, source: Source
) -> Any:
    flavor = flavor_of(module)
    decision = await decide_async(source, raw_request(request, await request.aread()))
    if isinstance(decision, Replay):
        return flavor.response(decision, request)

    async def send() -> Any:
        return await original(transport, request)

    async def close(response: Any) -> None:
        await response.aclose()

    response = await send_async(decision, send, _head, close)
    return _tee(response, decision, flavor.async_tee, defer=True)


def _tee(response: Any, call: LiveCall, tee_type: type[Any], *, defer: bool = False) -> Any:
    """Hand the live head to the call, and its body through the call's recorder if it wants one."""
    recorder = call.recorder_for(response.status_code, response.headers.multi_items(), defer=defer)
    if recorder is not None:
        response.stream = tee = tee_type(response.stream, recorder)
        # A response dropped unread must still end its call, or identical waiting calls would hang.
        weakref.finalize(tee, recorder.collected)
    return response


def make_flavor(module: ModuleType) -> Flavor:
    sync_base: type[Any] = module.SyncByteStream
    async_base: type[Any] = module.AsyncByteStream

    class ReplayStream(sync_base, async_base):  # type: ignore[misc]
        __slots__ = ("_chunks",)

        def __init__(self, chunks: Sequence[bytes]) -> None:
            self._chunks = chunks

        def __iter__(self) -> Iterator[bytes]:
            return iter(self._chunks)

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for chunk in self._chunks:
                yield chunk

    class SyncTee(sync_base):  # type: ignore[misc]
        def __init__(self, upstream: Iterable[bytes], recorder: BodyRecorder) -> None:
            self._upstream = upstream
            self._recorder = recorder

        def __iter__(self) -> Iterator[bytes]:
            try:
                for chunk in self._upstream:
                    self._recorder.feed(chunk)
                    yield chunk
            except GeneratorExit:
                # The client stopped reading; close() decides whether that was after the end.
                raise
            except BaseException as exc:
                self._recorder.failed(f"the live stream failed: {exc!r}")
                raise
            self._recorder.ended()

        def close(self) -> None:
            try:
                close = getattr(self._upstream, "close", None)
                if close is not None:
                    close()
            finally:
                self._recorder.closed()

    class AsyncTee(async_base):  # type: ignore[misc]
        def __init__(self, upstream: Any, recorder: BodyRecorder) -> None:
            self._upstream = upstream
            self._recorder = recorder

        async def __aiter__(self) -> AsyncIterator[bytes]:
            recorder = self._recorder
            try:
                async for chunk in self._upstream:
                    await tee_chunk(recorder, chunk)
                    yield chunk
            except GeneratorExit:
                raise
            except BaseException as exc:
                await tee_failed(recorder, exc)
                raise
            await tee_ended(recorder)

        async def aclose(self) -> None:
            try:
                aclose = getattr(self._upstream, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                self._recorder.closed()
                await asyncio.to_thread(self._recorder.run_pending)

    return Flavor(module, ReplayStream, SyncTee, AsyncTee)
