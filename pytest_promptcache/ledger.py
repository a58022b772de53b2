"""Call accounting: what each intercepted call was (its outcome), what it used and cost, and the sums
per model and per test.

The engine makes one immutable ``CallEvent`` per call, priced before it is made: live calls at the time
they complete (the budget needs the running total), replayed calls at their recording's ``recorded_at``,
once per recording (a replayed recording of schema 2 carries its price, so that is a lookup).
``CallRecord`` is the same call as reports, the fixture and xdist workers exchange it (pydantic, JSON).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .models import Measured, PriceFacts, RecordedResponse, Recording, TokenUsage
from .prices import money
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


@dataclass(frozen=True, slots=True)
class CallEvent:
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
        # is, and mypy checks who builds it), and a session's end builds one per call.
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


class CallRecord(BaseModel):
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

    @property
    def priced(self) -> bool:
        return self.cost_usd is not None


def add_usd(total: float, amount: float) -> float:
    # Decimal sums: adding a thousand floats of 1e-6 must print the same as the per-test figures.
    return money(Decimal(str(total)) + Decimal(str(amount)))


class Estimated(BaseModel):
    """Calls whose response carried no usage, their tokens counted by a tokenizer: totalled apart
    from the provider-reported figures, which they would otherwise pass for."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    spent_usd: float = 0.0
    saved_usd: float = 0.0
    unpriced_calls: int = 0

    @property
    def cost_usd(self) -> float:
        return add_usd(self.spent_usd, self.saved_usd)


class Bucket(BaseModel):
    """Sums over a set of calls: a model's, a test's, or the session's.

    Token and dollar fields hold what providers reported; ``estimated`` what was counted for calls
    whose response carried no usage; ``free_calls`` the calls to endpoints that bill nothing.
    ``calls_without_usage`` counts the successful calls that have neither usage nor an estimate."""

    calls: int = 0
    replayed: int = 0
    live: int = 0
    recorded: int = 0
    misses: int = 0
    refused: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    spent_usd: float = 0.0
    saved_usd: float = 0.0
    calls_without_usage: int = 0
    unpriced_calls: int = 0
    free_calls: int = 0
    # What the providers' prompt caches saved against uncached prices, on the priced calls.
    cache_saved_usd: float = 0.0
    estimated: Estimated = Field(default_factory=Estimated)

    def add(self, call: CallRecord) -> None:
        _tally(self, call)

    @property
    def cost_usd(self) -> float:
        """Live and replayed, as the providers reported."""
        return self.spent_usd + self.saved_usd

    @property
    def total_cost_usd(self) -> float:
        """Every call's cost, estimates included: what the suite's calls cost when made."""
        return add_usd(add_usd(self.spent_usd, self.saved_usd), self.estimated.cost_usd)

    @property
    def all_input_tokens(self) -> int:
        return self.input_tokens + self.estimated.input_tokens

    @property
    def cache_share_text(self) -> str:
        share = self.cache_share
        return "<1%" if 0 < share < 0.01 else f"{share:.0%}"

    @property
    def cache_share(self) -> float:
        """The share of reported input tokens the provider served from its cache."""
        return self.cached_input_tokens / self.input_tokens if self.input_tokens else 0.0


class _Tally:
    """A Bucket's sums as plain attributes: a pydantic model's ``__setattr__`` made summing a few
    thousand calls (three buckets each) the largest part of a session's end."""

    # Bucket's fields (tests/unit/test_summarize.py holds them equal).
    __slots__ = (
        "cache_saved_usd",
        "cache_write_tokens",
        "cached_input_tokens",
        "calls",
        "calls_without_usage",
        "errors",
        "estimated",
        "free_calls",
        "input_tokens",
        "live",
        "misses",
        "output_tokens",
        "recorded",
        "refused",
        "replayed",
        "saved_usd",
        "spent_usd",
        "unpriced_calls",
    )

    def __init__(self) -> None:
        self.calls = self.replayed = self.live = self.recorded = self.misses = self.refused = 0
        self.errors = self.input_tokens = self.cached_input_tokens = self.cache_write_tokens = 0
        self.output_tokens = self.calls_without_usage = self.unpriced_calls = self.free_calls = 0
        self.spent_usd = self.saved_usd = self.cache_saved_usd = 0.0
        # A model, but only estimated calls (few) are added to it.
        self.estimated = Estimated()

    def bucket(self) -> Bucket:
        return Bucket(**{name: getattr(self, name) for name in self.__slots__})


def _tally(self: Bucket | _Tally, call: CallRecord) -> None:
    """Count ``call`` into a bucket's sums (a Bucket, or the plain _Tally summarize uses)."""
    self.calls += 1
    if call.replayed:
        self.replayed += 1
    elif call.live:
        self.live += 1
        self.recorded += call.outcome is Outcome.RECORDED
        self.errors += call.outcome is Outcome.ERROR
    elif call.outcome is Outcome.REFUSED:
        self.refused += 1
    else:  # a miss, or a call the budget refused: neither served nor sent
        self.misses += 1
    if not call.succeeded:
        return
    usage = call.usage
    if usage is None:
        self.calls_without_usage += 1
    elif usage.free:
        self.free_calls += 1
    elif usage.estimated:
        _tally_estimated(self.estimated, call, usage)
    else:
        self.input_tokens += usage.input_tokens
        self.cached_input_tokens += usage.cached_input_tokens
        self.cache_write_tokens += usage.cache_write_tokens
        self.output_tokens += usage.output_tokens
        _tally_cost(self, call)
        if call.cache_saved_usd:
            self.cache_saved_usd = add_usd(self.cache_saved_usd, call.cache_saved_usd)


def _tally_estimated(est: Estimated, call: CallRecord, usage: TokenUsage) -> None:
    est.calls += 1
    est.input_tokens += usage.input_tokens
    est.output_tokens += usage.output_tokens
    _tally_cost(est, call)


def _tally_cost(into: Bucket | _Tally | Estimated, call: CallRecord) -> None:
    """A call's cost: saved when replayed, spent when live, or counted as unpriced."""
    if call.cost_usd is None:
        into.unpriced_calls += 1
    elif call.replayed:
        into.saved_usd = add_usd(into.saved_usd, call.cost_usd)
    else:
        into.spent_usd = add_usd(into.spent_usd, call.cost_usd)


@dataclass
class Buckets:
    totals: Bucket
    by_model: dict[str, Bucket]
    by_test: dict[str, Bucket]


def total(calls: Iterable[CallRecord]) -> Bucket:
    """The sums of ``calls`` in one bucket (summed plainly, as ``summarize`` sums)."""
    tally = _Tally()
    for call in calls:
        _tally(tally, call)
    return tally.bucket()


def summarize(calls: Iterable[CallRecord]) -> Buckets:
    totals = _Tally()
    by_model: dict[str, _Tally] = {}
    by_test: dict[str, _Tally] = {}
    for call in calls:
        _tally(totals, call)
        for groups, name in ((by_model, call.model or NO_MODEL), (by_test, call.test or NO_TEST)):
            tally = groups.get(name)
            if tally is None:
                tally = groups[name] = _Tally()
            _tally(tally, call)
    return Buckets(
        totals.bucket(),
        {name: tally.bucket() for name, tally in sorted(by_model.items())},
        {name: tally.bucket() for name, tally in sorted(by_test.items())},
    )


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
