"""Sums over calls: a ``Bucket`` per model, per test and for the session (tokens, dollars spent and
saved, estimates apart), and the money arithmetic they share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .ledger import NO_MODEL, NO_TEST, Call, Outcome
from .models import TokenUsage
from .prices import money


def add_usd(total: float, amount: float) -> float:
    # Decimal sums: adding a thousand floats of 1e-6 must print the same as the per-test figures.
    return money(Decimal(str(total)) + Decimal(str(amount)))


class Estimated(BaseModel):
    """Calls whose response carried no usage, their tokens counted by a tokenizer: totalled apart
    from the provider-reported figures, which they would otherwise pass for."""

    model_config = ConfigDict(defer_build=True)

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

    model_config = ConfigDict(defer_build=True)

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

    def add(self, call: Call) -> None:
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
        # Decimal sums, made floats once: converting a float total back to Decimal for every call
        # (add_usd) was the largest part of summing a few thousand calls. Rounded as add_usd rounds.
        self.spent_usd = self.saved_usd = self.cache_saved_usd = Decimal(0)
        # A model, but only estimated calls (few) are added to it. Built, not validated: a session that
        # writes no JSON report never builds these models' schemas (``defer_build``).
        self.estimated = Estimated.model_construct()

    def bucket(self) -> Bucket:
        return Bucket.model_construct(
            **{name: _plain(getattr(self, name)) for name in self.__slots__},
        )


def _plain(value: Any) -> Any:
    return money(value) if isinstance(value, Decimal) else value


# Each amount as the Decimal its repr reads as: a suite's calls cost a few distinct amounts (a recording
# replayed twice costs the same twice), and converting was a third of summing a call.
_decimals: dict[float, Decimal] = {}
MAX_DECIMALS = 4096


def _decimal(amount: float) -> Decimal:
    found = _decimals.get(amount)
    if found is None:
        if len(_decimals) >= MAX_DECIMALS:
            _decimals.clear()
        found = _decimals[amount] = Decimal(repr(amount))
    return found


def _add_money(into: Bucket | _Tally | Estimated, name: str, amount: float) -> None:
    total = getattr(into, name)
    if isinstance(total, Decimal):
        setattr(into, name, round(total + _decimal(amount), 10))
    else:
        setattr(into, name, add_usd(total, amount))


def _tally(self: Bucket | _Tally, call: Call) -> None:
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
            _add_money(self, "cache_saved_usd", call.cache_saved_usd)


def _merge(into: _Tally, other: _Tally) -> None:
    """Add ``other``'s sums to ``into``'s, money rounded as ``_add_money`` rounds it."""
    for name in _Tally.__slots__:
        if name != "estimated":
            total = getattr(into, name) + getattr(other, name)
            setattr(into, name, round(total, 10) if isinstance(total, Decimal) else total)
    est, more = into.estimated, other.estimated
    if more.calls:  # most pairs have no estimated call: no model's attributes set for them
        for name, value in more:
            total = getattr(est, name)
            setattr(est, name, add_usd(total, value) if isinstance(value, float) else total + value)


def _tally_estimated(est: Estimated, call: Call, usage: TokenUsage) -> None:
    est.calls += 1
    est.input_tokens += usage.input_tokens
    est.output_tokens += usage.output_tokens
    _tally_cost(est, call)


def _tally_cost(into: Bucket | _Tally | Estimated, call: Call) -> None:
    """A call's cost: saved when replayed, spent when live, or counted as unpriced."""
    if call.cost_usd is None:
        into.unpriced_calls += 1
    else:
        _add_money(into, "saved_usd" if call.replayed else "spent_usd", call.cost_usd)


@dataclass
class Buckets:
    totals: Bucket
    by_model: dict[str, Bucket]
    by_test: dict[str, Bucket]


def total(calls: Iterable[Call]) -> Bucket:
    """The sums of ``calls`` in one bucket (summed plainly, as ``summarize`` sums)."""
    tally = _Tally()
    for call in calls:
        _tally(tally, call)
    return tally.bucket()


def summarize(calls: Iterable[Call]) -> Buckets:
    # Each call counted once, into its (model, test) pair, and the pairs summed into the session's, the
    # models' and the tests' buckets: a third of the work of counting each call into all three (4,000
    # calls: 20 -> 7 ms). The same sums: dollars are on the 1e-10 grid (``money``), so their Decimal sums
    # are exact in any order (off it, in a hand-edited file, only an exact tie at the 11th decimal place
    # could round otherwise, by 1e-10).
    pairs: dict[tuple[str, str], _Tally] = {}
    for call in calls:
        pair = (call.model or NO_MODEL, call.test or NO_TEST)
        tally = pairs.get(pair)
        if tally is None:
            tally = pairs[pair] = _Tally()
        _tally(tally, call)
    totals = _Tally()
    by_model: dict[str, _Tally] = {}
    by_test: dict[str, _Tally] = {}
    for (model, test), tally in pairs.items():
        _merge(totals, tally)
        _merge(by_model.setdefault(model, _Tally()), tally)
        _merge(by_test.setdefault(test, _Tally()), tally)
    return Buckets(
        totals.bucket(),
        {name: tally.bucket() for name, tally in sorted(by_model.items())},
        {name: tally.bucket() for name, tally in sorted(by_test.items())},
    )
