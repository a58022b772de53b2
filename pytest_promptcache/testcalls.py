"""What the ``promptcache`` fixture gives a test: its own calls so far."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from .ledger import CallEvent, CallRecord
from .prices import money, usd
from .words import plural


@dataclass
class TestCalls:
    """What the ``promptcache`` fixture gives a test: its own calls so far, with usage and cost."""

    __test__ = False

    _events: Callable[[], Iterable[CallEvent]]

    @property
    def calls(self) -> list[CallRecord]:
        return [event.record() for event in self._events()]

    @property
    def input_tokens(self) -> int:
        return sum(c.usage.input_tokens for c in self.calls if c.usage)

    @property
    def output_tokens(self) -> int:
        return sum(c.usage.output_tokens for c in self.calls if c.usage)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_usd(self) -> float:
        """Every call's cost, estimated ones included (``call.usage.source`` tells them apart)."""
        return money(sum((Decimal(str(c.cost_usd)) for c in self.calls if c.cost_usd), Decimal(0)))

    def __repr__(self) -> str:
        # What pytest prints when an assertion on the fixture fails: the figures, not the closure.
        calls = self.calls
        outcomes = Counter(call.outcome.value for call in calls)
        how = f" ({', '.join(f'{n} {outcome}' for outcome, n in outcomes.items())})" if calls else ""
        tokens = f"{self.total_tokens:,} tokens ({self.input_tokens:,} in, {self.output_tokens:,} out)"
        return f"<promptcache: {plural(len(calls), 'LLM call')}{how}, {tokens}, {usd(self.cost_usd)}>"
