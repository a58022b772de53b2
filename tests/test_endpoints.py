"""The default endpoints beyond chat, through the real SDKs: token counting and moderation (free calls:
counted at zero cost, never as calls without usage), Gemini embeddings (priced from their usage),
Anthropic on Vertex AI (a wildcard pattern); a default key header taken out of the key; and a miss whose
request is recorded under another host, which names the alias that replays it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from conftest import Suite
from llm_server import LLMServer

# Clients are built inside the tests, from LLM_URL as it is then: in-process runs reuse imported modules.
FREE_AND_EMBEDDINGS = """
import os

import anthropic
import openai
from google import genai
from google.genai import types

WORDS = "count these four words"


def vertex():
    return anthropic.AnthropicVertex(
        region="us-east5", project_id="proj", access_token="ya29.placeholder", base_url=os.environ["LLM_URL"]
    )


def gemini():
    options = types.HttpOptions(base_url=os.environ["LLM_URL"])
    return genai.Client(api_key=os.environ["GEMINI_API_KEY"], http_options=options)


def test_counting_and_moderation_are_free():
    claude = anthropic.Anthropic(base_url=os.environ["LLM_URL"])
    ask = [{"role": "user", "content": WORDS}]
    assert claude.messages.count_tokens(model="claude-sonnet-4-6", messages=ask).input_tokens == 9
    assert vertex().messages.count_tokens(model="claude-haiku-4-5", messages=ask).input_tokens == 9
    client = gemini()  # a client closes its connections once garbage: kept while it is used
    counted = client.models.count_tokens(model="gemini-2.0-flash", contents=WORDS)
    assert counted.total_tokens == 9
    oai = openai.OpenAI(base_url=os.environ["LLM_URL"] + "/v1")
    assert not oai.moderations.create(model="omni-moderation-latest", input=WORDS).results[0].flagged


def test_gemini_embeddings():
    client = gemini()
    found = client.models.embed_content(model="gemini-embedding-001", contents=["one two", "three"])
    assert len(found.embeddings) == 2


def test_claude_on_vertex():
    ask = [{"role": "user", "content": "vertex, json"}]
    reply = vertex().messages.create(model="claude-sonnet-4-5@20250929", max_tokens=64, messages=ask)
    assert reply.content[0].text == "echo: vertex, json"
    ask = [{"role": "user", "content": "vertex, stream"}]
    with vertex().messages.stream(model="claude-sonnet-4-5@20250929", max_tokens=64, messages=ask) as stream:
        assert stream.get_final_text() == "echo: vertex, stream"
"""
FREE_MODELS = ("claude-sonnet-4-6", "claude-haiku-4-5", "gemini-2.0-flash", "omni-moderation-latest")


def report(suite: Suite) -> dict[str, Any]:
    return json.loads((suite.path / "report.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.slow  # two pytester runs through three SDKs, google-genai's first import among them
def test_free_calls_embeddings_and_claude_on_vertex_record_replay_and_are_reported(suite: Suite) -> None:
    suite.pytester.makepyfile(test_more_endpoints=FREE_AND_EMBEDDINGS)
    suite.run("--promptcache=record", "--promptcache-report=report.json").assert_outcomes(passed=3)
    paths = [r.path.split("?")[0] for r in suite.server.requests]
    assert len(paths) == 7
    assert sum(p.endswith("count-tokens:rawPredict") for p in paths) == 1
    assert sum(p.endswith("claude-sonnet-4-5@20250929:streamRawPredict") for p in paths) == 1
    recorded = report(suite)
    totals = recorded["totals"]
    assert (totals["calls"], totals["recorded"], totals["calls_without_usage"], totals["unpriced_calls"]) == (
        7,
        7,
        0,
        0,
    )
    for model in FREE_MODELS:
        free = recorded["by_model"][model]
        assert (free["calls"], free["input_tokens"], free["output_tokens"], free["spent_usd"]) == (1, 0, 0, 0)
    [embedded] = [r for r in suite.server.requests if r.path.endswith(":batchEmbedContents")]
    embeddings = recorded["by_model"]["gemini-embedding-001"]
    assert embeddings["input_tokens"] == embedded.sent_usage["promptTokenCount"] == 3
    assert embeddings["spent_usd"] > 0
    vertex = recorded["by_model"]["claude-sonnet-4-5@20250929"]
    assert vertex["calls"] == 2
    assert vertex["output_tokens"] == 6
    assert vertex["spent_usd"] > 0

    suite.server.stop()
    suite.run("--promptcache-report=report.json").assert_outcomes(passed=3)
    replayed = report(suite)
    assert replayed["totals"]["replayed"] == 7
    for model, bucket in recorded["by_model"].items():
        again = replayed["by_model"][model]
        assert (again["input_tokens"], again["saved_usd"]) == (bucket["input_tokens"], bucket["spent_usd"])


BETA = """
import os

import anthropic


def test_beta():
    claude = anthropic.Anthropic(base_url=os.environ["LLM_URL"], max_retries=0)
    heads = {"anthropic-beta": os.environ.get("BETA", "tools-2024-04-04")}
    ask = [{"role": "user", "content": "which beta"}]
    reply = claude.messages.create(model="claude-sonnet-4-6", max_tokens=9, messages=ask, extra_headers=heads)
    assert reply.content[0].text == "echo: which beta"
"""


@pytest.mark.slow
def test_a_default_key_header_taken_out_no_longer_tells_requests_apart(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.pytester.makepyfile(test_beta=BETA)
    suite.run("--promptcache=record").assert_outcomes(passed=1)
    monkeypatch.setenv("BETA", "another-beta-2025-01-01")
    suite.run().stdout.fnmatch_lines(["*no recording for this request*", '*"anthropic-beta": "another-beta*'])
    suite.pytester.makeini("[pytest]\npromptcache_key_headers =\n    -anthropic-beta\n")
    suite.run("--promptcache=record").assert_outcomes(passed=1)
    monkeypatch.setenv("BETA", "yet-another-beta")
    suite.run().assert_outcomes(passed=1)
    assert suite.server.count() == 2


def test_removing_a_header_that_is_no_default_key_header_is_a_usage_error(suite: Suite) -> None:
    suite.pytester.makepyfile(test_beta=BETA)
    suite.pytester.makeini("[pytest]\npromptcache_key_headers =\n    -x-tenant\n")
    result = suite.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*promptcache_key_headers: '-x-tenant' removes only a default key header*anthropic-version*"]
    )


ONE_CALL = """
import os

import openai


def test_one():
    client = openai.OpenAI(base_url=os.environ["LLM_URL"] + "/v1", max_retries=0)
    text = "across hosts" + os.environ.get("CHANGE", "")
    reply = client.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "user", "content": text}])
    assert reply.choices[0].message.content == "echo: " + text
"""


def test_a_miss_recorded_under_another_host_names_the_alias_that_replays_it(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.pytester.makepyfile(test_one=ONE_CALL)
    suite.run("--promptcache=record").assert_outcomes(passed=1)
    [key] = suite.recordings()
    recorded_host = f"127.0.0.1:{suite.server.port}"
    suite.server.stop()
    with LLMServer() as other:
        monkeypatch.setenv("LLM_URL", other.url)
        result = suite.run()
        result.assert_outcomes(failed=1)
        out = result.stdout.str()
        assert f"elsewhere: this very request is recorded for host {recorded_host}: {key}.json" in out
        assert "promptcache_host_aliases =" in out
        # The short summary repeats the whole message when the terminal is wide enough (CI's is).
        [alias] = set(re.findall(r"^\s+(127\.0\.0\.1:\* = \S+)$", out, re.MULTILINE))
        assert alias == f"127.0.0.1:* = {recorded_host}"

        # A changed prompt too: this host has no recording at all, the other has the endpoint.
        monkeypatch.setenv("CHANGE", " (changed)")
        out = suite.run().stdout.str()
        assert f"elsewhere: POST /v1/chat/completions has recordings for host {recorded_host}, none" in out
        monkeypatch.delenv("CHANGE")

        # The advice, taken as given: the recording replays here, and the server hears nothing.
        suite.pytester.makeini(f"[pytest]\npromptcache_host_aliases =\n    {alias}\n")
        suite.run().assert_outcomes(passed=1)
        assert other.count() == 0
