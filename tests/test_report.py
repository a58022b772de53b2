"""Tokens and dollars: the report matches what the server sent and what genai-prices says it costs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from conftest import Suite
from llm_server import ReceivedRequest

COST_SUITE = """
import os
import httpx
from conftest import ask

BASE = os.environ["LLM_URL"]

def test_chat(oai0):
    ask(oai0, "price this chat please")

def test_stream_with_usage(oai0):
    list(ask(oai0, "stream with usage", stream=True, stream_options={"include_usage": True}))

def test_stream_without_usage(oai0):
    list(ask(oai0, "stream without usage", stream=True))

def test_responses(oai0):
    oai0.responses.create(model="gpt-4.1-mini", input="responses cost something")

def test_embeddings(oai0):
    oai0.embeddings.create(model="text-embedding-3-small", input=["one two three", "four"])

def test_anthropic_cached(claude):
    claude.messages.create(
        model="claude-sonnet-4-6", max_tokens=64,
        system=[{"type": "text", "text": "a long cached policy", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "cached input please"}],
    )

def test_anthropic_stream(claude):
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=64,
                                messages=[{"role": "user", "content": "stream from claude"}]) as s:
        s.get_final_message()

def test_gemini():
    httpx.post(BASE + "/v1beta/models/gemini-2.5-flash:generateContent",
               json={"contents": [{"parts": [{"text": "gemini counts tokens"}]}]}).raise_for_status()

def test_gemini_stream():
    with httpx.stream("POST", BASE + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                      json={"contents": [{"parts": [{"text": "gemini streams"}]}]}) as r:
        r.read()

def test_private_model(oai0):
    ask(oai0, "fine-tuned", model="my-private-model")
"""

PROVIDER = {
    "/chat/completions": "openai",
    "/responses": "openai",
    "/embeddings": "openai",
    "/messages": "anthropic",
    "enerateContent": "google",
}


def expected_usage(request: ReceivedRequest) -> dict[str, int]:
    """The server's usage in genai-prices' convention, derived here independently of the plugin."""
    u = request.sent_usage
    if "promptTokenCount" in u:
        return {
            "input_tokens": u["promptTokenCount"],
            "output_tokens": u["candidatesTokenCount"],
            "cache_read_tokens": u.get("cachedContentTokenCount", 0),
            "cache_write_tokens": 0,
        }
    if "cache_read_input_tokens" in u:
        read, write = u["cache_read_input_tokens"], u["cache_creation_input_tokens"]
        return {
            "input_tokens": u["input_tokens"] + read + write,
            "output_tokens": u["output_tokens"],
            "cache_read_tokens": read,
            "cache_write_tokens": write,
        }
    if "prompt_tokens" in u:
        return {
            "input_tokens": u["prompt_tokens"],
            "output_tokens": u.get("completion_tokens", 0),
            "cache_read_tokens": u.get("prompt_tokens_details", {}).get("cached_tokens", 0),
            "cache_write_tokens": 0,
        }
    return {
        "input_tokens": u["input_tokens"],
        "output_tokens": u["output_tokens"],
        "cache_read_tokens": u["input_tokens_details"]["cached_tokens"],
        "cache_write_tokens": 0,
    }


def model_of(request: ReceivedRequest) -> str:
    if request.json and "model" in request.json:
        return str(request.json["model"])
    return re.search(r"/models/([^:]+):", request.path).group(1)  # type: ignore[union-attr]


def genai_cost(request: ReceivedRequest, usage: dict[str, int]) -> Decimal | None:
    provider = next(p for suffix, p in PROVIDER.items() if suffix in request.path.split("?")[0])
    try:
        price = genai_prices.calc_price(
            genai_prices.Usage(**usage),
            model_of(request),
            provider_id=provider,
            genai_request_timestamp=datetime.fromtimestamp(request.received_at, UTC),
        )
    except LookupError:
        return None
    return price.total_price


@pytest.fixture
def costs(clients: Suite) -> Suite:
    clients.pytester.makepyfile(test_spending=COST_SUITE)
    return clients


def load(suite: Suite, name: str) -> dict[str, Any]:
    return json.loads((suite.path / name).read_text())  # type: ignore[no-any-return]


@pytest.mark.slow
def test_record_run_reports_what_the_server_sent_and_what_it_cost(costs: Suite) -> None:
    costs.run("--promptcache=record", "--promptcache-report=report.json").assert_outcomes(passed=10)
    report = load(costs, "report.json")
    totals = report["totals"]

    with_usage = [r for r in costs.server.requests if r.sent_usage is not None]
    assert len(costs.server.requests) == 10
    assert len(with_usage) == 9
    usages = [expected_usage(r) for r in with_usage]
    assert totals["calls"] == totals["live"] == totals["recorded"] == 10
    assert totals["replayed"] == totals["misses"] == totals["errors"] == 0
    assert totals["input_tokens"] == sum(u["input_tokens"] for u in usages)
    assert totals["output_tokens"] == sum(u["output_tokens"] for u in usages)
    assert totals["cached_input_tokens"] == sum(u["cache_read_tokens"] for u in usages) == 100
    assert totals["cache_write_tokens"] == 0

    costs_by_request = [genai_cost(r, u) for r, u in zip(with_usage, usages, strict=True)]
    independent = sum((c for c in costs_by_request if c is not None), Decimal(0))
    assert independent > 0
    assert abs(Decimal(str(totals["spent_usd"])) - independent) <= independent / 100
    assert totals["saved_usd"] == 0

    assert totals["calls_without_usage"] == 0
    assert totals["estimated"]["calls"] == 1
    assert totals["unpriced_calls"] == 1
    assert report["unpriced_models"] == ["my-private-model"]
    assert report["by_test"]["test_spending.py::test_stream_without_usage"]["estimated"]["calls"] == 1
    assert report["by_model"]["claude-sonnet-4-6"]["cached_input_tokens"] == 100
    assert set(report["by_model"]) == {
        "gpt-4.1-mini",
        "text-embedding-3-small",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
        "gemini-2.5-flash",
        "my-private-model",
    }
    assert report["schema_version"] == 2
    assert report["mode"] == "record"

    costs.server.stop()
    costs.run("--promptcache-report=replay.json").assert_outcomes(passed=10)
    replay = load(costs, "replay.json")["totals"]
    assert replay["calls"] == replay["replayed"] == 10
    assert replay["live"] == replay["recorded"] == 0
    assert replay["spent_usd"] == 0
    assert replay["saved_usd"] == pytest.approx(totals["spent_usd"], rel=1e-9)
    for field in (
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "calls_without_usage",
        "unpriced_calls",
    ):
        assert replay[field] == totals[field], field


@pytest.mark.slow
def test_terminal_summary_is_short_by_default_and_detailed_with_v(costs: Suite) -> None:
    short = costs.run("--promptcache=record")
    short.stdout.fnmatch_lines(
        [
            "*- promptcache -*",
            "mode record: 10 LLM calls: 10 live (10 recorded)",
            "tokens: * in (100 cached), * out",
            "spent $0.000* on live calls, saved $0.00 by replay",
            "estimated, not in the figures above: 1 call without usage, ~* in, ~* out, ~$0.0* "
            "(tiktoken o200k_base)",
            "provider cache: *% of input tokens (100) from cache, saved $0.000* against uncached prices",
            "unpriced models: my-private-model (1 call; tokens counted, no dollars): "
            "add them to ini promptcache_prices",
            "(-v shows the per-model table and the most expensive tests)",
        ]
    )
    detailed = costs.run("-v")
    detailed.stdout.fnmatch_lines(
        [
            "mode replay: 10 LLM calls: 10 replayed",
            "model * calls * input * cached * output * spent * saved",
            "claude-sonnet-4-6 * 1 * 112 * 100 * 4 * $0.00 * $0.000*",
            "my-private-model * 1 * 6 * 0 * 2 * $0.00 * unpriced",
            "most expensive tests (live + replayed cost):",
            "* $0.000* *test_spending.py::test_anthropic_cached",
        ]
    )


def test_ini_prices_price_private_models_and_override(costs: Suite) -> None:
    costs.pytester.makeini("[pytest]\npromptcache_prices =\n    my-private-model input=1000000 output=0\n")
    costs.run("--promptcache=record", "-k", "private", "--promptcache-report=r.json")
    totals = load(costs, "r.json")["totals"]
    # One dollar per input token makes the count visible in the price.
    assert totals["spent_usd"] == totals["input_tokens"] > 0
    assert totals["unpriced_calls"] == 0


def test_budget_stops_live_calls_and_fails_the_session(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_first(oai0):
            ask(oai0, "the first call fits in the budget")

        def test_second(oai0):
            ask(oai0, "the second is refused")
        """
    )
    result = clients.run(
        "--promptcache=record", "--promptcache-budget=0.000001", "--promptcache-report=r.json"
    )
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "promptcache: budget reached, live call refused: http://127.0.0.1:*/v1/chat/completions",
            # One money format everywhere: the amounts as the summary prints them, never rounded to 0.
            "  live calls in this session have cost $0.0000[1-9]*; the budget (--promptcache-budget / "
            "promptcache_budget) is $0.000001.",
            "budget of $0.000001 reached: 1 live call refused",
        ]
    )
    assert clients.server.count() == 1
    report = load(clients, "r.json")
    assert report["budget"]["blocked_calls"] == 1
    assert report["totals"]["calls"] == 2
    assert report["totals"]["live"] == 1


def test_budget_fails_the_session_even_if_the_test_swallows_the_error(clients: Suite) -> None:
    clients.pytester.makeini("[pytest]\npromptcache_budget = 0\n")
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_swallow(oai0):
            try:
                ask(oai0, "refused at once")
            except Exception:
                pass
        """
    )
    result = clients.run("--promptcache=record")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert clients.server.count() == 0


def test_fixture_gives_a_test_its_own_calls(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_flow_stays_small(oai0, promptcache):
            ask(oai0, "step one")
            ask(oai0, "step two")
            assert len(promptcache.calls) == 2
            assert promptcache.total_tokens < 2000
            assert promptcache.input_tokens == sum(c.usage.input_tokens for c in promptcache.calls)
            print("REPLAYED", [c.replayed for c in promptcache.calls], "COST", promptcache.cost_usd > 0)

        def test_other_test_sees_none(promptcache):
            assert promptcache.calls == []
        """
    )
    clients.run("--promptcache=record", "-s").stdout.fnmatch_lines(["*REPLAYED ?False, False? COST True*"])
    clients.run("-s").stdout.fnmatch_lines(["*REPLAYED ?True, True? COST True*"])


def test_markdown_for_ci_and_no_section_without_calls(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = clients.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_call(oai0):
            ask(oai0, "markdown")
        """
    )
    clients.run("--promptcache=record", "--promptcache-report-md=out/report.md")
    text = (clients.path / "out" / "report.md").read_text()
    assert text == summary.read_text()
    assert text.startswith("### promptcache\n")
    assert "| gpt-4.1-mini | 1 | 0 | 1 |" in text

    clients.pytester.makepyfile("def test_nothing():\n    pass\n")
    quiet = clients.run("--promptcache-report=r.json")
    assert "- promptcache -" not in quiet.stdout.str()
    assert summary.read_text() == text  # nothing appended for a session without LLM calls
    assert load(clients, "r.json")["totals"]["calls"] == 0


def test_summary_colours_follow_no_color(clients: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_call(oai0):
            ask(oai0, "colours")
        """
    )
    monkeypatch.delenv("PY_COLORS", raising=False)  # pytester sets it to 0, and it outranks both
    monkeypatch.setenv("FORCE_COLOR", "1")
    coloured = clients.run("--promptcache=record")
    assert "\x1b[33mspent" in coloured.stdout.str()
    monkeypatch.setenv("NO_COLOR", "1")
    plain = clients.run()
    assert "\x1b[" not in plain.stdout.str()
    plain.stdout.fnmatch_lines(["spent $0.00 on live calls, saved * by replay"])
