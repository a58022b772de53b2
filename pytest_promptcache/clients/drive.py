"""The part of every adapter that does not depend on the HTTP library: ask the engine, wait for an
identical call in flight, and send a live call with pacing and retries. Sync and async twins, kept thin.

The async twins never block the event loop: a recording already in memory is served on the loop (the
hot path: a dict lookup); everything that may touch the disk or a lock (reading a recording, a miss,
claiming a key, pacing, saving) runs in a worker thread, as suites that run a blocking-call detector
(blockbuster) around their async tests require.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ..coordination.flight import Wait, current_owner
from ..engine import Engine
from ..keys import RawRequest
from ..live import LiveCall
from ..ordered import Turn
from ..replay import Replay
from ..streams import BodyRecorder
from .registry import Source

R = TypeVar("R")
Head = Callable[[R], tuple[int, Sequence[tuple[str, str]]]]


def decide_sync(engine: Engine, raw: RawRequest) -> Replay | LiveCall:
    """The recorded (or failing) response to serve, or a live call to send."""
    turn = Turn()  # asking again after a wait is the same call: an ordered scope counts it once
    while True:
        decision = engine.start(raw, turn=turn)
        if not isinstance(decision, Wait):
            return decision
        decision.wait_sync()
        shared = engine.after_wait(decision, raw)
        if shared is not None:
            return shared


async def decide_async(source: Source, raw: RawRequest) -> Replay | LiveCall:
    """The same for an async client, off the event loop wherever it could block."""
    engine = source.started_engine
    if engine is None:
        engine = await asyncio.to_thread(source.engine)
    served = engine.start_in_memory(raw)
    if served is not None:
        return served
    owner = current_owner()
    turn = Turn()
    while True:
        decision = await asyncio.to_thread(engine.start, raw, owner, turn)
        if not isinstance(decision, Wait):
            return decision
        await decision.wait_async()
        shared = engine.after_wait(decision, raw)
        if shared is not None:
            return shared


def send_sync(call: LiveCall, send: Callable[[], R], head: Head[R], close: Callable[[R], object]) -> R:
    """Send a live call, paced, retrying transient failures while recording. Returns the response
    whose head ``call`` has not been told of yet."""
    wait = call.delay_before_send()
    if wait > 0:
        time.sleep(wait)
    attempt = 0
    while True:
        try:
            response = send()
        except BaseException as exc:
            call.failed(exc)
            raise
        status, headers = head(response)
        delay = call.retry_delay(status, headers, attempt)
        if delay is None:
            return response
        close(response)
        time.sleep(delay)
        attempt += 1


async def send_async(
    call: LiveCall,
    send: Callable[[], Awaitable[R]],
    head: Head[R],
    close: Callable[[R], Awaitable[object]],
) -> R:
    wait = call.delay_before_send()
    if wait > 0:
        await asyncio.sleep(wait)
    attempt = 0
    while True:
        try:
            response = await send()
        except BaseException as exc:
            call.failed(exc)
            raise
        status, headers = head(response)
        delay = call.retry_delay(status, headers, attempt)
        if delay is None:
            return response
        await close(response)
        await asyncio.sleep(delay)
        attempt += 1


# -- teeing a live body in an async client: the recorder's callbacks (saving, ending the flight) may touch
# the disk, so they run in a worker thread, never on the loop. -------------------------------------------


async def tee_chunk(recorder: BodyRecorder, chunk: bytes) -> None:
    """The recorder sees ``chunk`` before the client does; a chunk that completes the body (a terminal
    event) is saved first, so a client that stops reading there still leaves a recording."""
    recorder.feed(chunk)
    if recorder.pending is not None:
        await asyncio.to_thread(recorder.run_pending)


async def tee_ended(recorder: BodyRecorder) -> None:
    recorder.ended()
    await asyncio.to_thread(recorder.run_pending)


async def tee_failed(recorder: BodyRecorder, exc: BaseException) -> None:
    recorder.failed(f"the live stream failed: {exc!r}")
    await asyncio.to_thread(recorder.run_pending)
