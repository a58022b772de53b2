"""The fleet's primitives against a real redis-server: recordings, key locks (owner-only release,
expiry, renewal), pacing on Redis's clock, the run's spend; and each of them falling back to the
machine's state directory when Redis is gone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer, module_redis, own_redis, redis_server

from pytest_promptcache.coordination.fleet import FleetState, RedisKeyLock
from pytest_promptcache.coordination.state import SharedState
from pytest_promptcache.keys import key_of
from pytest_promptcache.models import CanonicalRequest, RecordedResponse, Recording, RecordingMeta
from pytest_promptcache.redislink import RedisLink, SharedDown
from pytest_promptcache.sharedconf import SharedConfig
from pytest_promptcache.store.files import encode_recording
from pytest_promptcache.store.redis import SharedRecordings

__all__ = ["module_redis", "own_redis", "redis_server"]


OPENED: list[RedisLink] = []


@pytest.fixture(autouse=True)
def close_links() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def link_to(server: RedisServer, machine: str = "m1", **options: Any) -> RedisLink:
    ttl_ms = options.pop("lock_ttl_ms", 30_000)
    link = RedisLink(SharedConfig(url=server.url, machine=machine, **options), lock_ttl_ms=ttl_ms)
    OPENED.append(link)
    assert link.start()
    return link


def fleet(server: RedisServer, tmp_path: Path, machine: str, **options: Any) -> FleetState:
    local = SharedState(tmp_path / machine, session_id=None)
    return FleetState(local, link_to(server, machine, **options))


def recording(text: str) -> Recording:
    request = CanonicalRequest(method="POST", host="api.test", path="/v1/chat/completions", body={"q": text})
    return Recording(
        key=key_of(request),
        request=request,
        response=RecordedResponse(status=200, body={"a": text}),
        meta=RecordingMeta(
            recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
            url="http://api.test",
            latency_ms=1,
            plugin_version="t",
        ),
    )


# -- recordings ---------------------------------------------------------------------------------------


def test_a_recording_round_trips_with_its_machine_and_ttl(redis_server: RedisServer) -> None:
    link = link_to(redis_server, prefix="team", ttl=timedelta(hours=1))
    tier = SharedRecordings(link, max_size=1 << 20)
    rec = recording("hello")
    assert tier.get(rec.key) is None
    assert tier.put(rec.key, encode_recording(rec.to_json_data()), "ci-3")
    hit = tier.get(rec.key)
    assert hit is not None
    assert (hit.recording, hit.machine) == (rec, "ci-3")
    assert 0 < redis_server.client().pttl(f"team:rec:{rec.key}") <= 3_600_000
    assert redis_server.keys() == [f"team:by:{rec.key}", f"team:rec:{rec.key}"]
    # A machine name that is not one of ours is not repeated in a report.
    redis_server.client().set(f"team:by:{rec.key}", "bad name\n")
    again = tier.get(rec.key)
    assert again is not None
    assert again.machine is None


def test_down_tier_neither_reads_nor_writes(own_redis: RedisServer) -> None:
    link = link_to(own_redis)
    tier = SharedRecordings(link, max_size=1 << 20)
    own_redis.stop()
    rec = recording("gone")
    assert tier.get(rec.key) is None
    assert not link.up
    assert not tier.put(rec.key, b"{}", "m")
    assert len(link.notices) == 1
    assert "is unavailable (reading a recording: ConnectionError" in link.notices[0]


def test_unreachable_at_start_is_one_notice_and_every_call_is_refused_at_once(own_redis: RedisServer) -> None:
    own_redis.stop()
    link = RedisLink(SharedConfig(url=own_redis.url, machine="m", timeout=0.5))
    assert not link.start()
    with pytest.raises(SharedDown):
        link.call("anything", lambda c: c.ping())
    assert len(link.notices) == 1
    assert "(connecting: ConnectionError" in link.notices[0]
    link.close()


# -- key locks ----------------------------------------------------------------------------------------


def test_a_key_lock_is_exclusive_across_machines_and_names_its_holder(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    one, two = fleet(redis_server, tmp_path, "ci-1"), fleet(redis_server, tmp_path, "ci-2")
    first, second = one.key_lock("k"), two.key_lock("k")
    assert first.try_acquire()
    assert not second.try_acquire()
    assert second.describe_holder().startswith("pid ")
    assert second.describe_holder().endswith(" on machine ci-1")
    with pytest.raises(RuntimeError, match="already held"):
        first.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()
    assert redis_server.keys("promptcache:lock:*") == []
    redis_server.client().set("promptcache:lock:k", b"\xff\x00")
    assert second.describe_holder() == "another process (its name in the lock is unreadable)"


def test_only_the_owner_releases_a_lock_even_after_it_expired(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    one, two = fleet(redis_server, tmp_path, "ci-1"), fleet(redis_server, tmp_path, "ci-2")
    first = one.key_lock("k")
    assert first.try_acquire()
    one.link.let_go("promptcache:lock:k")
    redis_server.client().pexpire("promptcache:lock:k", 1)  # the first holder stalled past its expiry
    time.sleep(0.01)
    second = two.key_lock("k")
    assert second.try_acquire()
    first.release()  # a late release must not free the lock the second holder now has
    assert not fleet(redis_server, tmp_path, "ci-3").key_lock("k").try_acquire()
    second.release()


def test_a_held_lock_is_renewed_and_a_released_one_is_not(redis_server: RedisServer, tmp_path: Path) -> None:
    state = fleet(redis_server, tmp_path, "ci-1", lock_ttl_ms=150)
    lock = state.key_lock("long-stream")
    assert lock.try_acquire()
    time.sleep(0.5)  # over three expiries: only renewal keeps it
    assert redis_server.client().exists("promptcache:lock:long-stream")
    lock.release()
    assert not redis_server.client().exists("promptcache:lock:long-stream")
    state.link.close()


def test_locks_fall_back_to_file_locks_when_redis_goes(own_redis: RedisServer, tmp_path: Path) -> None:
    state = fleet(own_redis, tmp_path, "ci-1")
    held = state.key_lock("k")
    assert held.try_acquire()
    own_redis.stop()
    other = state.key_lock("k")
    assert other.try_acquire()  # Redis is gone: the machine's own file lock decides now
    again = state.key_lock("k")
    assert not again.try_acquire()
    assert again.describe_holder().startswith("pid ")
    other.release()
    held.release()  # its Redis lock expires by itself
    assert isinstance(again, RedisKeyLock)


# -- pacing -------------------------------------------------------------------------------------------


def test_pacing_is_one_schedule_for_the_fleet_on_redis_time(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    one, two = fleet(redis_server, tmp_path, "ci-1"), fleet(redis_server, tmp_path, "ci-2")
    first = one.reserve_slot("api.test", 60.0, max_wait=100.0)
    second = two.reserve_slot("api.test", 60.0, max_wait=100.0)
    third = one.reserve_slot("api.test", 60.0, max_wait=100.0)
    assert first.reserved
    assert first.wait == 0.0
    assert second.reserved
    assert 59.0 < second.wait <= 60.0
    assert not third.reserved
    assert 119.0 < third.wait <= 120.0
    assert one.reserve_slot("other.test", 60.0, max_wait=100.0).wait == 0.0  # per host
    two.add_debt("other.test", 30.0, max_wait=100.0)
    assert 89.0 < one.reserve_slot("other.test", 60.0, max_wait=100.0).wait <= 90.0


def test_a_damaged_schedule_is_ignored(redis_server: RedisServer, tmp_path: Path) -> None:
    state = fleet(redis_server, tmp_path, "ci-1")
    state.reserve_slot("api.test", 1.0, max_wait=10.0)
    [key] = redis_server.keys("promptcache:pace:*")
    for planted in (b"not a number", b"nan", b"1e300"):
        redis_server.client().set(key, planted)
        assert state.reserve_slot("api.test", 1.0, max_wait=10.0).wait == 0.0
        state.add_debt("api.test", 0.0, max_wait=10.0)


def test_pacing_falls_back_to_the_state_directory(own_redis: RedisServer, tmp_path: Path) -> None:
    state = fleet(own_redis, tmp_path, "ci-1")
    own_redis.stop()
    assert state.reserve_slot("api.test", 60.0, max_wait=100.0).wait == 0.0
    assert 59.0 < state.reserve_slot("api.test", 60.0, max_wait=100.0).wait <= 60.0
    state.add_debt("api.test", 1.0, max_wait=100.0)
    assert len(state.link.notices) == 1


# -- the run's spend ----------------------------------------------------------------------------------


def test_a_run_shares_one_spend(redis_server: RedisServer, tmp_path: Path) -> None:
    one = fleet(redis_server, tmp_path, "ci-1", run_id="run-9")
    two = fleet(redis_server, tmp_path, "ci-2", run_id="run-9")
    other = fleet(redis_server, tmp_path, "ci-3", run_id="run-10")
    assert one.spent() == 0.0
    one.add_spend(1.25)
    assert two.add_spend(0.5) == pytest.approx(1.75)
    assert one.spent() == pytest.approx(1.75)
    assert other.spent() == 0.0
    assert 0 < redis_server.client().ttl("promptcache:run:run-9:spend") <= 7 * 24 * 3600


def test_without_a_run_id_the_spend_is_the_sessions_own(redis_server: RedisServer, tmp_path: Path) -> None:
    one, two = fleet(redis_server, tmp_path, "ci-1"), fleet(redis_server, tmp_path, "ci-2")
    one.add_spend(2.0)
    assert (one.spent(), two.spent()) == (2.0, 0.0)
    assert redis_server.keys() == []


def test_a_damaged_spend_counts_the_sessions_own(redis_server: RedisServer, tmp_path: Path) -> None:
    state = fleet(redis_server, tmp_path, "ci-1", run_id="r")
    state.add_spend(1.0)
    redis_server.client().set("promptcache:run:r:spend", b"-5")
    assert state.spent() == 1.0
    redis_server.client().set("promptcache:run:r:spend", b"lots")
    assert state.spent() == 1.0
    assert len(state.link.notices) == 1
    assert "ignored the run's spend" in state.link.notices[0]


def test_spend_falls_back_and_keeps_what_this_session_spent(own_redis: RedisServer, tmp_path: Path) -> None:
    state = fleet(own_redis, tmp_path, "ci-1", run_id="r")
    state.add_spend(1.0)
    own_redis.stop()
    assert state.add_spend(0.5) == 1.5
    assert state.spent() == 1.5


def test_rewrites_are_the_machines_own(redis_server: RedisServer, tmp_path: Path) -> None:
    state = fleet(redis_server, tmp_path, "ci-1")
    state.mark_rewritten("k")
    assert state.was_rewritten("k")
    assert not fleet(redis_server, tmp_path, "ci-2").was_rewritten("k")


def test_each_operation_falls_back_when_it_is_the_first_to_find_redis_gone(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    state = fleet(own_redis, tmp_path, "ci-1", run_id="r")
    lock = state.key_lock("k")
    lock.release()  # never taken: nothing to do
    tier = SharedRecordings(state.link, max_size=1 << 20)
    own_redis.stop()
    for first in (
        lock.describe_holder,
        state.spent,
        lambda: state.add_debt("api.test", 1.0, max_wait=10.0),
        lambda: tier.put("k", b"{}", "ci-1"),
    ):
        state.link._down = False  # as if Redis had just gone away
        first()
        assert not state.link.up
    assert state.spent() == 0.0
    assert not tier.put("k", b"{}", "ci-1")


def test_a_lost_renewal_is_one_notice(own_redis: RedisServer, tmp_path: Path) -> None:
    state = fleet(own_redis, tmp_path, "ci-1", lock_ttl_ms=150)
    lock = state.key_lock("long-stream")
    assert lock.try_acquire()
    own_redis.stop()
    deadline = time.monotonic() + 10
    while state.link.up and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state.link.notices
    assert "(renewing a lock: ConnectionError" in state.link.notices[0]
    lock.release()


def test_bad_entries_are_reported_a_few_times_then_quietly(redis_server: RedisServer) -> None:
    link = link_to(redis_server)
    tier = SharedRecordings(link, max_size=1 << 20)
    for i in range(8):
        redis_server.client().set(f"promptcache:rec:{i:064x}", b"[]")
        redis_server.client().set(f"promptcache:by:{i:064x}", b"\xff")
        assert tier.get(f"{i:064x}") is None
    assert len(link.notices) == 5
    assert all("not a JSON object" in n for n in link.notices)
