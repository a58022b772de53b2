"""State shared by the processes of one machine: key locks, the session's shared counters, pacing.

Kept outside the cassette directory (nothing here is ever committed) and outside pytest's cache (it must
work with ``-p no:cacheprovider``). Every lock is an OS file lock, which the kernel releases when its
process dies: a worker killed mid-recording never leaves a lock that blocks the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

# Session directories of runs that ended long ago are swept at start-up.
STALE_SESSION_SECONDS = 24 * 3600


def default_state_root(cassette_dir: Path) -> Path:
    digest = hashlib.sha256(str(cassette_dir).encode()).hexdigest()[:16]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"pytest-promptcache-{uid}" / digest


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
        return True

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

    def __init__(self, root: Path, session_id: str | None) -> None:
        """``session_id`` names a session several processes share (xdist's test run id); without one,
        the session's own state stays in memory and nothing is created on disk until a lock is needed."""
        self.root = root
        self.shared_session = session_id is not None
        self.session_id = session_id or f"solo-{os.getpid()}"
        self.session_dir = root / "sessions" / self.session_id
        self._lock = threading.Lock()
        self._local_rewritten: set[str] = set()
        self._local_spend = 0.0
        if self.shared_session:
            try:
                self.session_dir.mkdir(parents=True, exist_ok=True)
                self._sweep()
            except OSError:
                # Coordination is an aid: without a writable state directory, each process does what
                # it can alone.
                self.shared_session = False

    def key_lock(self, key: str) -> FileLock:
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
        with self._locked_json(self.session_dir / "spend.json") as data:
            data["usd"] = float(data.get("usd", 0.0)) + usd
            return float(data["usd"])

    def spent(self) -> float:
        if not self.shared_session:
            with self._lock:
                return self._local_spend
        with self._locked_json(self.session_dir / "spend.json") as data:
            return float(data.get("usd", 0.0))

    @contextlib.contextmanager
    def _locked_json(self, path: Path) -> Iterator[dict[str, Any]]:
        """Read-modify-write of a small JSON file under its own lock; a damaged file counts as empty."""
        lock = FileLock(path.with_suffix(".lock"))
        with lock.held_for():
            try:
                data = json.loads(path.read_text())
                if not isinstance(data, dict):
                    data = {}
            except (OSError, ValueError):
                data = {}
            before = dict(data)
            yield data
            if data != before:
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(data))
                os.replace(tmp, path)

    # -- pacing: one schedule per host, shared by every process on the machine ---------------------------

    def reserve_slot(self, host: str, interval: float) -> float:
        """Reserve the next start time for a request to ``host``; returns seconds to wait until it."""
        name = hashlib.sha256(host.encode()).hexdigest()[:16]
        with self._locked_json(self.root / "pace" / f"{name}.json") as data:
            now = time.time()
            slot = max(now, float(data.get("next_at", 0.0)))
            data["host"] = host
            data["next_at"] = slot + interval
            return slot - now

    def add_debt(self, host: str, seconds: float) -> None:
        """Push the host's schedule back, e.g. by the time a call's tokens are worth under a TPM limit."""
        name = hashlib.sha256(host.encode()).hexdigest()[:16]
        with self._locked_json(self.root / "pace" / f"{name}.json") as data:
            data["host"] = host
            data["next_at"] = max(time.time(), float(data.get("next_at", 0.0))) + seconds
