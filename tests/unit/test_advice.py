"""The caching advisor's rules: which prefixes count, how nested ones add up, what caching saves by
each provider's prices, and changing text near a prompt's front."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pytest_promptcache.advice import Use, advise
from pytest_promptcache.caching import CachePrices, breakpoint_hint, cache_prices, min_cacheable
from pytest_promptcache.prompts import segments
from pytest_promptcache.tokens import count
from pytest_promptcache.usage import PriceBook, parse_prices

AT = datetime(2026, 6, 1, tzinfo=UTC)
# Per million tokens: 10 in, 1 cached, 20 to write: numbers a reader can follow.
PRICES = PriceBook(parse_prices(["house input=10 output=0 cache_read=1 cache_write=20"]))
LONG = " ".join(["policy"] * 1500)  # 1,500 tokens in o200k_base
URL = "http://h/v1/messages"


def use(
    body: dict[str, Any], *, family: str = "anthropic", weight: int = 1, test: str = "t", **kw: Any
) -> Use:
    return Use(
        key=str(id(body)),
        family=family,
        model=kw.pop("model", "house"),
        url=URL,
        parts=segments(body, family),
        tests=[test],
        weight=weight,
        **kw,
    )


def claude(system: str, *messages: str) -> dict[str, Any]:
    return {"system": system, "messages": [{"role": "user", "content": m} for m in messages]}


def test_a_shared_system_prompt_is_one_finding_priced_with_the_write_premium() -> None:
    advice = advise([use(claude(LONG, f"q{i}"), test=f"t{i}") for i in range(5)], PRICES, AT, recordings=5)
    [finding] = advice.findings
    assert finding.prefix == ["system"]
    assert finding.uses == 5
    assert finding.tokens == count(LONG) + 3
    assert finding.tests == [f"t{i}" for i in range(5)]
    assert "cache_control" in finding.breakpoint
    # 4 reads at 1 instead of 10, one write at 20 instead of 10, per million tokens.
    tokens = Decimal(finding.tokens)
    assert Decimal(str(finding.saving_usd)) == (4 * tokens * 9 - tokens * 10) / 1_000_000
    assert advice.saving_usd == finding.saving_usd
    assert advice.recordings == 5


def test_too_short_or_sent_once_is_no_finding() -> None:
    short = [use(claude("short system", f"q{i}")) for i in range(5)]
    once = [use(claude(LONG, "q"))]
    assert advise(short + once, PRICES, AT).empty


def test_a_conversation_gives_nested_findings_that_add_up() -> None:
    first = claude(LONG, "turn one")
    second = {
        "system": LONG,
        "messages": [
            *first["messages"],
            {"role": "assistant", "content": LONG},
            {"role": "user", "content": "turn two"},
        ],
    }
    third = {"system": LONG, "messages": [*second["messages"], {"role": "user", "content": "three"}]}
    advice = advise([use(first), use(second), use(third)], PRICES, AT)
    outer, inner = sorted(advice.findings, key=lambda f: f.tokens)
    assert outer.prefix == ["system", "messages[0] (user)"]
    assert outer.uses == 3
    assert inner.prefix[-1] == "messages[2] (user)"
    assert inner.uses == 2
    assert inner.extends == outer.prefix
    assert inner.added_tokens == inner.tokens - outer.tokens
    savings = [Decimal(str(f.saving_usd)) for f in advice.findings]
    assert Decimal(str(advice.saving_usd)) == sum(savings)


def test_calls_the_provider_already_served_from_cache_saved_already() -> None:
    tokens = count(LONG) + 3
    uses = [
        use(claude(LONG, f"q{i}"), input_tokens=tokens + 10, cached_tokens=tokens if i else 0)
        for i in range(4)
    ]
    [finding] = advise(uses, PRICES, AT).findings
    assert finding.already_cached_uses == 3
    assert finding.saving_usd == 0


def test_weights_count_how_often_a_run_sent_a_recording() -> None:
    uses = [use(claude(LONG, "a"), weight=3), use(claude(LONG, "b"), weight=2)]
    shared, *repeats = advise(uses, PRICES, AT).findings
    assert shared.prefix == ["system"]
    assert shared.uses == 5
    # A request sent again and again repeats all of itself: the question adds a few tokens to cache.
    assert sorted(f.uses for f in repeats) == [2, 3]
    assert all(f.extends == ["system"] for f in repeats)
    assert all(f.added_tokens == f.tokens - shared.tokens for f in repeats)


def test_usage_scales_the_count_to_the_providers_tokens() -> None:
    body = claude(LONG, "q")
    total = sum(count(p.text) + 3 for p in segments(body, "anthropic"))
    uses = [use(claude(LONG, f"q{i}"), input_tokens=total * 2) for i in range(2)]
    [finding] = advise(uses, PRICES, AT).findings
    assert finding.tokens == pytest.approx(2 * (count(LONG) + 3), rel=0.01)


def test_an_unpriced_model_has_findings_without_a_saving() -> None:
    [finding] = advise(
        [use(claude(LONG, f"q{i}"), model="nobody-prices-me") for i in range(2)], PRICES, AT
    ).findings
    assert finding.saving_usd is None


def test_formats_without_a_prompt_cache_are_left_out() -> None:
    embeddings = [use({"input": LONG}, family="openai-embeddings") for _ in range(3)]
    assert advise(embeddings, PRICES, AT).empty


def test_a_timestamp_at_the_front_is_flagged_with_what_follows() -> None:
    uses = [use(claude(f"Now is 2026-06-01T10:0{i}:00Z and {LONG}", "q"), test=f"t{i}") for i in range(3)]
    advice = advise(uses, PRICES, AT)
    assert advice.findings == []
    [volatile] = advice.volatile
    assert volatile.part == "system"
    assert volatile.examples == ["2026-06-01T10:00:00Z", "2026-06-01T10:01:00Z"]
    assert volatile.prompts == volatile.uses == 3
    assert volatile.offset_tokens == count("Now is ")
    assert volatile.cacheable_tokens == pytest.approx(count(" and " + LONG), abs=2)
    assert volatile.saving_usd is not None
    assert volatile.saving_usd > 0
    assert volatile.tests == ["t0", "t1", "t2"]


def test_prompts_that_differ_a_lot_or_late_are_not_volatile() -> None:
    different = [use(claude(f"{'x' * 200 * i} {LONG}", "q")) for i in range(1, 3)]
    late = [use(claude(f"{LONG} at 2026-06-01T10:0{i}:00Z", "q")) for i in range(2)]
    assert advise(different + late, PRICES, AT).volatile == []


def test_minimums_by_provider_and_model() -> None:
    assert min_cacheable("openai-chat", "gpt-4.1-mini") == 1024
    assert min_cacheable("anthropic", "claude-opus-4-5-20251101") == 4096
    assert min_cacheable("anthropic", "claude-3-5-haiku-latest") == 2048
    assert min_cacheable("anthropic", "claude-sonnet-4-5") == 1024
    assert min_cacheable("bedrock-converse", "anthropic.claude-haiku-4-5-20251001-v1:0") == 4096
    assert min_cacheable("gemini", "gemini-2.5-pro") == 4096
    assert min_cacheable("gemini", "gemini-2.5-flash") == 1024


@pytest.mark.parametrize(
    ("family", "label", "says"),
    [
        ("openai-chat", "messages[0] (system)", "prompt_cache_key"),
        ("openai-responses", "instructions", "prompt_cache_key"),
        ("gemini", "systemInstruction", "cachedContents"),
        ("bedrock-converse", "tools", "toolConfig.tools"),
        ("bedrock-converse", "system", "end of system"),
        ("bedrock-converse", "messages[1] (user)", "end of messages[1].content"),
        ("anthropic", "tools", "last tool definition"),
        ("anthropic", "system", "last system block"),
        ("bedrock-invoke", "messages[2] (user)", "last content block of messages[2]"),
    ],
)
def test_breakpoints(family: str, label: str, says: str) -> None:
    assert says in breakpoint_hint(family, label)


def test_cache_prices_from_genai_prices_and_the_users_own() -> None:
    openai = cache_prices(
        PriceBook(), "openai-chat", "gpt-4.1-mini", "https://api.openai.com/v1/chat/completions", AT
    )
    assert openai is not None
    assert openai.write == openai.input  # OpenAI charges nothing to write its cache
    assert openai.read < openai.input
    anthropic = cache_prices(
        PriceBook(), "anthropic", "claude-sonnet-4-5", "https://api.anthropic.com/v1/messages", AT
    )
    assert anthropic is not None
    assert anthropic.write > anthropic.input
    assert cache_prices(PriceBook(), "anthropic", "nobody-prices-me", URL, AT) is None
    own = cache_prices(PRICES, "anthropic", "house", URL, AT)
    assert own == CachePrices(Decimal(10) / 10**6, Decimal(1) / 10**6, Decimal(20) / 10**6)
    assert own.saving(100, 1) == 0
