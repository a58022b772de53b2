"""The running test as the engine sees it: its node id, mode, key rules, the calls it made and the
problems (misses, unusable recordings) that must fail it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .rules import KeyRules
from .settings import Mode

if TYPE_CHECKING:
    # Only a type here: the ledger imports pydantic, which start-up must not pay for.
    from .ledger import CallEvent


@dataclass
class TestContext:
    __test__ = False  # not a test class, whatever pytest's collector thinks of the name

    nodeid: str | None
    mode: Mode
    # The test as the user would name it on the command line, from where they ran pytest.
    target: str | None = None
    rules: KeyRules | None = None
    # Threads and tasks the test starts share its context. No lock: list.append and rebinding an
    # attribute are atomic in CPython, and a lock could block an event loop the calls come from.
    calls: list[CallEvent] = field(default_factory=list)
    _problems: list[str] = field(default_factory=list)

    def add_call(self, event: CallEvent) -> None:
        self.calls.append(event)

    def add_problem(self, message: str) -> None:
        self._problems.append(message)

    def take_problems(self) -> list[str]:
        """The test's problems, each once: a client that retries repeats the same one."""
        problems, self._problems = self._problems, []
        return list(dict.fromkeys(problems))
