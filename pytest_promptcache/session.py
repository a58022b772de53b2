"""The session as the pytest layer drives it: settings, which test is running, and the engine, built on
the first intercepted LLM call. It is what the client adapters route LLM calls to.

Light on purpose: it imports neither pydantic nor httpx (the engine is imported when first needed), so a
suite that never calls an LLM pays almost nothing for having the plugin installed.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .context import TestContext
from .coordination.statedir import state_dirs
from .guard import Guard, calling_client, refusal_message
from .ordered import OrderedScope
from .rules import KeyRules
from .settings import Mode, Settings

if TYPE_CHECKING:
    from .engine import Engine
    from .ledger import CallEvent

# The names a client of a proxy on 127.0.0.1 may use for it.
_LOOPBACK = frozenset({"127.0.0.1", "localhost"})


class CacheSession:
    """One pytest session's (or one script's) record/replay state."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.default_rules = KeyRules.build(settings.ignore_fields, settings.normalize)
        self._lock = threading.Lock()
        # Threads a test starts must see the test's context, so this is one shared slot, not a contextvar.
        self._context = TestContext(nodeid=None, mode=settings.mode)
        self._engine: Engine | None = None
        self.guard: Guard | None = None
        if settings.guard:
            state_root = state_dirs(settings.cassette_dir, settings.state_dir)[1]
            self.guard = Guard(settings.guard_hosts, settings.cassette_dir, state_root)
        # Connections the guard refused: calls no adapter saw, so no engine counted them.
        self.refusals: list[CallEvent] = []
        # Proxies this process runs (``promptcache serve``, the promptcache_proxy fixture): their port, and
        # the paths they serve. A request to one goes over the socket, to be keyed as sent upstream;
        # intercepted here, it would be keyed by the proxy's port, which changes every run.
        self._proxy_ports: frozenset[int] = frozenset()
        self._proxy_paths: tuple[str, ...] = ()

    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            with self._lock:
                if self._engine is None:
                    from .engine import Engine

                    self._engine = Engine(
                        self.settings, env=self.env, rules=self.default_rules, context=self._current
                    )
                engine = self._engine
        return engine

    def preload(self, tests: Iterable[str]) -> int:
        """Before the first test: what ``tests`` served when they last ran, into the memory tier
        (``CassetteStore.preload``). The engine is built for it only where the state directory keeps
        served forms and an LLM SDK is imported (pydantic is): otherwise the first call builds it, or
        none does. Not with a shared tier, whose report says which tier served each first call."""
        settings = self.settings
        if settings.mode not in (Mode.REPLAY, Mode.RECORD) or settings.shared is not None:
            return 0
        if "pydantic" not in sys.modules:
            return 0
        from .store.served_cache import pack_path

        root = state_dirs(settings.cassette_dir, settings.state_dir)[1]
        if not pack_path(root, settings.cassette_dir).is_file():
            return 0
        engine = self.engine()
        # Named as call events name them: with the secrets the engine knows of hidden.
        return engine.store.preload(engine.scrubber.text(test) for test in tests)

    def close(self) -> None:
        """Let go of what the engine holds beyond the session (the shared tier's connections)."""
        if self._engine is not None:
            self._engine.close()

    @property
    def started_engine(self) -> Engine | None:
        """The engine if any LLM call built it; None for a session that made none."""
        return self._engine

    def handles(self, host: str, path: str) -> bool:
        if self._proxy_paths and host.lower() in _LOOPBACK and path.startswith(self._proxy_paths):
            return False
        if self.settings.is_llm_endpoint(host.lower(), path):
            return True
        # A vcr cassette also answers what is not an LLM call (downloads the test needs).
        scope = self._context.scope
        return scope is not None and scope.player is not None and scope.player.handles(host.lower(), path)

    def add_proxy(self, port: int, paths: Iterable[str]) -> None:
        """A proxy of this process listens on 127.0.0.1:``port``, under ``paths`` (``/openai/``)."""
        with self._lock:
            self._proxy_ports = self._proxy_ports | {port}
            self._proxy_paths = tuple(dict.fromkeys((*self._proxy_paths, *paths)))

    def remove_proxy(self, port: int) -> None:
        with self._lock:
            self._proxy_ports = self._proxy_ports - {port}
            if not self._proxy_ports:
                self._proxy_paths = ()

    def refuse_connection(self, host: str, port: int | None, *, may_wait: bool) -> str | None:
        """In replay, the message a connection no adapter handled is refused with, or None: the test
        fails with it, and the report counts it."""
        ctx = self._context
        if self.guard is None or ctx.mode is not Mode.REPLAY:
            return None
        if port in self._proxy_ports and host.lower() in _LOOPBACK:
            return None  # our own proxy: it never lets a replayed call through to the network
        reason = self.guard.refusal(host, port, may_wait=may_wait)
        if reason is None:
            return None
        message = refusal_message(host, port, reason, calling_client())
        from .ledger import CallEvent, Outcome  # pydantic: only once something is refused

        target = host if port is None else f"{host}:{port}"
        event = CallEvent(
            test=ctx.nodeid, mode=ctx.mode, outcome=Outcome.REFUSED, url=target, model=None, detail=message
        )
        ctx.add_problem(message)
        ctx.add_call(event)
        self.refusals.append(event)
        return message

    # -- test lifecycle ---------------------------------------------------------------------------------

    def begin_test(
        self,
        nodeid: str,
        mode: Mode | None = None,
        target: str | None = None,
        rules: KeyRules | None = None,
        test_scope: bool | None = None,
    ) -> TestContext:
        """``test_scope``: the test gets recordings of its own, in order; None: as the settings say."""
        ordered = self.settings.test_scope if test_scope is None else test_scope
        self._context = TestContext(
            nodeid=nodeid,
            mode=mode or self.settings.mode,
            target=target or nodeid,
            rules=rules,
            scope=OrderedScope(names=(nodeid,)) if ordered else None,
        )
        return self._context

    def end_test(self) -> None:
        self._context = TestContext(nodeid=None, mode=self.settings.mode)

    @property
    def context(self) -> TestContext:
        return self._context

    def _current(self) -> TestContext:
        return self._context
