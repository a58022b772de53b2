"""Single flight: identical requests in flight at the same time make one live call.

Within a process, the first caller of a key leads and the others wait for its outcome. Across processes
(xdist workers), the leader also holds the key's OS file lock; a process that finds it held waits until
it is free, then looks for the recording the other process saved. A failed live call saves nothing:
waiters in the leader's process get the same failure, other processes make their own attempt.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field

from ..limits import DEFAULT_FLIGHT_TIMEOUT
from ..replay import Replay
from .backend import Coordination, KeyLock

Owner = tuple[int, int | None]


def current_owner() -> Owner:
    """Who is asking: a thread, and within it an asyncio task. A caller never waits for itself."""
    task: asyncio.Task[object] | None
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return threading.get_ident(), (id(task) if task is not None else None)


@dataclass
class Flight:
    key: str
    owner: Owner
    lock: KeyLock | None
    done: threading.Event = field(default_factory=threading.Event)
    # What waiters get: nothing (retry: the recording is there, or nobody has it and they go live),
    # the leader's exception, or the leader's error response.
    exception: BaseException | None = None
    response: Replay | None = None


class Wait:
    """Something to wait for before asking again, for at most ``timeout`` seconds (a leader whose client
    neither finishes nor closes its stream, or a stuck process, is not waited for forever); sync callers
    block, async callers yield the loop. ``timed_out`` says the wait ended without an outcome."""

    def __init__(
        self, key: str, timeout: float, flight: Flight | None = None, lock: KeyLock | None = None
    ) -> None:
        self.key = key
        self.timeout = timeout
        self.flight = flight
        self.lock = lock
        self.timed_out = False

    def ready(self) -> bool:
        if self.flight is not None:
            return self.flight.done.is_set()
        assert self.lock is not None
        if self.lock.try_acquire():
            # Only to learn that the other process is done; the next attempt takes the lock for real.
            self.lock.release()
            return True
        return False

    def wait_sync(self) -> None:
        if self.flight is not None:
            self.timed_out = not self.flight.done.wait(self.timeout)
            return
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while not self.ready():
            if time.monotonic() >= deadline:
                self.timed_out = True
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def wait_async(self) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            # Another process's lock is a file: asking whether it is free is I/O, kept off the loop.
            ready = self.ready() if self.flight is not None else await asyncio.to_thread(self.ready)
            if ready:
                return
            if time.monotonic() >= deadline:
                self.timed_out = True
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def holder(self) -> str:
        """Who holds the call waited for, as a person looking for it needs to know."""
        if self.flight is not None:
            return f"this process (pid {os.getpid()}), another thread or task"
        return self.lock.describe_holder() if self.lock is not None else "another process"

    @property
    def failure(self) -> Flight | None:
        """The finished flight, when its leader failed in a way waiters share."""
        f = self.flight
        if f is not None and f.done.is_set() and (f.exception is not None or f.response is not None):
            return f
        return None


class Flights:
    def __init__(self, state: Coordination, timeout: float = DEFAULT_FLIGHT_TIMEOUT) -> None:
        self._state = state
        self._timeout = timeout
        self._lock = threading.Lock()
        self._active: dict[str, Flight] = {}

    def claim(self, key: str, owner: Owner | None = None) -> Flight | Wait | None:
        """A Flight to lead, a Wait, or None: the caller already leads this key (two identical streams
        open in one thread) and must go live on its own rather than wait for itself.

        ``owner`` names the caller when the claim is made on its behalf from another thread (an async
        caller whose blocking work runs in a worker thread)."""
        me = owner or current_owner()
        with self._lock:
            current = self._active.get(key)
            if current is not None:
                return None if current.owner == me else Wait(key, self._timeout, flight=current)
            lock = self._state.key_lock(key)
            if not lock.try_acquire():
                return Wait(key, self._timeout, lock=lock)
            flight = self._active[key] = Flight(key=key, owner=me, lock=lock)
            return flight

    def finish(
        self, flight: Flight, *, exception: BaseException | None = None, response: Replay | None = None
    ) -> None:
        """End a flight: release its file lock only after the recording is on disk, then wake waiters."""
        with self._lock:
            if self._active.get(flight.key) is flight:
                del self._active[flight.key]
        flight.exception = exception
        flight.response = response
        if flight.lock is not None:
            flight.lock.release()
        flight.done.set()
