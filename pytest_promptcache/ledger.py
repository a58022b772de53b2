"""Call accounting: what each intercepted call was (its outcome), what it used and cost (the sums per
model and per test are ``sums.py``'s).

The engine makes one immutable ``CallEvent`` per call, priced before it is made: live calls at the time
they complete (the budget needs the running total), replayed calls at their recording's ``recorded_at``,
once per recording (a replayed recording of schema 2 carries its price, so that is a lookup).
``CallRecord`` is the same call as reports, the fixture and xdist workers exchange it (pydantic, JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict

from .models import Measured, PriceFacts, RecordedResponse, Recording, TokenUsage
from .pricing import carried_price, recording_price
from .settings import Mode
from .usage import PriceBook, measure

NO_MODEL = "(no model)"
NO_TEST = "(outside tests)"
# How the detail of a live call whose body never completed begins: the report lists those.
NOT_SAVED = "not saved: "
# The detail of a call served from the shared tier and copied into the cassette directory (record modes).
COPIED = "copied from the shared tier into the cassette directory"


class Outcome(StrEnum):
    REPLAYED = "replayed"  # served from a recording
    RECORDED = "recorded"  # went live and was saved
    LIVE = "live"  # went live, not saved (mode off, or the body never completed)
    MISS = "miss"  # replay found no usable recording
    ERROR = "error"  # went live and failed: transport error or a status that is not recorded
    BLOCKED = "blocked"  # would have gone live, but the session's budget was spent
    SHARED_FAILURE = "shared-failure"  # waited for an identical live call, which failed
    REFUSED = "refused"  # replay refused a connection no adapter handled (the socket guard)


# Outcomes that reached the network: they are what a session spent.
LIVE_OUTCOMES = frozenset({Outcome.RECORDED, Outcome.LIVE, Outcome.ERROR})
# Outcomes whose response reached the client as the provider sent it (or as it was recorded).
SERVED_OUTCOMES = frozenset({Outcome.REPLAYED, Outcome.RECORDED, Outcome.LIVE})


class _Facts:
    """What a call's outcome and status say of it: shared by ``CallEvent`` and ``CallRecord``."""

    __slots__ = ()
    if TYPE_CHECKING:
        outcome: Outcome
        status: int | None
        key: str | None
        served_key: str | None

    @property
    def used_key(self) -> str | None:
        """The recording this call used, if any: served (exactly or as a similar match) or saved."""
        if self.outcome is Outcome.REPLAYED:
            return self.served_key or self.key
        if self.outcome is Outcome.RECORDED:
            return self.key
        return None

    @property
    def replayed(self) -> bool:
        return self.outcome is Outcome.REPLAYED

    @property
    def live(self) -> bool:
        return self.outcome in LIVE_OUTCOMES

    @property
    def succeeded(self) -> bool:
        return self.outcome in SERVED_OUTCOMES and (self.status or 200) < 400


@dataclass(frozen=True, slots=True)
class CallEvent(_Facts):
    """One intercepted call, complete when made: nothing changes it afterwards."""

    test: str | None
    mode: Mode
    outcome: Outcome
    url: str
    model: str | None
    key: str | None = None
    status: int | None = None
    detail: str | None = None
    # Similar matching: the recording actually served, and how similar its request was.
    served_key: str | None = None
    similarity: float | None = None
    # A recording older than max-age was served (expiry "warn", or "rerecord" outside record mode).
    stale: bool = False
    # When the served or saved recording was made.
    recorded_at: datetime | None = None
    # None usage: the response carried none (or the call failed); None cost: nobody could price it.
    usage: TokenUsage | None = None
    cost_usd: float | None = None
    cache_saved_usd: float | None = None
    # With a shared tier: where a replayed recording was found (memory, cassettes, shared), and the
    # machine that recorded it (or, for a recorded call, this machine).
    tier: str | None = None
    machine: str | None = None

    def record(self) -> CallRecord:
        # Not validated again: every field is already of its type (this dataclass is typed as the model
        # is, and mypy checks who builds it), and a session that builds none needs no schema (building
        # CallRecord's costs ~40 ms).
        return CallRecord.model_construct(
            test=self.test,
            outcome=self.outcome,
            url=self.url,
            model=self.model,
            key=self.key,
            status=self.status,
            usage=self.usage,
            cost_usd=self.cost_usd,
            cache_saved_usd=self.cache_saved_usd,
            detail=self.detail,
            served_key=self.served_key,
            similarity=self.similarity,
            stale=self.stale,
            recorded_at=self.recorded_at,
            tier=self.tier,
            machine=self.machine,
        )


class CallRecord(_Facts, BaseModel):
    """One intercepted call as reports and the ``promptcache`` fixture see it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    test: str | None
    outcome: Outcome
    url: str
    model: str | None
    key: str | None = None
    status: int | None = None
    usage: TokenUsage | None = None
    cost_usd: float | None = None
    cache_saved_usd: float | None = None
    detail: str | None = None
    served_key: str | None = None
    similarity: float | None = None
    stale: bool = False
    recorded_at: datetime | None = None
    tier: str | None = None
    machine: str | None = None

    @property
    def priced(self) -> bool:
        return self.cost_usd is not None


class Call(Protocol):
    """What reports read of a call: a ``CallEvent`` of this process (a session's end converts none of
    them: building thousands of models there cost more than summing them) or a ``CallRecord`` (an
    xdist worker's, or the fixture's)."""

    @property
    def test(self) -> str | None: ...
    @property
    def outcome(self) -> Outcome: ...
    @property
    def url(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def key(self) -> str | None: ...
    @property
    def status(self) -> int | None: ...
    @property
    def usage(self) -> TokenUsage | None: ...
    @property
    def cost_usd(self) -> float | None: ...
    @property
    def cache_saved_usd(self) -> float | None: ...
    @property
    def detail(self) -> str | None: ...
    @property
    def served_key(self) -> str | None: ...
    @property
    def similarity(self) -> float | None: ...
    @property
    def stale(self) -> bool: ...
    @property
    def recorded_at(self) -> datetime | None: ...
    @property
    def tier(self) -> str | None: ...
    @property
    def machine(self) -> str | None: ...
    @property
    def used_key(self) -> str | None: ...
    @property
    def replayed(self) -> bool: ...
    @property
    def live(self) -> bool: ...
    @property
    def succeeded(self) -> bool: ...


class Ledger:
    """Every call of the session, and the prices that go into them."""

    def __init__(self, prices: PriceBook, on_live_cost: Callable[[float], object] | None = None) -> None:
        self.prices = prices
        self._on_live_cost = on_live_cost
        self._replay_prices: dict[str, Measured] = {}
        # Appended from threads and event loops without a lock: list.append is atomic in CPython, and
        # a lock here could block an event loop (a blocking-call detector fails a contended acquire).
        self.events: list[CallEvent] = []

    def add(self, event: CallEvent) -> None:
        self.events.append(event)
        if event.outcome in LIVE_OUTCOMES and event.cost_usd is not None and self._on_live_cost is not None:
            self._on_live_cost(event.cost_usd)

    def records(self) -> list[CallRecord]:
        return [event.record() for event in list(self.events)]

    def served_by_test(self) -> dict[str, list[str]]:
        """The recordings each test was served, in order, each once (a similar one by its own key)."""
        served: dict[str, dict[str, None]] = {}
        for event in list(self.events):
            key = event.used_key
            if event.outcome is Outcome.REPLAYED and event.test is not None and key is not None:
                served.setdefault(event.test, {})[key] = None
        return {test: list(keys) for test, keys in served.items()}

    # -- prices ------------------------------------------------------------------------------------------

    def live_price(
        self,
        response: RecordedResponse,
        path: str,
        model: str | None,
        url: str,
        *,
        body: Any = None,
        method: str = "POST",
    ) -> Measured:
        """A live call, priced now: prices change over time, and the budget needs the running total."""
        return measure(response, path, model, url, datetime.now(UTC), self.prices, body=body, method=method)

    def replay_price(self, recording: Recording) -> Measured:
        """A replayed recording, priced once, at the time it was recorded (what replaying it saved)."""
        return self.price_replay(PriceFacts.of(recording), lambda: recording)

    def price_replay(self, facts: PriceFacts, recording: Callable[[], Recording]) -> Measured:
        """The same from what the recording says of itself; ``recording`` builds the whole of it, which
        only pricing one that carries no price (or whose model the user prices) needs."""
        price = self._replay_prices.get(facts.key)
        if price is None:
            price = carried_price(facts, self.prices)
            if price is None:
                price = recording_price(recording(), self.prices)
            self._replay_prices[facts.key] = price
        return price
