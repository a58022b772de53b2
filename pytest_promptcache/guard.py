"""Replay never reaches a provider: which connections the socket guard refuses, and what it says.

The client adapters serve every LLM call they intercept without opening a socket. A connection that is
still attempted in replay comes from a client no adapter handles (the standard library's urllib, a
client with its own socket code) or from a non-LLM request: if it goes to a known provider host, or to
a host:port the recordings were made against (a test server, a staging host), it is refused before
anything is sent.

Light on purpose (no pydantic): the recorded hosts are read from the files' raw JSON in a background
thread, so neither start-up nor an event loop waits for them. That thread competes with the tests for
the GIL (reading 2,000 recordings made every cold serve of the first 1,500 calls ~60 µs slower), so what
it finds is kept in the state directory and read back while the cassette directory's mtime is the one it
was listed at: a recording's request host is fixed by its name (the key hashes it), so only adding,
removing or replacing a file changes the hosts, and each of those changes the directory's mtime.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from .coordination.statedir import make_private_dirs
from .safefile import UnsafeFile, read_regular_file

# Modules a connection passes through on its way from the client: the client is the first one
# outside them, counting from the socket outwards.
_PLUMBING = ("socket", "ssl", "selectors", "asyncio", "concurrent", "threading", "http", "email")
_RECORDING_SUFFIX = ".json"
# Bounds on the background read: a hostile or huge directory must not stall a session.
_MAX_FILES = 1_000_000
_MAX_FILE_BYTES = 64 * 1024 * 1024
# The saved host list: its format's version, and a bound on what is read back.
HOSTS_SCHEMA_VERSION = 1
_MAX_SAVED_BYTES = 1 << 20
# A listing counts as the directory's state only once the directory has been quiet this long before it
# (a change within the same clock tick would leave the mtime equal; the miss index waits as long).
_RACY_NS = 2_000_000_000


def _split(netloc: str) -> tuple[str, int | None]:
    host, port = netloc.lower(), None
    if host.startswith("["):  # an IPv6 literal
        end = host.find("]")
        rest = host[end + 1 :]
        host = host[1:end]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        return host, port
    name, sep, tail = host.rpartition(":")
    if sep and tail.isdigit() and ":" not in name:
        return name, int(tail)
    return host, None


def read_recorded_hosts(directory: Path) -> frozenset[tuple[str, int | None]]:
    """(host, port) of every recording's request; unreadable files are skipped (they fail the tests
    that need them elsewhere)."""
    found: set[tuple[str, int | None]] = set()
    try:
        entries = os.scandir(directory)
    except OSError:
        return frozenset()
    with entries:
        for count, entry in enumerate(entries):
            if count >= _MAX_FILES:
                break
            if not entry.name.endswith(_RECORDING_SUFFIX) or entry.name.startswith("."):
                continue
            try:
                if not entry.is_file(follow_symlinks=False) or entry.stat().st_size > _MAX_FILE_BYTES:
                    continue
                with open(entry.path, "rb") as fh:
                    data = json.loads(fh.read())
                # The key's host may be an alias (promptcache_host_aliases); the URL has the real one.
                netlocs = [data["request"]["host"], urlsplit(str(data["meta"]["url"])).netloc]
            except (OSError, ValueError, KeyError, TypeError, RecursionError):
                continue
            found.update(_split(n) for n in netlocs if isinstance(n, str) and n)
    return frozenset(found)


class HostCache:
    """The recorded hosts of one cassette directory, saved in the state directory (never beside the
    cassettes: nothing here is committed). A JSON object checked field by field on reading; anything
    unexpected is ignored and the directory is read again."""

    def __init__(self, directory: Path, state_root: Path) -> None:
        self.directory = directory
        # Named as the settings name it (absolute), as the state directory's own digest does: no syscall.
        self._name = str(directory.absolute())
        digest = hashlib.sha256(self._name.encode()).hexdigest()[:32]
        self.path = state_root / "guard" / f"{digest}.json"

    def hosts(self) -> frozenset[tuple[str, int | None]]:
        """The saved hosts if they are fresh, else the directory read (and saved when it was quiet)."""
        try:
            before = self.directory.stat().st_mtime_ns
        except OSError:
            return frozenset()
        saved = self._load(before)
        if saved is not None:
            return saved
        found = read_recorded_hosts(self.directory)
        try:
            after = self.directory.stat().st_mtime_ns
        except OSError:
            return found
        if after == before and time.time_ns() - before > _RACY_NS:
            self._save(before, found)
        return found

    def _load(self, mtime_ns: int) -> frozenset[tuple[str, int | None]] | None:
        try:
            data = json.loads(read_regular_file(self.path, max_size=_MAX_SAVED_BYTES))
        except (OSError, UnsafeFile, ValueError, RecursionError):
            return None
        if not (
            isinstance(data, dict)
            and data.get("schema_version") == HOSTS_SCHEMA_VERSION
            and data.get("directory") == self._name
            and data.get("directory_mtime_ns") == mtime_ns
            and isinstance(data.get("hosts"), list)
        ):
            return None
        hosts: set[tuple[str, int | None]] = set()
        for item in data["hosts"]:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                return None
            port = item[1]
            if not (port is None or (type(port) is int and 0 < port < 65536)):
                return None
            hosts.add((item[0], port))
        return frozenset(hosts)

    def _save(self, mtime_ns: int, hosts: frozenset[tuple[str, int | None]]) -> None:
        document = {
            "schema_version": HOSTS_SCHEMA_VERSION,
            "directory": self._name,
            "directory_mtime_ns": mtime_ns,
            "hosts": sorted([host, port] for host, port in hosts),
        }
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            make_private_dirs(self.path.parent)
            temp.write_text(json.dumps(document, sort_keys=True), encoding="utf-8")
            os.replace(temp, self.path)
        except OSError:  # a cache: the next session reads the directory again
            temp.unlink(missing_ok=True)


def _default_port(port: int | None) -> tuple[int, ...]:
    return (port,) if port is not None else (80, 443)


class Guard:
    """Decides which connections replay refuses."""

    def __init__(
        self, host_patterns: Iterable[str], cassette_dir: Path, state_root: Path | None = None
    ) -> None:
        self._patterns = tuple(p.strip().lower() for p in host_patterns if p.strip())
        self._cassette_dir = cassette_dir
        self._cache = HostCache(cassette_dir, state_root) if state_root is not None else None
        self._recorded: frozenset[tuple[str, int | None]] | None = None
        self._loader: threading.Thread | None = None
        self._lock = threading.Lock()

    def start_loading(self) -> None:
        """Read the recorded hosts in the background; ``refusal`` uses them once they are read."""
        with self._lock:
            if self._loader is None and self._recorded is None:
                self._loader = threading.Thread(
                    target=self._load, name="promptcache-guard-hosts", daemon=True
                )
                self._loader.start()

    def _load(self) -> None:
        cache = self._cache
        self._recorded = cache.hosts() if cache is not None else read_recorded_hosts(self._cassette_dir)

    def _recorded_hosts(self, may_wait: bool) -> frozenset[tuple[str, int | None]]:
        if self._recorded is not None:
            return self._recorded
        self.start_loading()
        loader = self._loader
        if may_wait and loader is not None:
            loader.join(timeout=30)
        return self._recorded or frozenset()

    def is_provider(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self._patterns)

    def refusal(self, host: str, port: int | None, *, may_wait: bool) -> str | None:
        """Why a connection to ``host:port`` must be refused in replay, or None to let it through.

        ``may_wait`` is False on an event loop: then recorded hosts still being read are not waited for.
        """
        host = host.lower().rstrip(".")
        if self.is_provider(host):
            return f"{host} is an LLM provider (promptcache_guard_hosts)"
        for recorded, recorded_port in self._recorded_hosts(may_wait):
            if recorded == host and (port is None or port in _default_port(recorded_port)):
                where = host if recorded_port is None else f"{host}:{recorded_port}"
                return f"the recordings in {self._cassette_dir} were made against {where}"
        return None


def calling_client() -> str | None:
    """The module that opened the connection, as far as the stack tells: the first frame outside
    the socket plumbing and this package."""
    frame = sys._getframe(1)
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        top = name.split(".", 1)[0]
        if name and top not in _PLUMBING and top != "pytest_promptcache":
            return name
        frame = frame.f_back  # type: ignore[assignment]
    return None


def refusal_message(host: str, port: int | None, reason: str, client: str | None) -> str:
    target = host if port is None else f"{host}:{port}"
    by = f" by {client}" if client else ""
    return (
        f"promptcache: replay refused a connection to {target}{by}: {reason}.\n"
        "  No pytest-promptcache adapter handled this request, so it would have reached the network.\n"
        "  Send LLM calls through a supported client (httpx, httpx2, aiohttp, requests/urllib3, boto3), or\n"
        "  point this client at `promptcache serve`; promptcache_guard = off turns the guard off."
    )
