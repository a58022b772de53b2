"""A real redis-server (Debian's package) for the shared-tier tests: started on loopback on a free port,
in a temp directory, with persistence off, and stopped afterwards. ``stop`` and ``start`` again on the
same port simulate a Redis lost and back mid-run.

The tests that need it fail, never skip, when redis-server is missing: CI installs it (.ci/run), and a
skipped fleet suite would look like a passing one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

INSTALL_HINT = "redis-server is not installed: apt-get install -y redis-server (.ci/run installs it)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    def __init__(self, password: str | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail(INSTALL_HINT, pytrace=False)
        self.executable = executable
        self.password = password
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="promptcache-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        # No retries: a test that stops the server must not wait out redis-py's backoff.
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=5,
            retry=Retry(NoBackoff(), 0),
        )

    def shutdown(self) -> None:
        """Stop a server this object did not start (one a test restarted as a daemon)."""
        self.client().shutdown(nosave=True)

    def start(self) -> None:
        args = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir.name,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        for _attempt in range(5):
            self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._ready():
                return
            # Most likely another process took the port between choosing and binding it.
            self._proc.kill()
            self._proc.wait()
            self.port = _free_port()
            args[2] = str(self.port)
        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self.port}")

    def _ready(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            try:
                if self.client().ping():
                    return True
            except redis.RedisError:
                time.sleep(0.01)
        return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # Nothing to save (persistence is off): a kill is a stop, and it never waits.
            proc.kill()
            proc.wait()
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def keys(self, pattern: str = "*") -> list[str]:
        return sorted(k.decode() if isinstance(k, bytes) else k for k in self.client().keys(pattern))


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_server(module_redis: RedisServer) -> RedisServer:
    """One server per test module, emptied for each test."""
    module_redis.client().flushall()
    return module_redis


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of the test's own, for tests that stop and restart it."""
    with RedisServer() as server:
        yield server


def checkout(root: Path, name: str, ini: str) -> Path:
    """A checkout of a user's project: its own rootdir, cassettes and state directory."""
    path = root / name
    path.mkdir()
    (path / "pytest.ini").write_text(f"[pytest]\npromptcache_state_dir = state\n{ini}")
    return path
