"""Single flight: one live call per key; waiters in threads and asyncio tasks; other processes (another
``SharedState`` on the same directory, as an xdist worker has) wait on the key's file lock."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from pytest_promptcache.coordination.flight import Flight, Flights, Wait
from pytest_promptcache.coordination.state import SharedState
from pytest_promptcache.streams import Replay

KEY = "a" * 64


@pytest.fixture
def flights(tmp_path: Path) -> Flights:
    return Flights(SharedState(tmp_path, None))


def in_thread(flights: Flights, key: str = KEY) -> Flight | Wait | None:
    result: list[Flight | Wait | None] = []
    thread = threading.Thread(target=lambda: result.append(flights.claim(key)))
    thread.start()
    thread.join()
    return result[0]


def test_the_first_caller_leads_and_another_thread_waits(flights: Flights) -> None:
    leader = flights.claim(KEY)
    assert isinstance(leader, Flight)
    waiter = in_thread(flights)
    assert isinstance(waiter, Wait)
    assert waiter.flight is leader
    assert not waiter.ready()
    flights.finish(leader)
    assert waiter.ready()
    assert waiter.failure is None  # success: the waiter looks for the recording
    assert isinstance(in_thread(flights), Flight)  # the key is free again


def test_the_same_owner_claiming_again_gets_none(flights: Flights) -> None:
    # Two identical streams open in one thread: waiting for itself would deadlock.
    leader = flights.claim(KEY)
    assert isinstance(leader, Flight)
    assert flights.claim(KEY) is None
    flights.finish(leader)
    assert isinstance(flights.claim(KEY), Flight)


def test_keys_fly_independently(flights: Flights) -> None:
    assert isinstance(flights.claim(KEY), Flight)
    assert isinstance(in_thread(flights, "b" * 64), Flight)


def test_a_leaders_exception_reaches_its_waiters(flights: Flights) -> None:
    leader = flights.claim(KEY)
    assert isinstance(leader, Flight)
    waiters = [in_thread(flights) for _ in range(3)]
    boom = ConnectionError("reset by peer")
    flights.finish(leader, exception=boom)
    for waiter in waiters:
        assert isinstance(waiter, Wait)
        assert waiter.failure is leader
        assert leader.exception is boom


def test_a_leaders_error_response_reaches_its_waiters(flights: Flights) -> None:
    leader = flights.claim(KEY)
    assert isinstance(leader, Flight)
    waiter = in_thread(flights)
    assert isinstance(waiter, Wait)
    assert waiter.failure is None  # not finished yet
    error = Replay(status=500, headers=(("content-type", "application/json"),), chunks=(b"{}",))
    flights.finish(leader, response=error)
    assert waiter.failure is leader
    assert leader.response is error


def test_waiting_threads_wake_when_the_leader_finishes(flights: Flights) -> None:
    leader = flights.claim(KEY)
    assert isinstance(leader, Flight)
    woke: list[bool] = []

    def wait() -> None:
        claim = flights.claim(KEY)
        assert isinstance(claim, Wait)
        claim.wait_sync()
        woke.append(claim.ready())

    threads = [threading.Thread(target=wait) for _ in range(4)]
    for thread in threads:
        thread.start()
    flights.finish(leader)
    for thread in threads:
        thread.join()
    assert woke == [True] * 4


def test_asyncio_tasks_of_one_thread_are_different_owners(flights: Flights) -> None:
    async def scenario() -> list[str]:
        events: list[str] = []
        leader = flights.claim(KEY)
        assert isinstance(leader, Flight)

        async def follower() -> None:
            claim = flights.claim(KEY)
            assert isinstance(claim, Wait)
            events.append("waiting")
            await claim.wait_async()
            events.append("woke")

        task = asyncio.create_task(follower())
        await asyncio.sleep(0)  # let the follower start waiting; the event loop stays free meanwhile
        events.append("leader finishes")
        flights.finish(leader)
        await task
        return events

    assert asyncio.run(scenario()) == ["waiting", "leader finishes", "woke"]


def test_a_task_claiming_again_gets_none(flights: Flights) -> None:
    async def scenario() -> tuple[Flight | Wait | None, Flight | Wait | None]:
        return flights.claim(KEY), flights.claim(KEY)

    first, second = asyncio.run(scenario())
    assert isinstance(first, Flight)
    assert second is None


def test_another_process_waits_on_the_key_lock_until_the_leader_finishes(tmp_path: Path) -> None:
    here = Flights(SharedState(tmp_path, "session-1"))
    there = Flights(SharedState(tmp_path, "session-1"))  # another worker of the same run
    leader = here.claim(KEY)
    assert isinstance(leader, Flight)
    waiter = there.claim(KEY)
    assert isinstance(waiter, Wait)
    assert waiter.flight is None  # nothing to share across processes but the lock
    assert waiter.lock is not None
    assert not waiter.ready()
    assert not waiter.ready()  # asking does not take the lock
    here.finish(leader, exception=RuntimeError("failed over there"))
    assert waiter.ready()
    assert waiter.failure is None  # a failure stays in its process: this one makes its own attempt
    assert isinstance(there.claim(KEY), Flight)


def test_a_lock_waiter_returns_once_the_leader_finishes_in_another_thread(tmp_path: Path) -> None:
    here = Flights(SharedState(tmp_path, None))
    there = Flights(SharedState(tmp_path, None))
    leader = here.claim(KEY)
    assert isinstance(leader, Flight)
    waiter = there.claim(KEY)
    assert isinstance(waiter, Wait)
    thread = threading.Thread(target=here.finish, args=(leader,))
    thread.start()
    waiter.wait_sync()
    thread.join()
    assert waiter.ready()


def test_async_lock_waiter(tmp_path: Path) -> None:
    here = Flights(SharedState(tmp_path, None))
    there = Flights(SharedState(tmp_path, None))
    leader = here.claim(KEY)
    assert isinstance(leader, Flight)

    async def scenario() -> bool:
        waiter = there.claim(KEY)
        assert isinstance(waiter, Wait)
        waiting = asyncio.create_task(waiter.wait_async())
        await asyncio.sleep(0)
        here.finish(leader)
        await waiting
        return waiter.ready()

    assert asyncio.run(scenario())


def test_finishing_a_flight_twice_leaves_a_new_leader_alone(flights: Flights) -> None:
    first = flights.claim(KEY)
    assert isinstance(first, Flight)
    flights.finish(first)
    second = in_thread(flights)
    assert isinstance(second, Flight)
    flights.finish(first)  # a late second finish of the old flight
    assert isinstance(flights.claim(KEY), Wait)  # the new flight is still active
