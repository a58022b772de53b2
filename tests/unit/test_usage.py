"""Usage extraction from each provider's JSON bodies and streams, in genai-prices' token convention:
input counts the whole input (cache reads and writes included), output includes reasoning."""

from __future__ import annotations

from dataclasses import astuple
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pytest_promptcache.models import RecordedResponse, SSEEvent, TokenUsage
from pytest_promptcache.usage import Measured, PriceBook, api_family, extract, measure, parse_prices

AT = datetime(2026, 1, 15, tzinfo=UTC)


def body(data: Any, status: int = 200) -> RecordedResponse:
    return RecordedResponse(status=status, headers={"content-type": "application/json"}, body=data)


def stream(*payloads: Any, named: bool = False) -> RecordedResponse:
    events = [
        SSEEvent(event=p.get("type") if named and isinstance(p, dict) else None, data=p)
        if not isinstance(p, str)
        else SSEEvent(text=p)
        for p in payloads
    ]
    return RecordedResponse(status=200, headers={"content-type": "text/event-stream"}, events=events)


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/v1/messages", "anthropic"),
        ("/v1beta/models/gemini-2.5-flash:generateContent", "gemini"),
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", "gemini"),
        ("/v1/responses", "openai-responses"),
        ("/v1/embeddings", "openai-embeddings"),
        ("/v1/chat/completions", "openai-chat"),
        ("/v1/completions", "openai-chat"),
        ("/v1/models", None),
        ("/v1/messages/count_tokens", None),
    ],
)
def test_api_family(path: str, family: str | None) -> None:
    assert api_family(path) == family


# -- OpenAI -----------------------------------------------------------------------------------------------


def test_openai_chat_json_with_cached_and_reasoning_tokens() -> None:
    response = body(
        {
            "model": "gpt-4.1-mini-2025-04-14",
            "usage": {
                "prompt_tokens": 120,
                "completion_tokens": 30,
                "total_tokens": 150,
                "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 12},
            },
        }
    )
    usage, model = extract(response, "openai-chat")
    assert usage == TokenUsage(
        input_tokens=120, cached_input_tokens=100, output_tokens=30, reasoning_tokens=12
    )
    assert model == "gpt-4.1-mini-2025-04-14"
    assert usage.total_tokens == 150


def test_openai_responses_json() -> None:
    response = body(
        {
            "model": "o4-mini",
            "usage": {
                "input_tokens": 50,
                "input_tokens_details": {"cached_tokens": 20},
                "output_tokens": 40,
                "output_tokens_details": {"reasoning_tokens": 32},
            },
        }
    )
    assert extract(response, "openai-responses") == (
        TokenUsage(input_tokens=50, cached_input_tokens=20, output_tokens=40, reasoning_tokens=32),
        "o4-mini",
    )


def test_openai_embeddings_json() -> None:
    response = body({"model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}})
    assert extract(response, "openai-embeddings") == (TokenUsage(input_tokens=8), "text-embedding-3-small")


def test_openai_chat_stream_takes_usage_from_the_final_chunk() -> None:
    response = stream(
        {"model": "gpt-4.1-mini", "choices": [{"delta": {"role": "assistant"}}], "usage": None},
        {"model": "gpt-4.1-mini", "choices": [{"delta": {"content": "hi"}}], "usage": None},
        {
            "model": "gpt-4.1-mini-2025-04-14",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2},
        },
        "[DONE]",
    )
    assert extract(response, "openai-chat") == (
        TokenUsage(input_tokens=9, output_tokens=2),
        "gpt-4.1-mini-2025-04-14",
    )


def test_openai_chat_stream_without_include_usage_has_a_model_but_no_usage() -> None:
    response = stream({"model": "gpt-4.1-mini", "choices": [{"delta": {"content": "hi"}}]}, "[DONE]")
    assert extract(response, "openai-chat") == (None, "gpt-4.1-mini")


@pytest.mark.parametrize("final", ["response.completed", "response.incomplete"])
def test_openai_responses_stream(final: str) -> None:
    response = stream(
        {"type": "response.created", "response": {"model": "early", "usage": None}},
        {"type": "response.output_text.delta", "delta": "hi"},
        {
            "type": final,
            "response": {"model": "gpt-4.1", "usage": {"input_tokens": 11, "output_tokens": 3}},
        },
        named=True,
    )
    assert extract(response, "openai-responses") == (TokenUsage(input_tokens=11, output_tokens=3), "gpt-4.1")


def test_openai_responses_stream_that_never_completed_has_no_usage() -> None:
    response = stream({"type": "response.created", "response": {"model": "gpt-4.1", "usage": None}})
    assert extract(response, "openai-responses") == (None, None)


# -- Anthropic --------------------------------------------------------------------------------------------


def test_anthropic_json_counts_cache_reads_and_writes_as_input() -> None:
    response = body(
        {
            "model": "claude-sonnet-4-6",
            "usage": {
                "input_tokens": 32,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 50,
                "output_tokens": 13,
            },
        }
    )
    assert extract(response, "anthropic") == (
        TokenUsage(input_tokens=182, cached_input_tokens=100, cache_write_tokens=50, output_tokens=13),
        "claude-sonnet-4-6",
    )


def test_anthropic_json_without_usage() -> None:
    assert extract(body({"model": "claude-sonnet-4-6"}), "anthropic") == (None, "claude-sonnet-4-6")


def test_anthropic_stream_message_delta_replaces_the_start_counts() -> None:
    response = stream(
        {
            "type": "message_start",
            "message": {
                "model": "claude-sonnet-4-6",
                "usage": {
                    "input_tokens": 32,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 0,
                    "output_tokens": 1,
                },
            },
        },
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
        # Cumulative; null fields leave the earlier value alone.
        {"type": "message_delta", "usage": {"output_tokens": 15, "input_tokens": None}},
        {"type": "message_stop"},
        named=True,
    )
    assert extract(response, "anthropic") == (
        TokenUsage(input_tokens=132, cached_input_tokens=100, output_tokens=15),
        "claude-sonnet-4-6",
    )


def test_anthropic_stream_without_usage() -> None:
    response = stream({"type": "ping"}, {"type": "message_stop"}, named=True)
    assert extract(response, "anthropic") == (None, None)


# -- Gemini -----------------------------------------------------------------------------------------------


def test_gemini_json_bills_thoughts_as_output_and_tool_prompts_as_input() -> None:
    response = body(
        {
            "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {
                "promptTokenCount": 20,
                "toolUsePromptTokenCount": 5,
                "cachedContentTokenCount": 10,
                "candidatesTokenCount": 7,
                "thoughtsTokenCount": 40,
                "totalTokenCount": 72,
            },
        }
    )
    assert extract(response, "gemini") == (
        TokenUsage(input_tokens=25, cached_input_tokens=10, output_tokens=47, reasoning_tokens=40),
        "gemini-2.5-flash",
    )


def test_gemini_stream_keeps_the_last_counts() -> None:
    response = stream(
        {
            "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1},
        },
        {
            "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6},
        },
    )
    assert extract(response, "gemini") == (TokenUsage(input_tokens=4, output_tokens=6), "gemini-2.5-flash")


def test_gemini_json_without_metadata_or_version() -> None:
    assert extract(body({"candidates": []}), "gemini") == (None, None)


# -- odd shapes -------------------------------------------------------------------------------------------


def test_counts_that_are_not_integers_count_as_zero() -> None:
    response = body(
        {
            "model": 7,
            "usage": {
                "prompt_tokens": True,
                "completion_tokens": "3",
                "prompt_tokens_details": None,
                "completion_tokens_details": {"reasoning_tokens": 1.5},
            },
        }
    )
    assert extract(response, "openai-chat") == (TokenUsage(), None)


@pytest.mark.parametrize("data", [["a list"], "text", None])
def test_a_body_that_is_not_an_object_has_no_usage(data: Any) -> None:
    assert extract(body(data), "openai-chat") == (None, None)


def test_a_usage_that_is_neither_shape_is_no_usage() -> None:
    assert extract(body({"model": "m", "usage": {"tokens": 3}}), "openai-chat") == (None, "m")
    assert extract(body({"model": "m", "usage": "3"}), "openai-chat") == (None, "m")


def test_stream_events_without_json_objects_are_skipped() -> None:
    response = stream("[DONE]", ["a", "list"], {"model": "m", "usage": {"prompt_tokens": 1}})
    assert extract(response, "openai-chat") == (TokenUsage(input_tokens=1), "m")


# -- measure ----------------------------------------------------------------------------------------------

PRICES = PriceBook(parse_prices(["house-model input=1 output=2"]))
URL = "http://127.0.0.1:8765/v1/chat/completions"


def test_measure_prices_the_usage_rounded_to_money() -> None:
    response = body({"model": "house-model", "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    usage, cost, _ = astuple(measure(response, "/v1/chat/completions", "house-model", URL, AT, PRICES))
    assert usage == TokenUsage(input_tokens=1, output_tokens=1)
    assert cost == float(Decimal("0.000003"))


def test_measure_falls_back_to_the_request_model_when_the_response_model_has_no_price() -> None:
    response = body({"model": "house-model-v9-unknown", "usage": {"prompt_tokens": 1_000_000}})
    assert measure(response, "/v1/chat/completions", "house-model", URL, AT, PRICES).cost_usd == 1.0


def test_measure_errors_and_responses_without_usage() -> None:
    usage = {"usage": {"prompt_tokens": 5, "completion_tokens": 5}}
    assert (
        measure(body(usage, status=429), "/v1/chat/completions", "house-model", URL, AT, PRICES) == Measured()
    )
    assert measure(body({}), "/v1/chat/completions", "house-model", URL, AT, PRICES) == Measured()


def test_measure_a_model_nobody_prices_has_usage_but_no_cost() -> None:
    response = body({"model": "in-house-llm-7", "usage": {"prompt_tokens": 5, "completion_tokens": 5}})
    assert measure(response, "/v1/chat/completions", None, URL, AT, PriceBook()) == Measured(
        TokenUsage(input_tokens=5, output_tokens=5)
    )


def test_measure_ignores_the_query_string_of_the_url() -> None:
    # genai-prices matches providers by URL; a key in the query must neither leak there nor break the match.
    response = body({"modelVersion": "gemini-2.5-flash", "usageMetadata": {"promptTokenCount": 1_000_000}})
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    url = "https://generativelanguage.googleapis.com" + path
    with_key = measure(response, path, None, url + "?key=AIza-secret", AT, PriceBook())
    assert with_key == measure(response, path, None, url, AT, PriceBook())
    assert with_key.cost_usd is not None
