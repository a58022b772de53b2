"""The running test as the engine sees it: its node id, mode, key rules, its ordered scope if it has
one, the calls it made, the problems (misses, unusable recordings) that must fail it and the warnings
it must show."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .ordered import OrderedScope
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
    # Recordings of this test's own, in order (``promptcache_scope = test``, a vcr cassette); None: the
    # session's, one answer per request.
    scope: OrderedScope | None = None
    # Threads and tasks the test starts share its context. No lock: list.append and rebinding an
    # attribute are atomic in CPython, and a lock could block an event loop the calls come from.
    calls: list[CallEvent] = field(default_factory=list)
    _problems: list[str] = field(default_factory=list)
    _warnings: list[str] = field(default_factory=list)
    # The ids as pytest gave them; ``nodeid`` and ``target`` become these with secrets hidden.
    _given: tuple[str | None, str | None] = field(init=False, repr=False)
    _hidden_at: int = field(default=-1, init=False, repr=False)

    def __post_init__(self) -> None:
        self._given = (self.nodeid, self.target)

    def hide_secrets(self, scrub: Callable[[str], str], generation: int) -> None:
        """Hide secrets in the ids before anything records or prints them: a parametrize id can hold
        a key (``parametrize("key", [os.environ["OPENAI_API_KEY"]])``). Again whenever ``generation``
        says the scrubber learned a credential since."""
        if generation == self._hidden_at:
            return
        nodeid, target = self._given
        self.nodeid = scrub(nodeid) if nodeid else nodeid
        if target and scrub(target) != target:
            # A command that names a redacted id would run nothing: run the whole parametrized test, or
            # its file, whichever can be named without the secret.
            cleaner = (target.split("[", 1)[0], target.split("::", 1)[0])
            target = next((t for t in cleaner if scrub(t) == t), None)
        self.target = target
        self._hidden_at = generation

    def add_call(self, event: CallEvent) -> None:
        self.calls.append(event)

    def add_problem(self, message: str) -> None:
        self._problems.append(message)

    def add_warning(self, message: str) -> None:
        self._warnings.append(message)

    def take_warnings(self) -> list[str]:
        """The test's warnings, each once."""
        warnings, self._warnings = self._warnings, []
        return list(dict.fromkeys(warnings))

    def take_problems(self) -> list[str]:
        """The test's problems, each once: a client that retries repeats the same one."""
        problems, self._problems = self._problems, []
        return list(dict.fromkeys(problems))
