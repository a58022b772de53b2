"""The patched transport methods: an LLM request in, the engine's decision out, as a response of the
module that sent it (httpx2 or httpx). Imported only once one of those modules is in use."""

from __future__ import annotations

import asyncio
import importlib
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .engine import LiveCall
from .flight import Wait
from .intercept import active
from .keys import RawRequest
from .streams import Replay, StreamTypes, make_stream_types


@dataclass(frozen=True)
class Flavor:
    """One httpx-like module and the stream classes its clients accept."""

    name: str
    module: ModuleType
    streams: StreamTypes
    # The pool methods below the transport as they were at install time.
    pool_methods: tuple[tuple[type, str, Any], ...] = ()

    def mocked_below(self) -> bool:
        """True while a mocking library (respx) has replaced the connection pool under the transport.

        Such a test answers its HTTP calls itself and never reaches the network, so its LLM calls are
        its own business: intercepting them would turn the mock's answers into replay misses.
        """
        return any(cls.__dict__.get(attr) is not original for cls, attr, original in self.pool_methods)

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


def _pool_methods(pool_module_name: str) -> tuple[tuple[type, str, Any], ...]:
    try:
        pool = importlib.import_module(pool_module_name)
    except ImportError:
        return ()
    return (
        (pool.ConnectionPool, "handle_request", pool.ConnectionPool.__dict__.get("handle_request")),
        (
            pool.AsyncConnectionPool,
            "handle_async_request",
            pool.AsyncConnectionPool.__dict__.get("handle_async_request"),
        ),
    )


def make_flavor(module: ModuleType, pool_module_name: str) -> Flavor:
    return Flavor(module.__name__, module, make_stream_types(module), _pool_methods(pool_module_name))


def sync_handler(flavor: Flavor, original: Callable[..., Any]) -> Callable[..., Any]:
    def handle_request(self: Any, request: Any) -> Any:
        source = active()
        if source is None or not source.handles(request.url.host, request.url.path) or flavor.mocked_below():
            return original(self, request)
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
        return _send_sync(flavor, original, self, request, decision)

    handle_request.__wrapped__ = original  # type: ignore[attr-defined]
    return handle_request


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
    recorder = call.response(response.status_code, headers)
    if recorder is not None:
        response.stream = tee = flavor.streams.sync_tee(response.stream, recorder)
        # A response dropped unread must still end its call, or identical waiting calls would hang.
        weakref.finalize(tee, recorder.closed)
    return response


def async_handler(flavor: Flavor, original: Callable[..., Any]) -> Callable[..., Any]:
    async def handle_async_request(self: Any, request: Any) -> Any:
        source = active()
        if source is None or not source.handles(request.url.host, request.url.path) or flavor.mocked_below():
            return await original(self, request)
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
        return await _send_async(flavor, original, self, request, decision)

    handle_async_request.__wrapped__ = original  # type: ignore[attr-defined]
    return handle_async_request


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
    recorder = call.response(response.status_code, headers)
    if recorder is not None:
        response.stream = tee = flavor.streams.async_tee(response.stream, recorder)
        weakref.finalize(tee, recorder.closed)
    return response
