"""The session as the pytest layer drives it: settings, which test is running, and the engine, built on
the first intercepted LLM call.

Light on purpose: it imports neither pydantic nor httpx, so a suite that never calls an LLM pays almost
nothing for having the plugin installed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .rules import KeyRules
from .settings import Mode, Settings

if TYPE_CHECKING:
    from .engine import CallEvent, Engine


@dataclass
class TestContext:
    __test__ = False  # not a test class, whatever pytest's collector thinks of the name

    nodeid: str | None
    mode: Mode
    # The test as the user would name it on the command line, from where they ran pytest.
    target: str | None = None
    rules: KeyRules | None = None
    problems: list[str] = field(default_factory=list)
    calls: list[CallEvent] = field(default_factory=list)


class Session:
    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.default_rules = KeyRules.build(settings.ignore_fields, settings.normalize)
        self._lock = threading.Lock()
        # Threads a test starts must see the test's context, so this is one shared slot, not a contextvar.
        self._context = TestContext(nodeid=None, mode=settings.mode)
        self._engine: Engine | None = None

    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            with self._lock:
                if self._engine is None:
                    from .engine import Engine

                    self._engine = Engine(self.settings, session=self)
                engine = self._engine
        return engine

    @property
    def started_engine(self) -> Engine | None:
        """The engine if any LLM call built it; None for a session that made none."""
        return self._engine

    def handles(self, host: str, path: str) -> bool:
        return self.settings.is_llm_endpoint(host.lower(), path)

    # -- test lifecycle ---------------------------------------------------------------------------------

    def begin_test(
        self, nodeid: str, mode: Mode | None = None, target: str | None = None, rules: KeyRules | None = None
    ) -> TestContext:
        self._context = TestContext(
            nodeid=nodeid, mode=mode or self.settings.mode, target=target or nodeid, rules=rules
        )
        return self._context

    def end_test(self) -> None:
        self._context = TestContext(nodeid=None, mode=self.settings.mode)

    @property
    def context(self) -> TestContext:
        return self._context

    def problem(self, ctx: TestContext, message: str) -> None:
        with self._lock:
            ctx.problems.append(message)

    def take_problems(self) -> list[str]:
        ctx = self._context
        with self._lock:
            problems, ctx.problems[:] = list(ctx.problems), []
        return problems
