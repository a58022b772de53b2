"""Prices: the user's own (ini lines), genai-prices behind them, and how dollars are rounded and shown."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pytest_promptcache.models import TokenUsage
from pytest_promptcache.prices import DATE_SUFFIX, ModelPrice, PriceError, money, parse_prices, usd
from pytest_promptcache.usage import PriceBook

AT = datetime(2026, 1, 15, tzinfo=UTC)
MTOK = 1_000_000
LOCAL = "http://127.0.0.1:8765/v1/chat/completions"  # a URL genai-prices knows no provider for


def tokens(inp: int = 0, out: int = 0, cached: int = 0, written: int = 0) -> TokenUsage:
    return TokenUsage(
        input_tokens=inp, output_tokens=out, cached_input_tokens=cached, cache_write_tokens=written
    )


# -- money and usd ----------------------------------------------------------------------------------------


def test_money_rounds_to_ten_decimals() -> None:
    assert money(Decimal("0.12345678904999")) == 0.123456789
    assert money(Decimal("0.00000000005")) == 0.0  # half to even
    assert money(Decimal("0.00000000015")) == 0.0000000002
    assert money(Decimal(1) / Decimal(3)) == 0.3333333333


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "$0.00"),
        (0.00000008, "$0.00000008"),
        (0.00000042, "$0.00000042"),
        (0.000001, "$0.000001"),
        (0.000013, "$0.000013"),
        (0.000407, "$0.000407"),
        (0.0004074, "$0.000407"),
        (0.0099999, "$0.01"),
        (0.01, "$0.01"),
        (0.0125, "$0.0125"),
        (0.5, "$0.50"),
        (0.999, "$0.999"),
        (0.9996, "$1.00"),
        (2.5, "$2.50"),
        (1234.5, "$1,234.50"),
        (0.0000000001, "$0.0000000001"),
        (0.00000000001, "<$0.0000000001"),
        (-0.25, "-$0.25"),
    ],
)
def test_usd_keeps_a_real_cost_visible(value: float, text: str) -> None:
    assert usd(value) == text


# -- ModelPrice -------------------------------------------------------------------------------------------


def test_model_price_charges_cache_reads_and_writes_at_their_own_rates() -> None:
    price = ModelPrice(Decimal(2), Decimal(8), cache_read=Decimal("0.5"), cache_write=Decimal(3))
    # 1M input of which 0.4M read from cache and 0.1M written: 0.5M uncached.
    cost = price.cost(tokens(inp=MTOK, cached=400_000, written=100_000, out=MTOK // 2))
    assert cost == Decimal("1.0") + Decimal("0.2") + Decimal("0.3") + Decimal("4.0")


def test_model_price_cache_rates_default_to_the_input_rate() -> None:
    price = ModelPrice(Decimal(2), Decimal(8))
    assert price.cost(tokens(inp=MTOK, cached=MTOK // 2)) == price.cost(tokens(inp=MTOK)) == Decimal(2)


def test_model_price_never_charges_negative_uncached_input() -> None:
    # Inconsistent counts (more cached than input) must not produce a refund.
    price = ModelPrice(Decimal(1), Decimal(1), cache_read=Decimal(0))
    assert price.cost(tokens(inp=10, cached=50)) == Decimal(0)


# -- parse_prices -----------------------------------------------------------------------------------------


def test_parse_prices() -> None:
    prices = parse_prices(
        [
            "# house models",
            "",
            "my-ft-model input=0.4 output=1.6",
            "  big   input=3 output=15 cache_read=0.3 cache_write=3.75  ",
            "my-ft-model input=1 output=2",  # a later line wins
        ]
    )
    assert prices == {
        "my-ft-model": ModelPrice(Decimal(1), Decimal(2)),
        "big": ModelPrice(Decimal(3), Decimal(15), Decimal("0.3"), Decimal("3.75")),
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "m input=1 output=2 cached=1",
            "promptcache_prices: 'cached=1' in the line for 'm' is not NAME=USD_PER_MILLION_TOKENS "
            "with NAME one of input, output, cache_read, cache_write",
        ),
        (
            "m input 1 output=2",
            "promptcache_prices: 'input' in the line for 'm' is not NAME=USD_PER_MILLION_TOKENS",
        ),
        ("m input=cheap output=2", "promptcache_prices: 'cheap' for m input is not a number"),
        ("m input=1 output=-2", "promptcache_prices: m output is negative"),
        ("m output=2", "promptcache_prices: the line for 'm' needs input=..."),
        ("m", "promptcache_prices: the line for 'm' needs input and output=..."),
    ],
)
def test_parse_prices_errors(line: str, message: str) -> None:
    with pytest.raises(PriceError) as err:
        parse_prices([line])
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("gpt-4o", "gpt-4o"),
        ("model-2024-08", "model-2024-08"),
        ("v-2024-08-06-beta", "v-2024-08-06-beta"),
    ],
)
def test_date_suffix(model: str, base: str) -> None:
    assert DATE_SUFFIX.sub("", model) == base


# -- PriceBook --------------------------------------------------------------------------------------------

OVERRIDES = parse_prices(["gpt-4o input=1 output=1", "house input=10 output=10"])


def test_an_override_wins_over_genai_prices_also_for_dated_names() -> None:
    book = PriceBook(OVERRIDES)
    one_million = tokens(inp=MTOK)
    assert book.cost(one_million, ["gpt-4o"], "openai-chat", LOCAL, AT) == Decimal(1)
    assert book.cost(one_million, ["gpt-4o-2024-08-06"], "openai-chat", LOCAL, AT) == Decimal(1)
    assert book.has_override(["gpt-4o-2024-08-06"])
    assert book.has_override([None, "house"])
    assert not book.has_override([None, "gpt-4.1-mini"])
    assert not PriceBook().has_override(["gpt-4o"])


def test_the_first_model_with_a_price_is_used() -> None:
    book = PriceBook(OVERRIDES)
    assert book.cost(tokens(inp=MTOK), [None, "unknown-x", "house", "gpt-4o"], None, LOCAL, AT) == Decimal(10)
    # Overrides of any candidate beat genai-prices for an earlier one.
    assert book.cost(tokens(inp=MTOK), ["gpt-4.1-mini", "house"], "openai-chat", LOCAL, AT) == Decimal(10)


def test_genai_prices_by_provider_url() -> None:
    cost = PriceBook().cost(
        tokens(inp=MTOK, out=MTOK), ["gpt-4.1-mini"], None, "https://api.openai.com/v1/chat/completions", AT
    )
    assert cost == Decimal("2.0")  # 0.40 in + 1.60 out per million


def test_genai_prices_by_wire_format_when_the_host_is_a_test_server() -> None:
    # The host is unknown to genai-prices; the Anthropic wire format says whose prices apply.
    cost = PriceBook().cost(tokens(inp=1000, out=1000), ["claude-sonnet-4-5"], "anthropic", LOCAL, AT)
    assert cost == Decimal("0.018")  # 3 in + 15 out per million


def test_genai_prices_by_model_alone_when_provider_and_format_disagree() -> None:
    # An OpenAI model behind an Anthropic-shaped proxy: neither the host nor the format finds it.
    cost = PriceBook().cost(tokens(inp=MTOK, out=MTOK), ["gpt-4.1-mini"], "anthropic", LOCAL, AT)
    assert cost == Decimal("2.0")


def test_genai_prices_counts_cache_reads() -> None:
    cached = PriceBook().cost(tokens(inp=MTOK, cached=MTOK), ["gpt-4.1-mini"], "openai-chat", LOCAL, AT)
    full = PriceBook().cost(tokens(inp=MTOK), ["gpt-4.1-mini"], "openai-chat", LOCAL, AT)
    assert cached is not None
    assert full is not None
    assert cached < full


def test_nobody_prices_an_unknown_model() -> None:
    assert PriceBook().cost(tokens(inp=10), ["in-house-llm-7", None], "openai-chat", LOCAL, AT) is None
    assert PriceBook().cost(tokens(inp=10), [], "openai-chat", LOCAL, AT) is None
