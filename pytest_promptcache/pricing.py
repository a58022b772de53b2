"""A recording's price: what it carries, or what its response measures at its ``recorded_at``."""

from __future__ import annotations

from .models import Measured, PriceFacts, Recording
from .usage import PriceBook, measure


def carried_price(facts: PriceFacts, prices: PriceBook) -> Measured | None:
    """The usage and cost a recording carries (schema 2 with usage), unless the user set their own price
    for its model; None when it must be measured from its response."""
    # A schema 2 file without usage either had none to carry (measuring finds none again, or counts an
    # estimate) or was not written by a recording run (by hand, or built in code): its response is then
    # the only truth.
    usage = facts.usage
    if usage is None or not _carries(facts, prices):
        return None
    if facts.cost_usd is None:
        return Measured(usage)
    saved = facts.cache_saved_usd
    if saved is None:
        # Written before cache savings were kept: only a call that used the cache needs them measured.
        if usage.cached_input_tokens or usage.cache_write_tokens:
            return None
        saved = 0.0
    return Measured(usage, facts.cost_usd, saved)


def recording_price(recording: Recording, prices: PriceBook) -> Measured:
    """Usage and cost of a recording at its ``recorded_at``: the figures it carries (schema 2 with usage),
    unless the user set their own price for its model, else measured from its response."""
    facts = PriceFacts.of(recording)
    carried = carried_price(facts, prices)
    if carried is not None:
        return carried
    request, meta = recording.request, recording.meta
    measured = measure(
        recording.response,
        request.path,
        request.model,
        meta.url,
        meta.recorded_at,
        prices,
        body=request.body,
        method=request.method,
    )
    if facts.cost_usd is not None and _carries(facts, prices):
        # Carried but for its cache savings: the figures it carries stand.
        return Measured(facts.usage, facts.cost_usd, measured.cache_saved_usd or 0.0)
    return measured


def _carries(facts: PriceFacts, prices: PriceBook) -> bool:
    return facts.schema_version >= 2 and facts.usage is not None and not prices.has_override((facts.model,))
