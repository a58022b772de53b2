"""The caching advisor on a recorded suite: repeated prompt prefixes named, counted and priced against
a hand computation from genai-prices' cache prices, and a prefix broken by a timestamp flagged."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from conftest import Suite

from pytest_promptcache.cli import main

WORDS = [
    *("you", "are", "a", "careful", "support", "agent", "for", "the", "shop", "answer", "every"),
    *("customer", "question", "about", "orders", "refunds", "and", "delivery", "with", "care"),
]
# 2,000 words: the loopback server counts a word as a token, and so does o200k_base for these words.
SYSTEM = " ".join(WORDS[i % len(WORDS)] for i in range(2000))
# A long system prompt that starts with the time of the call: no two prompts share a prefix.
STAMPED = " ".join(WORDS[i % len(WORDS)] for i in range(1500))

SUITE = f"""
import pytest
from conftest import ask

SYSTEM = {SYSTEM!r}
STAMPED = {STAMPED!r}

@pytest.mark.parametrize("n", range(30))
def test_support(oai0, n):
    question = {{"role": "user", "content": f"where is order {{n}}"}}
    oai0.chat.completions.create(
        model="gpt-4.1-mini", messages=[{{"role": "system", "content": SYSTEM}}, question]
    )

@pytest.mark.parametrize("n", range(4))
def test_stamped(claude, n):
    claude.messages.create(
        model="claude-sonnet-4-5", max_tokens=64,
        system=f"Now: 2026-11-30T10:00:0{{n}}Z. " + STAMPED,
        messages=[{{"role": "user", "content": f"hello {{n}}"}}],
    )

def test_short(oai0):
    ask(oai0, "too short to cache")
"""


@pytest.fixture
def recorded(clients: Suite) -> Suite:
    clients.pytester.makepyfile(test_prompts=SUITE)
    clients.run("--promptcache=record").assert_outcomes(passed=35)
    return clients


def advise_json(suite: Suite, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["--dir", str(suite.cassettes), "advise", "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


@pytest.mark.slow  # records 35 calls: seconds; tests/unit/test_advice.py covers the rules fast
def test_advisor_names_the_shared_system_prompt_and_prices_it_by_hand(
    recorded: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    # One recording run serves every check here: it costs seconds.
    advice = advise_json(recorded, capsys)
    assert advice["recordings"] == 35
    [finding] = [f for f in advice["findings"] if f["model"] == "gpt-4.1-mini"]
    assert finding["prefix"] == ["messages[0] (system)"]
    assert finding["preview"].startswith("you are a careful support agent for the shop")
    assert finding["uses"] == 30
    assert finding["test_count"] == 30
    assert "test_prompts.py::test_support[0]" in finding["tests"]
    assert "prompt_cache_key" in finding["breakpoint"]

    # By hand: the server counted the system message as its 2,000 words plus 5 for the message, in every
    # one of the 30 calls. Cached automatically, 29 calls would read it at the cache-read price instead
    # of the input price; OpenAI charges nothing to write.
    [sent] = {
        r.sent_usage["prompt_tokens"] - (len(r.json["messages"][1]["content"].split()) + 5)
        for r in recorded.server.requests
        if r.json.get("model") == "gpt-4.1-mini" and "messages" in r.json and len(r.json["messages"]) == 2
    }
    assert sent == 2005
    price = genai_prices.calc_price(genai_prices.Usage(input_tokens=1), "gpt-4.1-mini", provider_id="openai")
    input_mtok, read_mtok = price.model_price.input_mtok, price.model_price.cache_read_mtok
    assert isinstance(input_mtok, Decimal)
    assert isinstance(read_mtok, Decimal)
    by_hand = 29 * sent * (input_mtok - read_mtok) / 1_000_000
    assert by_hand > 0
    assert abs(Decimal(str(finding["saving_usd"])) - by_hand) <= by_hand * Decimal("0.05")
    assert abs(finding["tokens"] - sent) <= sent * 0.05

    # A timestamp at the front of a long system prompt: nothing is shared, the span is flagged.
    assert not [f for f in advice["findings"] if f["model"] == "claude-sonnet-4-5"]
    [volatile] = advice["volatile"]
    assert volatile["model"] == "claude-sonnet-4-5"
    assert volatile["part"] == "system"
    assert volatile["offset_tokens"] < 10
    assert volatile["examples"] == ["2026-11-30T10:00:00Z.", "2026-11-30T10:00:01Z."]
    assert volatile["prompts"] == volatile["uses"] == 4
    assert volatile["cacheable_tokens"] == pytest.approx(1500, rel=0.05)
    assert volatile["saving_usd"] > 0

    # The same as text, for a person.
    assert main(["--dir", str(recorded.cassettes), "advise"]) == 0
    out = capsys.readouterr().out
    assert "35 recordings in" in out
    assert "1. openai gpt-4.1-mini: messages[0] (system): 2,0" in out
    assert "sent by 30 calls" in out
    assert "claude-sonnet-4-5: system changes at token" in out
    assert "caching could save ~$0.0" in out

    # Bounded: a limit on the recordings read, and a damaged file left out, not fatal.
    (recorded.cassettes / f"{'0' * 64}.json").write_text("{ not a recording")
    assert main(["--dir", str(recorded.cassettes), "advise", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "(only the first 5 were read: --limit raises it)" in out
    assert "(1 unreadable recording left out: promptcache verify names them)" in out


@pytest.mark.slow  # a recording run and two replays of 35 tests
def test_the_report_carries_the_advice_of_the_recordings_the_run_used(recorded: Suite) -> None:
    result = recorded.run("--promptcache-report=r.json", "--promptcache-report-md=r.md")
    result.assert_outcomes(passed=35)
    report = json.loads((recorded.path / "r.json").read_text())
    [finding] = [f for f in report["advice"]["findings"] if f["model"] == "gpt-4.1-mini"]
    assert finding["uses"] == 30
    assert report["advice"]["volatile"][0]["uses"] == 4
    result.stdout.fnmatch_lines(
        ["caching advice: 2 prompt prefixes, ~$0.0* per run to save (-v or promptcache advise*"]
    )
    assert "#### Prompt caching" in (recorded.path / "r.md").read_text()
    # Only where someone reads it: a plain run neither reads the recordings again nor says anything.
    assert "caching advice" not in recorded.run().stdout.str()


def test_advise_on_a_directory_without_recordings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(tmp_path), "advise"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("0 recordings in ")
    assert "no prompt prefix is sent twice at a cacheable length: nothing to cache" in out
    assert main(["--dir", str(tmp_path), "advise", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []
    assert main(["--dir", str(tmp_path), "advise", "--limit", "0"]) == 2
    assert capsys.readouterr().err == "promptcache: --limit 0: give at least 1 recording to read\n"
    assert main(["--dir", str(tmp_path / "nowhere"), "advise"]) == 2
