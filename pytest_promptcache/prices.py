"""Per-model prices a user sets (ini ``promptcache_prices``), in USD per million tokens.

Kept apart from the usage module so the settings can validate them without importing pydantic: the
plugin's start-up must stay cheap for suites that make no LLM call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


class Tokens(Protocol):
    @property
    def input_tokens(self) -> int: ...
    @property
    def cached_input_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...


PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")
_MTOK = Decimal(1_000_000)


def money(value: Decimal) -> float:
    """USD as reported: a float, rounded to 1e-10 so sums of Decimals stay stable when printed."""
    return float(round(value, 10))


def usd(value: float) -> str:
    """The one money format: "$0.00", "$2.50", "$1,234.57", and below a dollar three significant digits
    ("$0.000407", "$0.00000008"), so a real cost never prints as zero and one format reads everywhere.

    Test suites cost fractions of a cent per call: a fixed number of decimals either hides them or pads
    every dollar amount with zeros; scientific notation beside fixed point is hard to compare by eye."""
    sign, amount = ("-", -value) if value < 0 else ("", value)
    if amount == 0:
        return "$0.00"
    if amount >= 1:
        return f"{sign}${amount:,.2f}"
    if amount < 0.5e-10:  # finer than the ledger keeps (money): still not zero
        return f"{sign}<$0.0000000001"
    # Three significant digits, at least cents, never finer than the ledger keeps.
    decimals = min(max(2, 2 - math.floor(math.log10(amount))), 10)
    whole, _, fraction = f"{amount:.{decimals}f}".rstrip("0").partition(".")
    return f"{sign}${whole}.{fraction.ljust(2, '0')}"


def usd_column(cells: list[str]) -> list[str]:
    """Amounts (and other cells) padded so their decimal points line up: three significant digits give
    small amounts more decimals, and a column read by eye must show magnitude by position, not length."""
    parts = [cell.partition(".") for cell in cells]
    whole = max((len(w) for w, _, _ in parts), default=0)
    fraction = max((len(p + f) for _, p, f in parts), default=0)
    return [w.rjust(whole) + (p + f).ljust(fraction) for w, p, f in parts]


class PriceError(ValueError):
    pass


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens; cache prices default to the input price."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None

    def cost(self, usage: Tokens) -> Decimal:
        read = self.input if self.cache_read is None else self.cache_read
        write = self.input if self.cache_write is None else self.cache_write
        uncached = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
        return (
            uncached * self.input
            + usage.cached_input_tokens * read
            + usage.cache_write_tokens * write
            + usage.output_tokens * self.output
        ) / _MTOK


def parse_prices(lines: Iterable[str]) -> dict[str, ModelPrice]:
    """ini ``promptcache_prices`` lines: ``MODEL input=0.4 output=1.6 [cache_read=0.1] [cache_write=0.5]``."""
    prices: dict[str, ModelPrice] = {}
    for line in lines:
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        model, fields = parts[0], parts[1:]
        values: dict[str, Decimal] = {}
        for field in fields:
            name, sep, raw = field.partition("=")
            if not sep or name not in PRICE_FIELDS:
                raise PriceError(
                    f"promptcache_prices: {field!r} in the line for {model!r} is not "
                    f"NAME=USD_PER_MILLION_TOKENS with NAME one of {', '.join(PRICE_FIELDS)}"
                )
            try:
                values[name] = Decimal(raw)
            except ArithmeticError:
                raise PriceError(f"promptcache_prices: {raw!r} for {model} {name} is not a number") from None
            if values[name] < 0:
                raise PriceError(f"promptcache_prices: {model} {name} is negative")
        missing = [f for f in ("input", "output") if f not in values]
        if missing:
            raise PriceError(f"promptcache_prices: the line for {model!r} needs {' and '.join(missing)}=...")
        prices[model] = ModelPrice(**values)
    return prices


DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{8}$")
