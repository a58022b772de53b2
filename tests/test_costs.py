"""Every call priced: streams without usage estimated (and marked so everywhere), free endpoints at zero
cost, the providers' cache share, per-test JUnit XML properties, and the cost against a baseline."""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
import tiktoken
from conftest import Suite
from genai_prices.types import TieredPrices

# A user text long enough that counts mean something, in words o200k_base splits in different ways.
TEXT = (
    "Summarise the refund policy for orders shipped internationally, including exceptions for damaged "
    "goods, perishable items, customised products and pre-orders; mention timelines, who pays return "
    "shipping, and what happens when a carrier loses the parcel. "
) * 8

STREAM_SUITE = f"""
from conftest import ask

TEXT = {TEXT!r}

def test_stream_without_usage(oai0, promptcache):
    chunks = list(ask(oai0, TEXT, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    open("answer.txt", "w").write(text)
    [call] = promptcache.calls
    assert call.usage.source == "estimated"
    assert call.cost_usd > 0

def test_chat_with_usage(oai0):
    ask(oai0, "a call that carries its usage")
"""


def o200k() -> tiktoken.Encoding:
    """tiktoken's own o200k_base, found offline where litellm ships tiktoken's cache of it: an
    independent count of the same text. Found, not imported: importing litellm fetches its price map."""
    spec = importlib.util.find_spec("litellm")
    assert spec is not None
    assert spec.submodule_search_locations
    cache = Path(spec.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        return tiktoken.get_encoding("o200k_base")


def load(suite: Suite, name: str) -> dict[str, Any]:
    return json.loads((suite.path / name).read_text())  # type: ignore[no-any-return]


def test_a_stream_without_usage_is_estimated_within_10_percent_of_tiktoken_and_marked(
    clients: Suite,
) -> None:
    clients.pytester.makepyfile(test_stream=STREAM_SUITE)
    result = clients.run(
        "--promptcache=record", "--promptcache-report=r.json", "--promptcache-report-md=r.md", "-v"
    )
    result.assert_outcomes(passed=2)
    [streamed] = [r for r in clients.server.requests if r.json.get("stream")]
    assert streamed.sent_usage is None  # the server sent no usage: only an estimate can count it

    encoding = o200k()
    answer = (clients.path / "answer.txt").read_text()
    assert answer.startswith("echo: Summarise")
    report = load(clients, "r.json")
    est = report["by_test"]["test_stream.py::test_stream_without_usage"]["estimated"]
    assert est["calls"] == 1
    assert est["output_tokens"] == pytest.approx(len(encoding.encode(answer)), rel=0.10)
    # The request: the message's text, and a few tokens of chat framing around it.
    assert est["input_tokens"] == pytest.approx(len(encoding.encode(TEXT)), rel=0.10)
    assert est["spent_usd"] > 0

    # Marked estimated and totalled apart, in every rendering: JSON, terminal, Markdown, the recording.
    totals = report["totals"]
    assert totals["estimated"]["calls"] == 1
    assert totals["calls_without_usage"] == 0
    reported = [r.sent_usage for r in clients.server.requests if r.sent_usage]
    assert totals["input_tokens"] == sum(u["prompt_tokens"] for u in reported)
    result.stdout.fnmatch_lines(
        [
            "estimated, not in the figures above: 1 call without usage, ~* in, ~* out, ~$0.0* "
            "(tiktoken o200k_base)",
            "gpt-4.1-mini * 2 * ~$0.0* $0.0* $0.00",
            "most expensive tests (live + replayed cost):",
            "* ~$0.0*  test_stream.py::test_stream_without_usage",
        ]
    )
    markdown = (clients.path / "r.md").read_text()
    assert "Estimated, not in the figures above: 1 call without usage" in markdown
    [recording] = [r for r in clients.recordings().values() if r["request"]["body"].get("stream")]
    assert recording["meta"]["usage"]["source"] == "estimated"

    # Replayed, the estimate is the recording's: the same figures, now saved rather than spent.
    clients.server.stop()
    clients.run("--promptcache-report=replay.json").assert_outcomes(passed=2)
    replayed = load(clients, "replay.json")["totals"]["estimated"]
    assert replayed["saved_usd"] == est["spent_usd"]
    assert replayed["input_tokens"] == est["input_tokens"]


FREE_SUITE = """
import os
import httpx

def test_count_tokens(claude):
    counted = claude.messages.count_tokens(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "count these words"}]
    )
    assert counted.input_tokens > 0

def test_moderation(oai0):
    assert not oai0.moderations.create(input="a friendly sentence").results[0].flagged

def test_gemini_count_tokens():
    url = os.environ["LLM_URL"] + "/v1beta/models/gemini-2.5-flash:countTokens"
    httpx.post(url, json={"contents": [{"parts": [{"text": "count me"}]}]}).raise_for_status()
"""


def test_free_endpoints_are_calls_at_zero_cost_recorded_and_replayed(clients: Suite) -> None:
    clients.pytester.makepyfile(test_free=FREE_SUITE)
    result = clients.run("--promptcache=record", "--promptcache-report=r.json")
    result.assert_outcomes(passed=3)
    assert clients.server.count() == 3
    totals = load(clients, "r.json")["totals"]
    assert (totals["calls"], totals["free_calls"], totals["calls_without_usage"]) == (3, 3, 0)
    assert totals["spent_usd"] == totals["estimated"]["spent_usd"] == 0
    assert totals["unpriced_calls"] == 0
    result.stdout.fnmatch_lines(["3 calls to free endpoints (count_tokens, moderations, GET): $0"])
    assert "carried no usage" not in result.stdout.str()

    clients.server.stop()
    clients.run("--promptcache-report=replay.json").assert_outcomes(passed=3)
    assert load(clients, "replay.json")["totals"]["free_calls"] == 3


CACHED_SUITE = """
def test_cached(claude):
    claude.messages.create(
        model="claude-sonnet-4-5", max_tokens=64,
        system=[{"type": "text", "text": "a long policy", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "with the cache"}],
    )

def test_uncached(claude):
    claude.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                           messages=[{"role": "user", "content": "without the cache"}])
"""


def test_cache_share_and_what_it_saved_per_model(clients: Suite) -> None:
    clients.pytester.makepyfile(test_cache=CACHED_SUITE)
    result = clients.run("--promptcache=record", "--promptcache-report=r.json", "-v")
    result.assert_outcomes(passed=2)
    model = load(clients, "r.json")["by_model"]["claude-sonnet-4-5"]
    read = 100  # the loopback server reports 100 cache-read tokens when the system has cache_control
    assert model["cached_input_tokens"] == read
    price = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1), "claude-sonnet-4-5", provider_id="anthropic"
    )
    # Prices tiered by prompt length: this prompt is in the first tier.
    input_mtok, read_mtok = (
        p.base if isinstance(p, TieredPrices) else p
        for p in (price.model_price.input_mtok, price.model_price.cache_read_mtok)
    )
    assert isinstance(input_mtok, Decimal)
    assert isinstance(read_mtok, Decimal)
    by_hand = read * (input_mtok - read_mtok) / 1_000_000
    assert Decimal(str(model["cache_saved_usd"])) == pytest.approx(by_hand, rel=Decimal("1e-6"))
    share = round(read / model["input_tokens"] * 100)
    result.stdout.fnmatch_lines(
        [
            f"provider cache: {share}% of input tokens (100) from cache, saved $0.000* against uncached "
            "prices",
            f"claude-sonnet-4-5 * 2 * {model['input_tokens']} * 100 * {share}% *",
        ]
    )


@pytest.mark.slow  # a recording run and a replay over xdist workers
def test_junit_xml_carries_each_tests_tokens_and_cost(clients: Suite) -> None:
    clients.pytester.makepyfile(test_stream=STREAM_SUITE)
    clients.run("--promptcache=record", "--junitxml=junit.xml").assert_outcomes(passed=2)
    cases = {c.get("name"): c for c in ET.parse(clients.path / "junit.xml").getroot().iter("testcase")}
    props = {
        name: {p.get("name"): p.get("value") for p in case.iter("property")} for name, case in cases.items()
    }
    chat = props["test_chat_with_usage"]
    sent = next(r.sent_usage for r in clients.server.requests if r.sent_usage)
    assert chat["promptcache_calls"] == "1"
    assert chat["promptcache_live"] == "1"
    assert chat["promptcache_input_tokens"] == str(sent["prompt_tokens"])
    assert chat["promptcache_output_tokens"] == str(sent["completion_tokens"])
    assert float(chat["promptcache_cost_usd"] or "0") > 0
    assert chat["promptcache_estimated_calls"] == "0"
    assert props["test_stream_without_usage"]["promptcache_estimated_calls"] == "1"

    # Under xdist the properties travel with each test's report to the controller, which writes the XML.
    clients.run("-n", "2", "--junitxml=replay.xml", subprocess=True).assert_outcomes(passed=2)
    replay = ET.parse(clients.path / "replay.xml").getroot()
    replayed = {
        c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
        for c in replay.iter("testcase")
    }
    assert replayed["test_chat_with_usage"]["promptcache_replayed"] == "1"
    assert replayed["test_chat_with_usage"]["promptcache_input_tokens"] == str(sent["prompt_tokens"])
    assert replayed["test_stream_without_usage"]["promptcache_estimated_calls"] == "1"


GROWING = """
from conftest import ask

def test_summary(oai0):
    ask(oai0, "summarise the ticket" + {extra!r})

def test_steady(oai0):
    ask(oai0, "the same prompt on both branches")
"""


def test_compare_names_the_test_whose_prompt_grew_and_the_dollar_change(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients.pytester.makepyfile(test_app=GROWING.format(extra=""))
    clients.run("--promptcache=record", "--promptcache-report=main.json").assert_outcomes(passed=2)
    grown = " and every earlier message" * 1000  # 4,000 more words: the server's tokens
    clients.pytester.makepyfile(test_app=GROWING.format(extra=grown))
    summary = clients.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = clients.run(
        "--promptcache=record", "--promptcache-compare=main.json", "--promptcache-report=branch.json"
    )
    result.assert_outcomes(passed=2)

    base, branch = load(clients, "main.json"), load(clients, "branch.json")
    comparison = branch["comparison"]

    # test_steady is replayed on the branch (saved, at its recorded cost) and was live on main (spent).
    def cost(report: dict[str, Any]) -> float:
        return float(report["totals"]["spent_usd"] + report["totals"]["saved_usd"])

    delta = cost(branch) - cost(base)
    assert delta > 0
    assert comparison["delta_usd"] == pytest.approx(delta, abs=1e-9)
    [change] = comparison["by_test"]
    assert change["name"] == "test_app.py::test_summary"
    assert change["input_tokens_delta"] == 4000
    assert change["delta_usd"] == pytest.approx(delta, abs=1e-9)
    assert comparison["unchanged_tests"] == 1
    assert [m["name"] for m in comparison["by_model"]] == ["gpt-4.1-mini"]

    result.stdout.fnmatch_lines(
        [
            "cost against main.json (record): $0.0000* -> $0.00* per run, +$0.00* (*)",
            "  +$0.00* (*) test_app.py::test_summary: input +4,000 tokens, output +4,000 tokens",
            "  by model: gpt-4.1-mini +$0.00*",
        ]
    )
    text = summary.read_text()
    assert "#### Cost against `main.json`" in text
    assert "| test_app.py::test_summary | input +4,000 tokens, output +4,000 tokens |" in text


def test_a_baseline_that_is_not_a_report_is_a_usage_error_before_any_test(clients: Suite) -> None:
    clients.pytester.makepyfile(test_app=GROWING.format(extra=""))
    (clients.path / "notes.json").write_text('{"hello": 1}')
    result = clients.run("--promptcache-compare=notes.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-promptcache: the baseline */notes.json is not a promptcache report "
            "(schema_version: Field required); give --promptcache-compare a report written by "
            "--promptcache-report"
        ]
    )
    missing = clients.run("--promptcache-compare=nowhere.json")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["ERROR: pytest-promptcache: cannot read the baseline */nowhere.json: *"])
    assert clients.server.count() == 0
