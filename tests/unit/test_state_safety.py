"""The state directory is private and everything read back from it is checked: a directory another user
could write to is refused, and a damaged or implausible value counts as absent, with a warning."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_promptcache.coordination.state import FileLock, SharedState, StateWarning
from pytest_promptcache.coordination.statedir import UnsafeStateDir, check_state_dirs, make_private_dirs
from pytest_promptcache.store.packed import private_dir

KEY = "ab" * 32
HOST = "api.example.com"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """What a careless environment does: without an explicit mode, new directories are world-writable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("permissive_umask")
def test_state_directories_are_created_private(tmp_path: Path) -> None:
    top = tmp_path / "pytest-promptcache-0"
    state = SharedState(top / "digest", None, private_from=top)
    assert state.key_lock(KEY).try_acquire()
    assert mode_of(top) == 0o700
    assert mode_of(top / "digest") == 0o700


@pytest.mark.usefixtures("permissive_umask")
def test_a_cache_written_before_the_state_directory_exists_makes_every_level_private(
    tmp_path: Path,
) -> None:
    # The miss index, the served forms and the guard's hosts each make their directory when they first
    # write; made with Path.mkdir(mode=0o700, parents=True), the levels above it kept the umask's mode.
    top = tmp_path / "pytest-promptcache-0"
    assert private_dir(top / "digest" / "index")
    assert [mode_of(level) for level in (top, top / "digest", top / "digest" / "index")] == [0o700] * 3
    assert private_dir(top / "digest" / "index")  # made already: checked, not made again
    make_private_dirs(top / "digest" / "other")
    assert mode_of(top / "digest" / "other") == 0o700


def _planted(top: Path, how: str) -> None:
    if how == "a symbolic link":
        real = top.parent / "real"
        real.mkdir(mode=0o700)
        top.symlink_to(real)
    elif how == "a file":
        top.write_text("")
    else:
        top.mkdir()
        top.chmod(0o777 if how == "world-writable" else 0o770)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("world-writable", "is writable by others (mode 0777)"),
        ("group-writable", "is writable by others (mode 0770)"),
        ("a symbolic link", "is a symbolic link"),
        ("a file", "is not a directory"),
    ],
)
def test_an_unsafe_state_directory_is_refused_before_anything_is_written_to_it(
    tmp_path: Path, how: str, message: str
) -> None:
    top = tmp_path / "pytest-promptcache-0"
    _planted(top, how)
    root = top / "digest"
    with pytest.raises(UnsafeStateDir, match=re.escape(f"state directory {top} {message}")):
        check_state_dirs(top, root)
    state = SharedState(root, None, private_from=top)
    with pytest.raises(UnsafeStateDir, match="remove it, or set promptcache_state_dir"):
        state.key_lock(KEY)
    assert not os.path.lexists(root)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory to another user")
def test_a_state_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    top = tmp_path / "pytest-promptcache-0"
    top.mkdir(mode=0o700)
    os.chown(top, 4242, 4242)
    expected = f"state directory {top} belongs to uid 4242, not to you"
    with pytest.raises(UnsafeStateDir, match=re.escape(expected)):
        check_state_dirs(top, top / "digest")


def test_a_missing_state_directory_passes_the_start_up_check_and_is_not_created(tmp_path: Path) -> None:
    top = tmp_path / "pytest-promptcache-0"
    check_state_dirs(top, top / "digest")
    assert not top.exists()


# -- values read back ------------------------------------------------------------------------------------


def private_state(tmp_path: Path, session_id: str | None = None) -> SharedState:
    root = tmp_path / "state"
    return SharedState(root, session_id, private_from=root)


def pace_file(state: SharedState) -> Path:
    path = state.root / "pace" / f"{hashlib.sha256(HOST.encode()).hexdigest()[:16]}.json"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@pytest.mark.parametrize(
    "planted",
    [
        {"host": HOST, "next_at": "soon"},
        {"host": HOST, "next_at": float("nan")},
        {"host": HOST, "next_at": float("inf")},
        {"host": HOST, "next_at": True},
        {"host": HOST, "next_at": None},
        {"host": HOST, "next_at": "AHEAD"},  # an hour ahead: more than any reservation could be
        {"host": "other.example.com", "next_at": "AHEAD"},
        ["not", "an", "object"],
    ],
)
def test_a_damaged_or_implausible_pacing_schedule_counts_as_absent_with_a_warning(
    tmp_path: Path, planted: object
) -> None:
    state = private_state(tmp_path)
    path = pace_file(state)
    if isinstance(planted, dict) and planted["next_at"] == "AHEAD":
        planted = {**planted, "next_at": time.time() + 3600}
    path.write_text(json.dumps(planted))
    before = time.time()
    with pytest.warns(StateWarning, match=f"promptcache: ignored .* in {re.escape(str(path))}"):
        slot = state.reserve_slot(HOST, 1.0, max_wait=300.0)
    assert slot.reserved
    assert slot.wait == 0.0
    next_at = json.loads(path.read_text())["next_at"]
    assert before + 1.0 <= next_at <= time.time() + 1.0


def test_a_slot_further_away_than_the_cap_is_refused_and_not_reserved(tmp_path: Path) -> None:
    state = private_state(tmp_path)
    assert state.reserve_slot(HOST, 60.0, max_wait=5.0).wait == 0.0
    after_first = json.loads(pace_file(state).read_text())
    refused = state.reserve_slot(HOST, 60.0, max_wait=5.0)
    assert not refused.reserved
    assert 55.0 < refused.wait <= 60.0
    assert json.loads(pace_file(state).read_text()) == after_first


def test_token_debt_never_pushes_the_schedule_past_the_cap(tmp_path: Path) -> None:
    state = private_state(tmp_path)
    state.add_debt(HOST, 10_000.0, max_wait=30.0)
    next_at = json.loads(pace_file(state).read_text())["next_at"]
    assert next_at <= time.time() + 30.0
    # What this process wrote is read back as plausible: no warning, and the next call may wait for it.
    slot = state.reserve_slot(HOST, 1.0, max_wait=30.0)
    assert slot.reserved
    assert 25.0 < slot.wait <= 30.0


@pytest.mark.parametrize("usd", ["lots", float("nan"), float("inf"), -5.0, 1e12, True, None])
def test_a_damaged_session_spend_counts_as_absent_with_a_warning(tmp_path: Path, usd: object) -> None:
    state = private_state(tmp_path, session_id="run-1")
    path = state.session_dir / "spend.json"
    path.write_text(json.dumps({"usd": usd}))
    with pytest.warns(StateWarning, match=f"promptcache: ignored .*usd.* in {re.escape(str(path))}"):
        assert state.spent() == 0.0
    with pytest.warns(StateWarning):
        assert state.add_spend(0.25) == 0.25
    assert json.loads(path.read_text()) == {"usd": 0.25}


def test_a_plausible_spend_is_read_back_without_a_warning(tmp_path: Path) -> None:
    state = private_state(tmp_path, session_id="run-1")
    state.add_spend(1.5)
    assert state.add_spend(0.5) == 2.0
    assert state.spent() == 2.0


# -- who holds a key lock ----------------------------------------------------------------------------------


def test_a_key_lock_names_the_process_that_holds_it(tmp_path: Path) -> None:
    state = private_state(tmp_path)
    held = state.key_lock(KEY)
    assert held.try_acquire()
    waiting = state.key_lock(KEY)
    assert not waiting.try_acquire()
    assert waiting.holder() == os.getpid()


@pytest.mark.parametrize(
    "content", [b"", b"abc", b"-4", b"0", b"99999999", b"12 34", b"1" * 5000, "١٢٣".encode()]
)
def test_a_damaged_lock_file_names_no_holder(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k.lock"
    path.write_bytes(content)
    assert FileLock(path).holder() is None
