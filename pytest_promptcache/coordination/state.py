"""State shared by the processes of one machine: key locks, the session's shared counters, pacing.

Kept outside the cassette directory (nothing here is ever committed) and outside pytest's cache (it must
work with ``-p no:cacheprovider``). Every lock is an OS file lock, which the kernel releases when its
process dies: a worker killed mid-recording never leaves a lock that blocks the next run.

Every value read back is checked, and a damaged or implausible one counts as absent (with a warning):
the directory is private (``statedir``), but a crash, an older version or a hand may still have left
anything there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..safefile import UnsafeFile, read_regular_file
from .statedir import make_state_dirs

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

# Session directories of runs that ended long ago are swept at start-up.
STALE_SESSION_SECONDS = 24 * 3600
# State files hold a number or two; anything larger is not ours.
MAX_STATE_FILE = 4096
# Linux never hands out a pid above this (PID_MAX_LIMIT on 64-bit systems); other systems stay below it.
MAX_PID = 1 << 22
# No session spends this much; a larger figure is damage, not spending.
MAX_SPEND_USD = 1e9
# promptcache_record_rpm is at least 1, so one request's interval is at most a minute.
MAX_INTERVAL = 60.0
# Room for the wall clock being set back between a reservation and the next read.
CLOCK_SLACK = 60.0


class StateWarning(UserWarning):
    """A damaged or implausible value in the state directory, ignored."""


def _warn(path: Path, what: str, why: str) -> None:
    warnings.warn(
        f"promptcache: ignored {what} in {path}: {why}; treating it as absent", StateWarning, stacklevel=2
    )


def _number(value: object) -> float | None:
    """A finite JSON number, or None (booleans are numbers to Python, not to us)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def read_state_json(path: Path) -> dict[str, Any]:
    """A small JSON object from the state directory; {} when absent or damaged (with a warning)."""
    try:
        raw = read_regular_file(path, max_size=MAX_STATE_FILE)
    except FileNotFoundError:
        return {}
    except UnsafeFile as exc:
        _warn(path, "the file", exc.reason)
        return {}
    except OSError as exc:
        _warn(path, "the file", f"it cannot be read ({exc.strerror or exc})")
        return {}
    # State files are flat objects: more nesting than that is damage, and would only feed the parser.
    if raw.count(b"{") + raw.count(b"[") > 8:
        _warn(path, "the content", "it is nested, and state files are flat")
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        _warn(path, "the content", "it is not JSON")
        return {}
    if not isinstance(data, dict):
        _warn(path, "the content", "it is not a JSON object")
        return {}
    return data


@dataclass(frozen=True)
class Slot:
    """A start time for a live request: ``wait`` seconds from now. Not ``reserved`` when it lay further
    away than allowed; then nothing was reserved."""

    wait: float
    reserved: bool = True


class FileLock:
    """An exclusive, non-blocking OS lock on one file. Separate instances contend even within one
    process (each opens its own file description), which is what threads of one worker need too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        if self._fh is not None:
            raise RuntimeError(f"{self.path} is already held by this lock object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+b")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # pragma: no cover - Windows
                import msvcrt

                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        # Who holds it, for a waiter that gives up to name (holder()); the lock works without it.
        with contextlib.suppress(OSError):
            fh.truncate(0)
            fh.write(str(os.getpid()).encode())
            fh.flush()
        return True

    def holder(self) -> int | None:
        """The pid the holder wrote into the lock file, if it is a plausible one."""
        try:
            raw = read_regular_file(self.path, max_size=16)
        except (OSError, UnsafeFile):
            return None
        if not re.fullmatch(rb"[0-9]{1,7}", raw):
            return None
        pid = int(raw)
        return pid if 0 < pid <= MAX_PID else None

    def describe_holder(self) -> str:
        pid = self.holder()
        return f"pid {pid}, another process" if pid is not None else "another process (its pid is unknown)"

    def acquire(self, timeout: float | None = None) -> bool:
        """Blocks by polling (a kernel wait cannot time out from a thread); for sync code only."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while not self.try_acquire():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        finally:
            fh.close()

    @contextlib.contextmanager
    def held_for(self, timeout: float | None = None) -> Iterator[bool]:
        ok = self.acquire(timeout)
        try:
            yield ok
        finally:
            if ok:
                self.release()


class SharedState:
    """One directory per cassette directory; below it, one per test session (an xdist run shares one)."""

    def __init__(self, root: Path, session_id: str | None, *, private_from: Path | None = None) -> None:
        """``session_id`` names a session several processes share (xdist's test run id); without one,
        the session's own state stays in memory and nothing is created on disk until a lock is needed.
        ``private_from``: the outermost directory above ``root`` that must be this user's alone.

        Raises UnsafeStateDir (from here or from whatever first writes) for a directory that is not."""
        self.root = root
        self._top = private_from or root
        self._made = False
        self._make_lock = threading.Lock()
        self.shared_session = session_id is not None
        self.session_id = session_id or f"solo-{os.getpid()}"
        self.session_dir = root / "sessions" / self.session_id
        self._lock = threading.Lock()
        self._local_rewritten: set[str] = set()
        self._local_spend = 0.0
        if self.shared_session:
            try:
                self._make_dirs()
                self.session_dir.mkdir(parents=True, exist_ok=True)
                self._sweep()
            except OSError:
                # Coordination is an aid: without a writable state directory, each process does what
                # it can alone.
                self.shared_session = False

    def _make_dirs(self) -> None:
        if self._made:
            return
        with self._make_lock:
            if not self._made:
                make_state_dirs(self._top, self.root)
                self._made = True

    def key_lock(self, key: str) -> FileLock:
        self._make_dirs()
        return FileLock(self.root / "locks" / f"{key}.lock")

    def _sweep(self) -> None:
        sessions = self.root / "sessions"
        now = time.time()
        for entry in sessions.iterdir():
            if entry.name == self.session_id:
                continue
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > STALE_SESSION_SECONDS:
                    shutil.rmtree(entry, ignore_errors=True)

    # -- keys rewritten in this session (rewrite mode pays for each request once) -----------------------

    def mark_rewritten(self, key: str) -> None:
        with self._lock:
            self._local_rewritten.add(key)
        if self.shared_session:
            with contextlib.suppress(OSError):
                (self.session_dir / "rewritten").mkdir(exist_ok=True)
                (self.session_dir / "rewritten" / key).touch()

    def was_rewritten(self, key: str) -> bool:
        with self._lock:
            if key in self._local_rewritten:
                return True
        return self.shared_session and (self.session_dir / "rewritten" / key).exists()

    # -- live spend of the whole session (the budget holds across xdist workers) -------------------------

    def add_spend(self, usd: float) -> float:
        if not self.shared_session:
            with self._lock:
                self._local_spend += usd
                return self._local_spend
        path = self.session_dir / "spend.json"
        with self._locked_json(path) as data:
            data["usd"] = _spend(data, path) + usd
            return float(data["usd"])

    def spent(self) -> float:
        if not self.shared_session:
            with self._lock:
                return self._local_spend
        path = self.session_dir / "spend.json"
        with self._locked_json(path) as data:
            return _spend(data, path)

    @contextlib.contextmanager
    def _locked_json(self, path: Path) -> Iterator[dict[str, Any]]:
        """Read-modify-write of a small JSON file under its own lock; a damaged file counts as empty."""
        self._make_dirs()
        lock = FileLock(path.with_suffix(".lock"))
        with lock.held_for():
            data = read_state_json(path)
            before = dict(data)
            yield data
            if data != before:
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(data))
                os.replace(tmp, path)

    # -- pacing: one schedule per host, shared by every process on the machine ---------------------------

    def _pace_path(self, host: str) -> Path:
        return self.root / "pace" / f"{hashlib.sha256(host.encode()).hexdigest()[:16]}.json"

    def reserve_slot(self, host: str, interval: float, max_wait: float) -> Slot:
        """Reserve the next start time for a request to ``host``, unless it is more than ``max_wait``
        seconds away: then nothing is reserved, and the caller must not send."""
        path = self._pace_path(host)
        with self._locked_json(path) as data:
            now = time.time()
            slot = max(now, _next_at(data, path, host, now, max_wait))
            if slot - now > max_wait:
                return Slot(slot - now, reserved=False)
            data.clear()
            data.update(host=host, next_at=slot + interval)
            return Slot(slot - now)

    def add_debt(self, host: str, seconds: float, max_wait: float) -> None:
        """Push the host's schedule back, e.g. by the time a call's tokens are worth under a TPM limit;
        never further than ``max_wait`` from now, so the next call can still be sent."""
        path = self._pace_path(host)
        with self._locked_json(path) as data:
            now = time.time()
            start = max(now, _next_at(data, path, host, now, max_wait))
            data.clear()
            data.update(host=host, next_at=max(start, min(start + seconds, now + max_wait)))


def _spend(data: dict[str, Any], path: Path) -> float:
    if "usd" not in data:
        return 0.0
    usd = _number(data["usd"])
    if usd is None or not 0.0 <= usd <= MAX_SPEND_USD:
        _warn(path, f"usd={data['usd']!r}", f"it is not an amount from 0 to {MAX_SPEND_USD:g} dollars")
        return 0.0
    return usd


def _next_at(data: dict[str, Any], path: Path, host: str, now: float, max_wait: float) -> float:
    """The host's next free start time, if the file holds a plausible one; else 0 (none)."""
    if not data:
        return 0.0
    if data.get("host") != host:
        _warn(path, "the schedule", f"it is for host {data.get('host')!r}, not {host!r}")
        return 0.0
    next_at = _number(data.get("next_at"))
    if next_at is None:
        _warn(path, f"next_at={data.get('next_at')!r}", "it is not a finite number")
        return 0.0
    # No reservation lies further ahead than the longest allowed wait plus one interval.
    horizon = max_wait + MAX_INTERVAL + CLOCK_SLACK
    if next_at - now > horizon:
        _warn(path, f"next_at={next_at!r}", f"it is {next_at - now:.0f} s ahead, more than {horizon:.0f} s")
        return 0.0
    return next_at
