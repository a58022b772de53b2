"""The patched transport methods: an LLM request in, the engine's decision out, as a response of the
module that sent it (httpx2 or httpx). Imported only once one of those modules is in use."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .engine import LiveCall
from .flight import Wait
from .intercept import Source
from .keys import RawRequest
from .streams import Replay, StreamTypes, make_stream_types


@dataclass(frozen=True)
class Flavor:
    """One httpx-like module and the stream classes its clients accept."""

    name: str
    module: ModuleType
    streams: StreamTypes

    def response(self, replay: Replay, request: Any) -> Any:
        return self.module.Response(
            status_code=replay.status,
            headers=replay.headers,
            stream=self.streams.replay(replay.chunks),
            request=request,
        )


def raw_request(request: Any, body: bytes) -> RawRequest:
    url = request.url
    headers = request.headers
    # Decoding raw headers with the encoding looked up once is cheaper than multi_items(), which
    # evaluates it twice per header; a URL without a query needs no QueryParams parse. Hot path.
    encoding = headers.encoding
    return RawRequest(
        method=request.method,
        scheme=url.scheme,
        host=url.host,
        port=url.port,
        path=url.path,
        query=tuple(url.params.multi_items()) if url.query else (),
        headers=tuple((k.lower().decode(encoding), v.decode(encoding)) for k, v in headers.raw),
        body=body,
    )


_flavors: dict[str, Flavor] = {}


def flavor_of(module: ModuleType) -> Flavor:
    flavor = _flavors.get(module.__name__)
    if flavor is None or flavor.module is not module:
        flavor = _flavors[module.__name__] = Flavor(module.__name__, module, make_stream_types(module))
    return flavor


def handle_sync(
    module: ModuleType, original: Callable[..., Any], transport: Any, request: Any, source: Source
) -> Any:
    """An LLM request sent by a sync client of ``module``: served, missed, waited for, or sent live."""
    flavor = flavor_of(module)
    engine = source.engine()
    raw = raw_request(request, request.read())
    while True:
        decision = engine.start(raw)
        if not isinstance(decision, Wait):
            break
        decision.wait_sync()
        shared = engine.after_wait(decision, raw)
        if shared is not None:
            return flavor.response(shared, request)
    if isinstance(decision, Replay):
        return flavor.response(decision, request)
    return _send_sync(flavor, original, transport, request, decision)


def _send_sync(
    flavor: Flavor, original: Callable[..., Any], transport: Any, request: Any, call: LiveCall
) -> Any:
    wait = call.pace()
    if wait > 0:
        time.sleep(wait)
    attempt = 0
    while True:
        try:
            response = original(transport, request)
        except BaseException as exc:
            call.failed(exc)
            raise
        headers = response.headers.multi_items()
        delay = call.retry_delay(response.status_code, headers, attempt)
        if delay is None:
            break
        response.close()
        time.sleep(delay)
        attempt += 1
    return _tee(response, call, headers, flavor.streams.sync_tee)


def _tee(response: Any, call: LiveCall, headers: list[tuple[str, str]], tee_type: type[Any]) -> Any:
    """Hand the live head to the call, and its body through the call's recorder if it wants one."""
    recorder = call.response(response.status_code, headers)
    if recorder is not None:
        response.stream = tee = tee_type(response.stream, recorder)
        # A response dropped unread must still end its call, or identical waiting calls would hang.
        weakref.finalize(tee, recorder.closed)
    return response


async def handle_async(
    module: ModuleType, original: Callable[..., Any], transport: Any, request: Any, source: Source
) -> Any:
    """The same for an async client: waits yield to the event loop instead of blocking it."""
    flavor = flavor_of(module)
    engine = source.engine()
    raw = raw_request(request, await request.aread())
    while True:
        decision = engine.start(raw)
        if not isinstance(decision, Wait):
            break
        await decision.wait_async()
        shared = engine.after_wait(decision, raw)
        if shared is not None:
            return flavor.response(shared, request)
    if isinstance(decision, Replay):
        return flavor.response(decision, request)
    return await _send_async(flavor, original, transport, request, decision)


async def _send_async(
    flavor: Flavor, original: Callable[..., Any], transport: Any, request: Any, call: LiveCall
) -> Any:
    wait = call.pace()
    if wait > 0:
        await asyncio.sleep(wait)
    attempt = 0
    while True:
        try:
            response = await original(transport, request)
        except BaseException as exc:
            call.failed(exc)
            raise
        headers = response.headers.multi_items()
        delay = call.retry_delay(response.status_code, headers, attempt)
        if delay is None:
            break
        await response.aclose()
        await asyncio.sleep(delay)
        attempt += 1
    return _tee(response, call, headers, flavor.streams.async_tee)
