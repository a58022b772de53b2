"""What processes of one machine share: OS file locks, the session's spend, rewritten keys, pacing slots.
Two ``SharedState`` objects on one directory stand for two processes (xdist workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_promptcache.coordination.state import (
    STALE_SESSION_SECONDS,
    FileLock,
    SharedState,
    StateWarning,
)
from pytest_promptcache.coordination.statedir import UnsafeStateDir, state_dirs


class Clock:
    """``time.time`` for the pacing schedule, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(1_800_000_000.0)
    monkeypatch.setattr(time, "time", fake)
    return fake


# -- FileLock ---------------------------------------------------------------------------------------------


def test_file_locks_on_one_path_contend_even_in_one_process(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "k.lock"
    a, b = FileLock(path), FileLock(path)
    assert a.try_acquire()
    assert not b.try_acquire()
    a.release()
    assert b.try_acquire()
    assert not a.try_acquire()
    b.release()
    assert path.parent.is_dir()


def test_a_lock_object_cannot_be_acquired_twice(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "k.lock")
    assert lock.try_acquire()
    with pytest.raises(RuntimeError, match=r"k\.lock is already held by this lock object"):
        lock.try_acquire()
    lock.release()
    lock.release()  # releasing a lock that is not held does nothing


def test_acquire_gives_up_after_its_timeout_and_waits_for_a_release(tmp_path: Path) -> None:
    holder, other = FileLock(tmp_path / "k.lock"), FileLock(tmp_path / "k.lock")
    assert holder.try_acquire()
    assert not other.acquire(timeout=0.01)
    thread = threading.Thread(target=holder.release)
    thread.start()
    assert other.acquire()  # no timeout: until the holder lets go
    thread.join()
    other.release()


def test_held_for_releases_on_exit_and_yields_whether_it_got_the_lock(tmp_path: Path) -> None:
    lock, other = FileLock(tmp_path / "k.lock"), FileLock(tmp_path / "k.lock")
    with lock.held_for() as ok:
        assert ok
        with other.held_for(timeout=0) as got:
            assert not got
    assert other.try_acquire()
    other.release()


def test_a_lock_held_by_a_killed_process_is_free(tmp_path: Path) -> None:
    # The kernel drops a process's flock when it dies: a SIGKILLed worker leaves no lock behind.
    path = tmp_path / "k.lock"
    holder = (
        "import os, pathlib, signal, sys\n"
        "from pytest_promptcache.coordination.state import FileLock\n"
        "if not FileLock(pathlib.Path(sys.argv[1])).try_acquire():\n"
        "    sys.exit(1)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    died = subprocess.run([sys.executable, "-c", holder, str(path)], check=False)
    assert died.returncode == -signal.SIGKILL
    assert path.exists()
    lock = FileLock(path)
    assert lock.try_acquire()
    lock.release()


# -- the session's spend ----------------------------------------------------------------------------------


def test_spend_is_shared_by_the_processes_of_a_session(tmp_path: Path) -> None:
    one, two = SharedState(tmp_path, "run-1"), SharedState(tmp_path, "run-1")
    assert one.add_spend(0.25) == 0.25
    assert two.add_spend(0.5) == 0.75
    assert one.spent() == two.spent() == 0.75
    assert SharedState(tmp_path, "run-2").spent() == 0.0


def test_concurrent_spend_from_two_processes_adds_up(tmp_path: Path) -> None:
    states = [SharedState(tmp_path, "run-1"), SharedState(tmp_path, "run-1")]

    def spend(state: SharedState) -> None:
        for _ in range(50):
            state.add_spend(0.5)

    threads = [threading.Thread(target=spend, args=(s,)) for s in states for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert states[0].spent() == 100.0


def test_a_solo_session_keeps_its_spend_in_memory(tmp_path: Path) -> None:
    root = tmp_path / "state"
    solo = SharedState(root, None)
    assert not solo.shared_session
    assert solo.session_id == f"solo-{os.getpid()}"
    solo.add_spend(1.5)
    assert solo.add_spend(1.0) == 2.5
    assert solo.spent() == 2.5
    assert not root.exists()  # nothing on disk until a lock is needed
    assert SharedState(root, None).spent() == 0.0


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '"text"', ""])
def test_a_damaged_spend_file_counts_as_empty(tmp_path: Path, damage: str) -> None:
    state = SharedState(tmp_path, "run-1")
    (state.session_dir / "spend.json").write_text(damage)
    with pytest.warns(StateWarning, match="treating it as absent"):
        assert state.spent() == 0.0
    with pytest.warns(StateWarning, match="treating it as absent"):
        assert state.add_spend(2.0) == 2.0
    assert SharedState(tmp_path, "run-1").spent() == 2.0


def test_an_unusable_state_directory_leaves_each_process_alone(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the directory should be")
    # Refused, with what to do: a file where the directory should be could be anyone's.
    with pytest.raises(UnsafeStateDir, match=r"is not a directory.*set promptcache_state_dir"):
        SharedState(blocker, "run-1")


# -- keys rewritten in this session -----------------------------------------------------------------------


def test_rewritten_keys_are_shared_within_a_session_only(tmp_path: Path) -> None:
    one, two = SharedState(tmp_path, "run-1"), SharedState(tmp_path, "run-1")
    assert not two.was_rewritten("k1")
    one.mark_rewritten("k1")
    assert one.was_rewritten("k1")
    assert two.was_rewritten("k1")
    assert not SharedState(tmp_path, "run-2").was_rewritten("k1")


def test_a_solo_session_remembers_rewritten_keys_in_memory(tmp_path: Path) -> None:
    solo = SharedState(tmp_path / "state", None)
    solo.mark_rewritten("k1")
    assert solo.was_rewritten("k1")
    assert not SharedState(tmp_path / "state", None).was_rewritten("k1")
    assert not (tmp_path / "state").exists()


# -- sessions of old runs ---------------------------------------------------------------------------------


def test_sessions_of_runs_that_ended_long_ago_are_swept(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    old, recent = sessions / "old-run", sessions / "recent-run"
    for directory in (old, recent):
        (directory / "rewritten").mkdir(parents=True)
    long_ago = time.time() - STALE_SESSION_SECONDS - 60
    os.utime(old, (long_ago, long_ago))
    own = sessions / "run-1"
    own.mkdir()
    os.utime(own, (long_ago, long_ago))  # an old name reused: never the running session's own
    SharedState(tmp_path, "run-1")
    assert sorted(p.name for p in sessions.iterdir()) == ["recent-run", "run-1"]


def test_default_state_root_is_one_directory_per_cassette_directory(tmp_path: Path) -> None:
    a = state_dirs(tmp_path / "a", None)[1]
    assert a == state_dirs(tmp_path / "a", None)[1]
    assert a != state_dirs(tmp_path / "b", None)[1]
    assert a.parent.name == f"pytest-promptcache-{os.getuid()}"


# -- pacing slots -----------------------------------------------------------------------------------------


def test_slots_of_a_host_are_one_interval_apart(tmp_path: Path, clock: Clock) -> None:
    state = SharedState(tmp_path, None)
    assert [state.reserve_slot("api.openai.com", 0.5, 3600).wait for _ in range(4)] == [0.0, 0.5, 1.0, 1.5]
    clock.now += 1.25  # time passes: the next free slot is 0.75 s later than now
    assert state.reserve_slot("api.openai.com", 0.5, 3600).wait == pytest.approx(0.75)
    clock.now += 100
    assert state.reserve_slot("api.openai.com", 0.5, 3600).wait == 0.0  # an idle host starts at once


def test_hosts_have_their_own_schedules(tmp_path: Path, clock: Clock) -> None:
    state = SharedState(tmp_path, None)
    assert state.reserve_slot("a.example", 1.0, 3600).wait == 0.0
    assert state.reserve_slot("b.example", 1.0, 3600).wait == 0.0
    assert state.reserve_slot("a.example", 1.0, 3600).wait == 1.0


def test_processes_share_a_hosts_schedule_across_sessions(tmp_path: Path, clock: Clock) -> None:
    # Pacing protects the provider's limit, which every run on the machine shares.
    one, two = SharedState(tmp_path, "run-1"), SharedState(tmp_path, "run-2")
    assert one.reserve_slot("api.anthropic.com", 2.0, 3600).wait == 0.0
    assert two.reserve_slot("api.anthropic.com", 2.0, 3600).wait == 2.0
    assert one.reserve_slot("api.anthropic.com", 2.0, 3600).wait == 4.0


def test_debt_pushes_the_schedule_back(tmp_path: Path, clock: Clock) -> None:
    state = SharedState(tmp_path, None)
    state.add_debt("api.openai.com", 3.0, 3600)  # an idle host: 3 s from now
    assert state.reserve_slot("api.openai.com", 1.0, 3600).wait == 3.0
    state.add_debt("api.openai.com", 2.0, 3600)  # after the reserved slot's end (4 s)
    assert state.reserve_slot("api.openai.com", 1.0, 3600).wait == 6.0


def test_a_damaged_schedule_counts_as_empty(tmp_path: Path, clock: Clock) -> None:
    state = SharedState(tmp_path, None)
    state.reserve_slot("api.openai.com", 5.0, 3600)
    (schedule,) = (tmp_path / "pace").glob("*.json")
    schedule.write_text("{")
    with pytest.warns(StateWarning, match="it is not JSON"):
        assert state.reserve_slot("api.openai.com", 5.0, 3600).wait == 0.0
