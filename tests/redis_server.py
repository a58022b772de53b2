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
    def __init__(self, password: str | None = None, *, tls: bool = False) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail(INSTALL_HINT, pytrace=False)
        self.executable = executable
        self.password = password
        self.tls = tls
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="promptcache-redis-")
        self._proc: subprocess.Popen[bytes] | None = None
        self.cert = Path(self._dir.name) / "cert.pem"
        if tls:
            self._make_certificate()

    def _make_certificate(self) -> None:
        """A self-signed certificate for 127.0.0.1 (the openssl command: Debian's base system has it)."""
        key = Path(self._dir.name) / "key.pem"
        subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                *subject,
                "-keyout",
                str(key),
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.cert}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        # No retries: a test that stops the server must not wait out redis-py's backoff.
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=5,
            retry=Retry(NoBackoff(), 0),
            ssl=self.tls,
            ssl_ca_certs=str(self.cert) if self.tls else None,
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
        if self.tls:
            key = str(Path(self._dir.name) / "key.pem")
            args[1:3] = ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", str(self.cert), "--tls-key-file", key, "--tls-auth-clients", "no"]
        for _attempt in range(5):
            self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._ready():
                return
            # Most likely another process took the port between choosing and binding it.
            self._proc.kill()
            self._proc.wait()
            self.port = _free_port()
            args[args.index("--tls-port" if self.tls else "--port") + 1] = str(self.port)
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
