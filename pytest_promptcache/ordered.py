"""A test's ordered scope: recordings that belong to the test, the N-th identical request answered by
the N-th of them.

Session scope (the default) keys a request by what it is, so every test that sends it is served the same
recording: one request, one answer. Suites written for vcrpy expect more: a request their test sends
three times (polling) gets three answers in order, and two tests may get two answers to the same
request. An ordered scope adds to the key where the request was sent (``names``: the test's node id, or
its vcr cassettes' paths) and which time (the request's index among the identical ones sent there).

A ``Player`` (a vcr cassette, ``compat_vcr``) may stand in front of the recordings: its interactions are
served as vcr serves them, each once, in recorded order.

Light on purpose (no pydantic): the session imports this at start-up.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .choices import Drift

if TYPE_CHECKING:
    from .keys import RawRequest
    from .models import Recording
    from .streams import Replay


@dataclass(frozen=True)
class Played:
    """An interaction a player served: as a recording, the request it was recorded for, and where."""

    # Priced and made ready to serve by the engine, which owns the prices.
    recording: Recording
    # The request as the cassette holds it, for the drift check.
    recorded: RawRequest
    # "tests/cassettes/test_x/test_y.yaml, interaction 2 of 3"
    where: str


class Player(Protocol):
    """Interactions served before any recording, matched and used up as their tool does it."""

    def handles(self, host: str, path: str) -> bool:
        """Whether a request to ``host`` (no port) and ``path`` may be one of the interactions, LLM
        endpoint or not: the adapters then route it to the engine."""
        ...

    def prepare(self, raw: RawRequest) -> RawRequest | None:
        """The request as it is keyed (vcr's request filters applied, as they were when the cassette
        was recorded); None when the player's tool would leave it alone (vcr's ignore_hosts)."""
        ...

    def play(self, raw: RawRequest) -> Played | None:
        """The first unplayed interaction that matches, now played; None if there is none."""
        ...

    def made(self, raw: RawRequest) -> Callable[[Replay], None]:
        """A call the player did not answer (a recording or the network did): listed after its own
        interactions, as vcr lists what it records; the returned function fills in its response."""
        ...

    def explain(self, raw: RawRequest) -> list[str]:
        """Lines for a miss message: why no interaction matched."""
        ...


@dataclass
class OrderedScope:
    """One test's ordered scope. Recordings are looked up under each name in turn, saved under the
    first; ``player`` is asked after the scoped recordings and before the session's."""

    names: tuple[str, ...]
    player: Player | None = None
    drift: Drift = Drift.WARN
    # A count per (name, key): next() on an itertools.count is atomic, so threads and an event loop
    # share it without a lock (a lock could block the loop).
    _counts: dict[tuple[str, str], itertools.count[int]] = field(default_factory=dict, repr=False)

    def index(self, name: str, key: str) -> int:
        """This request's occurrence under ``name``: 0 the first time it is sent in this test."""
        counter = self._counts.get((name, key))
        if counter is None:
            counter = self._counts.setdefault((name, key), itertools.count())
        return next(counter)


@dataclass(slots=True)  # one per intercepted call: slots make it cheap to build
class Turn:
    """One call's place in its test's ordered scope, decided once however often the adapter asks the
    engine (it asks again after waiting for an identical call in flight)."""

    decided: bool = False
    # The request as keyed: the player's filters applied.
    keyed: RawRequest | None = None
    # (name, index) for each of the scope's names.
    slots: tuple[tuple[str, int], ...] = ()
    player: Player | None = None
    asked_player: bool = False
    played: Played | None = None
