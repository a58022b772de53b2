"""The connection to the shared tier's Redis: every operation bounded, and the first failure final.

Redis is an aid, never a requirement: when it cannot be reached at start, or an operation fails or takes
longer than ``promptcache_shared_timeout`` mid-run, the link says so once (``notices``) and is down for
the rest of the session; every caller then goes on with the local tiers (memory, cassettes, the state
directory). Coming back halfway would make a session half shared and half not, which nobody can reason
about.

redis-py is imported when the engine is built (the first LLM call), never at start-up.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .sharedconf import SharedConfig

if TYPE_CHECKING:
    import redis

T = TypeVar("T")

# A lock held by a process that died frees itself after this long; a live holder renews it.
LOCK_TTL_MS = 30_000
# Notices a session keeps: the first is the one that matters, the rest are the same story.
MAX_NOTICES = 20

# Renew only our own lock: a lock that expired and was taken by another process is not ours to extend.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class SharedDown(Exception):
    """The shared tier is unavailable for the rest of the session; use the local tiers."""


class RedisLink:
    """One Redis client for the session's threads (redis-py's pool is thread-safe)."""

    def __init__(self, config: SharedConfig, lock_ttl_ms: int = LOCK_TTL_MS) -> None:
        self.config = config
        self.lock_ttl_ms = lock_ttl_ms
        # Renewed three times per expiry: two renewals may fail to arrive before the lock is lost.
        self._renew_every = lock_ttl_ms / 1000 / 3
        self.notices: list[str] = []
        self.token_base = f"{config.machine} {os.getpid()}"
        self._down = False
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._renewing: dict[str, str] = {}
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()
        self._scripts: dict[str, Any] = {}

    @property
    def up(self) -> bool:
        return not self._down

    def key(self, *parts: str) -> str:
        return ":".join((self.config.prefix, *parts))

    def notice(self, text: str) -> None:
        with self._lock:
            if len(self.notices) < MAX_NOTICES:
                self.notices.append(self.config.redact(text))

    def _connect(self) -> redis.Redis:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        timeout = self.config.timeout
        return redis.Redis.from_url(
            self.config.url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # redis-py retries a failed command three times with backoff by default: that would wait
            # several timeouts on a Redis that is gone. One attempt, then the local tiers.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            client_name=f"pytest-promptcache {self.config.machine}"[:64].replace(" ", "_"),
        )

    def start(self) -> bool:
        """Connect and ping, within the timeout even if resolving the host hangs (a socket timeout
        does not bound the name lookup, so the first connection is made in a thread). False: down."""
        outcome: list[BaseException | None] = []

        def ping() -> None:
            try:
                client = self._connect()
                client.ping()
                self._client = client
                outcome.append(None)
            except Exception as exc:
                outcome.append(exc)

        thread = threading.Thread(target=ping, name="promptcache-redis-connect", daemon=True)
        thread.start()
        thread.join(self.config.timeout + 0.5)
        if not outcome:
            self._fail("connecting", TimeoutError(f"no answer within {self.config.timeout:g} s"))
            return False
        if outcome[0] is not None:
            self._fail("connecting", outcome[0])
            return False
        return True

    def call(self, what: str, operation: Callable[[redis.Redis], T]) -> T:
        """Run one operation; any failure marks the link down (one notice) and raises SharedDown."""
        client = self._client
        if self._down or client is None:
            raise SharedDown(what)
        try:
            return operation(client)
        except Exception as exc:
            self._fail(what, exc)
            raise SharedDown(what) from None

    def run_script(self, what: str, source: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script (sent by its SHA; redis-py loads it on first use) as one ``call``."""

        def run(client: redis.Redis) -> Any:
            script = self._scripts.get(source)
            if script is None:
                script = self._scripts[source] = client.register_script(source)
            return script(keys=keys, args=args, client=client)

        return self.call(what, run)

    def _fail(self, what: str, exc: BaseException) -> None:
        with self._lock:
            first = not self._down
            self._down = True
        if first:
            detail = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
            self.notice(
                f"promptcache: the shared tier {self.config.display} is unavailable ({what}: {detail}); "
                "this session goes on with the memory tier and the cassette directory alone"
            )

    # -- lock renewal: a long stream being recorded keeps its key locked -----------------------------------

    def new_token(self) -> str:
        return f"{self.token_base} {uuid.uuid4().hex}"

    def keep_alive(self, lock_key: str, token: str) -> None:
        with self._lock:
            self._renewing[lock_key] = token
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_loop, name="promptcache-redis-renew")
                self._renewer.daemon = True
                self._renewer.start()

    def let_go(self, lock_key: str) -> None:
        with self._lock:
            self._renewing.pop(lock_key, None)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._renew_every):
            with self._lock:
                held = list(self._renewing.items())
            for lock_key, token in held:
                try:
                    self.run_script("renewing a lock", _RENEW, [lock_key], [token, self.lock_ttl_ms])
                except SharedDown:
                    return

    def close(self) -> None:
        self._stop.set()
        renewer = self._renewer
        if renewer is not None:
            renewer.join(self.config.timeout * 2)
        client, self._client = self._client, None
        if client is not None:
            # Closing a pool whose server is gone: nothing left to do.
            with contextlib.suppress(Exception):
                client.close()
