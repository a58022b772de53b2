"""Usage of the endpoints beyond chat: Cohere v2 (as billed), Ollama (a body or a stream's last line),
Gemini embeddings, and free calls (counted at zero cost, never as calls without usage)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pytest_promptcache.models import RecordedResponse, SSEEvent, TokenUsage
from pytest_promptcache.settings import DEFAULT_ENDPOINTS, EndpointPattern
from pytest_promptcache.usage import Measured, PriceBook, api_family, extract, is_free, measure, parse_prices
from pytest_promptcache.usage_cohere_ollama import MAX_LAST_LINE

AT = datetime(2026, 6, 1, tzinfo=UTC)
VERTEX = "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929"


def body(data: Any, status: int = 200) -> RecordedResponse:
    return RecordedResponse(status=status, headers={"content-type": "application/json"}, body=data)


def ndjson(*lines: Any) -> RecordedResponse:
    text = "".join(json.dumps(line) + "\n" for line in lines)
    return RecordedResponse(status=200, headers={"content-type": "application/x-ndjson"}, text=text)


def cohere_stream(*payloads: dict[str, Any]) -> RecordedResponse:
    events = [SSEEvent(event=p["type"], data=p) for p in payloads]
    return RecordedResponse(status=200, headers={"content-type": "text/event-stream"}, events=events)


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/v2/chat", "cohere"),
        ("/v2/embed", "cohere"),
        ("/api/chat", "ollama"),
        ("/api/generate", "ollama"),
        ("/api/embed", "ollama"),
        ("/v1beta/models/gemini-embedding-001:batchEmbedContents", "gemini"),
        ("/v1beta/models/gemini-embedding-001:embedContent", "gemini"),
        (VERTEX + ":rawPredict", "anthropic"),
        (VERTEX + ":streamRawPredict", "anthropic"),
        ("/v1/projects/p/locations/r/publishers/google/models/gemini-2.5-flash:rawPredict", None),
    ],
)
def test_api_family_of_the_new_endpoints(path: str, family: str | None) -> None:
    assert api_family(path) == family


@pytest.mark.parametrize(
    "path",
    [
        "/v1/messages/count_tokens",
        "/v1/projects/p/locations/r/publishers/anthropic/models/count-tokens:rawPredict",
        "/v1beta/models/gemini-2.5-flash:countTokens",
        "/v1/responses/input_tokens",
        "/v1/moderations",
    ],
)
def test_counting_and_moderation_are_free_calls_matched_by_default(path: str) -> None:
    assert is_free("POST", path)
    assert any(EndpointPattern.parse(e).matches("any.host", path) for e in DEFAULT_ENDPOINTS)
    measured = measure(body({"input_tokens": 12}), path, "m", "https://x" + path, AT, PriceBook())
    assert measured == Measured(TokenUsage(source="free"), 0.0, 0.0)


def test_a_free_endpoint_that_reports_tokens_is_priced_and_an_error_is_no_usage() -> None:
    prices = PriceBook(parse_prices(["mistral-moderation-latest input=0.1 output=0"]))
    reported = body({"model": "mistral-moderation-latest", "usage": {"prompt_tokens": 1_000_000}})
    measured = measure(reported, "/v1/moderations", None, "https://x/v1/moderations", AT, prices)
    assert measured.usage is not None
    assert not measured.usage.free
    assert (measured.usage.input_tokens, measured.cost_usd) == (1_000_000, 0.1)
    failed = body({"error": "nope"}, status=400)
    assert measure(failed, "/v1/moderations", "m", "u", AT, PriceBook()) == Measured()


@pytest.mark.parametrize(
    "path",
    ["/v1/chat", "/api/tags", "/v1/models", "/v1/projects/p/publishers/google/models/x:rawPredict"],
)
def test_neighbours_of_the_new_endpoints_are_not_llm_calls(path: str) -> None:
    assert not any(EndpointPattern.parse(e).matches("any.host", path) for e in DEFAULT_ENDPOINTS)
    assert not is_free("POST", path)


# -- Cohere --------------------------------------------------------------------------------------------


def test_cohere_chat_counts_what_is_billed_not_the_template() -> None:
    usage = {
        "billed_units": {"input_tokens": 7, "output_tokens": 3.0},
        "tokens": {"input_tokens": 71, "output_tokens": 3},
    }
    assert extract(body({"id": "x", "usage": usage}), "cohere") == (
        TokenUsage(input_tokens=7, output_tokens=3),
        None,
    )


def test_cohere_without_a_bill_counts_tokens_and_without_either_has_no_usage() -> None:
    tokens = {"tokens": {"input_tokens": 71, "output_tokens": 3}}
    assert extract(body({"usage": tokens}), "cohere")[0] == TokenUsage(input_tokens=71, output_tokens=3)
    assert extract(body({"usage": {"cached_tokens": 4}}), "cohere") == (None, None)
    assert extract(body({"usage": "?"}), "cohere") == (None, None)
    assert extract(body([1, 2]), "cohere") == (None, None)
    odd = {"billed_units": {"input_tokens": True, "output_tokens": -1}, "tokens": {"input_tokens": 2.5}}
    assert extract(body({"usage": odd}), "cohere") == (None, None)


def test_cohere_embeddings_are_billed_in_meta() -> None:
    embedded = {"embeddings": {"float": [[0.1]]}, "meta": {"billed_units": {"input_tokens": 4}}}
    assert extract(body(embedded), "cohere")[0] == TokenUsage(input_tokens=4)


def test_a_cohere_stream_is_counted_at_message_end() -> None:
    usage = {"billed_units": {"input_tokens": 5, "output_tokens": 2}}
    events = cohere_stream(
        {"type": "message-start", "id": "c"},
        {"type": "content-delta", "delta": {"message": {"content": {"text": "hi"}}}},
        {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": usage}},
    )
    assert extract(events, "cohere")[0] == TokenUsage(input_tokens=5, output_tokens=2)
    assert extract(cohere_stream({"type": "message-end", "delta": "?"}), "cohere") == (None, None)


def test_cohere_is_priced_with_genai_prices_cohere_table() -> None:
    measured = measure(
        body({"usage": {"billed_units": {"input_tokens": 1_000_000, "output_tokens": 0}}}),
        "/v2/chat",
        "command-a-03-2025",
        "http://127.0.0.1:1/v2/chat",
        AT,
        PriceBook(),
    )
    usage, cost = measured.usage, measured.cost_usd
    assert usage == TokenUsage(input_tokens=1_000_000)
    assert cost is not None
    assert Decimal(str(cost)) == Decimal("2.5")


# -- Ollama --------------------------------------------------------------------------------------------


def test_ollama_counts_from_a_body_and_from_a_streams_last_line() -> None:
    done = {"model": "llama3.2", "done": True, "prompt_eval_count": 26, "eval_count": 9}
    assert extract(body(done), "ollama") == (TokenUsage(input_tokens=26, output_tokens=9), "llama3.2")
    streamed = ndjson({"model": "llama3.2", "message": {"content": "hi"}, "done": False}, done)
    assert extract(streamed, "ollama") == (TokenUsage(input_tokens=26, output_tokens=9), "llama3.2")


def test_ollama_with_its_prompt_cached_counts_output_only() -> None:
    cached = {"model": "llama3.2", "done": True, "eval_count": 9}
    assert extract(body(cached), "ollama")[0] == TokenUsage(output_tokens=9)


@pytest.mark.parametrize(
    "response",
    [
        ndjson({"model": "llama3.2", "done": False}),
        RecordedResponse(status=200, headers={}, text="not json\n"),
        RecordedResponse(status=200, headers={}, text="[1, 2]\n"),
        RecordedResponse(status=200, headers={}, text='{"eval_count": 1' + " " * MAX_LAST_LINE + "}"),
        RecordedResponse(status=200, headers={}, base64="AAAA"),
    ],
)
def test_ollama_without_counts_has_no_usage(response: RecordedResponse) -> None:
    assert extract(response, "ollama")[0] is None


def test_ollama_models_are_unpriced_unless_the_user_prices_them() -> None:
    # deepseek-r1:8b is a local distillation: genai-prices would price it as DeepSeek's API by its name.
    done = body({"model": "deepseek-r1:8b", "done": True, "prompt_eval_count": 1000, "eval_count": 1000})
    url = "http://localhost:11434/api/chat"
    usage = TokenUsage(input_tokens=1000, output_tokens=1000)
    assert measure(done, "/api/chat", "deepseek-r1:8b", url, AT, PriceBook()) == Measured(usage)
    free = PriceBook(parse_prices(["deepseek-r1:8b input=0 output=0"]))
    assert measure(done, "/api/chat", "deepseek-r1:8b", url, AT, free) == Measured(usage, 0.0, 0.0)


# -- Gemini embeddings ---------------------------------------------------------------------------------


def test_gemini_embeddings_are_counted_and_priced_when_the_answer_has_usage() -> None:
    path = "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    answered = body({"embeddings": [{"values": [0.1]}], "usageMetadata": {"promptTokenCount": 1_000_000}})
    url = "http://127.0.0.1:1" + path
    measured = measure(answered, path, "gemini-embedding-001", url, AT, PriceBook())
    assert measured == Measured(TokenUsage(input_tokens=1_000_000), 0.15, 0.0)
    bare = body({"embedding": {"values": [0.1]}})
    assert measure(bare, path, "gemini-embedding-001", "u", AT, PriceBook()) == Measured()
