"""Prompts cut into the parts a provider's cache sees, answers joined from their deltas, and the token
estimate of a response that carries no usage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pytest_promptcache.estimate import estimate, is_free
from pytest_promptcache.models import EventStreamMessage, RecordedResponse, SSEEvent, TokenUsage
from pytest_promptcache.prompts import response_text, segments, text_of
from pytest_promptcache.tokens import MAX_EXACT_CHARS, count
from pytest_promptcache.usage import Measured, PriceBook, measure, parse_prices

AT = datetime(2026, 6, 1, tzinfo=UTC)


def sse(*payloads: Any) -> RecordedResponse:
    return RecordedResponse(status=200, events=[SSEEvent(data=p) for p in payloads])


def labels(body: Any, family: str | None) -> list[str]:
    return [s.label for s in segments(body, family)]


def test_parts_in_the_order_each_provider_caches_them() -> None:
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    chat = {
        "tools": tools,
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
    }
    assert labels(chat, "openai-chat") == ["tools", "messages[0] (system)", "messages[1] (user)"]
    assert labels({"prompt": "legacy"}, "openai-chat") == ["prompt"]
    responses = {"instructions": "be brief", "tools": tools, "input": [{"role": "user", "content": "hi"}]}
    assert labels(responses, "openai-responses") == ["instructions", "tools", "input[0] (user)"]
    assert labels({"input": "plain"}, "openai-responses") == ["input"]
    claude = {
        "tools": tools,
        "system": [{"type": "text", "text": "s"}],
        "messages": [{"role": "user", "content": "u"}],
    }
    assert labels(claude, "anthropic") == ["tools", "system", "messages[0] (user)"]
    assert labels({**claude, "anthropic_version": "bedrock-2023-05-31"}, "bedrock-invoke")[1] == "system"
    converse = {"toolConfig": {"tools": tools}, "system": [{"text": "s"}], "messages": [{"role": "user"}]}
    assert labels(converse, "bedrock-converse") == ["tools", "system", "messages[0] (user)"]
    gemini = {"systemInstruction": {"parts": [{"text": "s"}]}, "contents": [{"parts": [{"text": "u"}]}]}
    assert labels(gemini, "gemini") == ["systemInstruction", "contents[0]"]
    assert labels({"input": ["a", "b"]}, "openai-embeddings") == ["input[0]", "input[1]"]
    assert labels({"inputText": "titan"}, "bedrock-invoke") == ["inputText"]
    assert labels("not json", "openai-chat") == []
    assert labels({"messages": 5}, "openai-chat") == []


def test_a_part_is_the_same_only_if_all_of_it_is() -> None:
    one = segments({"messages": [{"role": "system", "content": "x"}]}, "openai-chat")[0]
    other = segments({"messages": [{"role": "user", "content": "x"}]}, "openai-chat")[0]
    assert one.text == other.text == "x"
    assert one.ident != other.ident


def test_text_of_every_content_shape() -> None:
    assert text_of([{"type": "text", "text": "a"}, {"type": "image", "source": {}}, "b"]) == "a\nb"
    assert text_of({"type": "tool_use", "input": {"q": 1}}) == '{"q":1}'
    assert text_of({"tool_calls": [{"function": {"name": "f", "arguments": '{"x":'}}]}) == '{"x":'
    assert text_of({"parts": [{"functionCall": {"name": "f", "args": {"a": "b"}}}]}) == '{"a":"b"}'
    assert text_of(42) == ""


def test_answers_joined_from_every_streaming_format() -> None:
    chat = sse(
        {"choices": [{"delta": {"content": "Hel"}}]}, {"choices": [{"delta": {"content": "lo"}}]}, None
    )
    assert response_text(chat) == "Hello"
    legacy = sse({"choices": [{"text": "old"}]})
    assert response_text(legacy) == "old"
    claude = sse(
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "a"}},
        {"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": "{}"}},
    )
    assert response_text(claude) == "a{}"
    responses = sse({"type": "response.output_text.delta", "delta": "r"}, {"type": "response.completed"})
    assert response_text(responses) == "r"
    gemini = RecordedResponse(status=200, body=[{"candidates": [{"content": {"parts": [{"text": "g"}]}}]}])
    assert response_text(gemini) == "g"
    converse = RecordedResponse(
        status=200,
        event_stream=[
            EventStreamMessage(payload={"contentBlockIndex": 0, "delta": {"text": "c"}}, base64=""),
            EventStreamMessage(decoded={"completion": "d"}, base64=""),
        ],
    )
    assert response_text(converse) == "cd"
    assert (
        response_text(RecordedResponse(status=200, body={"type": "message", "content": [{"text": "m"}]}))
        == "m"
    )
    assert response_text(RecordedResponse(status=200, body={"output": [{"content": [{"text": "o"}]}]})) == "o"
    assert response_text(RecordedResponse(status=200, text="plain")) == "plain"


def test_estimate_counts_the_request_and_the_answer_with_chat_framing() -> None:
    body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Hello there, how are you?"}]}
    usage = estimate(body, "openai-chat", sse({"choices": [{"delta": {"content": "Fine, thanks."}}]}))
    assert usage == TokenUsage(
        input_tokens=count("Hello there, how are you?") + 3 + 3,
        output_tokens=count("Fine, thanks."),
        source="estimated",
    )
    assert usage.estimated
    assert estimate(None, "openai-chat", sse({"choices": []})) is None


def test_long_texts_are_counted_at_the_rate_of_their_first_part() -> None:
    text = "abc " * (MAX_EXACT_CHARS // 2)
    head = count(text[:MAX_EXACT_CHARS])
    assert count(text) == pytest.approx(head * 2, rel=0.01)
    assert count("") == 0


@pytest.mark.parametrize(
    ("method", "path", "free"),
    [
        ("POST", "/v1/messages/count_tokens", True),
        ("POST", "/v1beta/models/gemini-2.5-flash:countTokens", True),
        ("POST", "/v1/moderations", True),
        ("POST", "/v1/responses/input_tokens", True),
        ("GET", "/v1/files/file-1/content", True),
        ("POST", "/v1/chat/completions", False),
    ],
)
def test_free_endpoints(method: str, path: str, free: bool) -> None:
    assert is_free(method, path) is free


def test_measure_estimates_a_stream_without_usage_and_prices_it() -> None:
    prices = PriceBook(parse_prices(["house input=1000000 output=0"]))
    body = {"model": "house", "messages": [{"role": "user", "content": "one two"}]}
    stream = sse({"model": "house", "choices": [{"delta": {"content": "x"}}]})
    measured = measure(
        stream, "/v1/chat/completions", "house", "http://h/v1/chat/completions", AT, prices, body=body
    )
    assert measured.usage is not None
    assert measured.usage.source == "estimated"
    assert measured.cost_usd == measured.usage.input_tokens  # a dollar per input token
    free = measure(
        RecordedResponse(status=200, body={"input_tokens": 9}),
        "/v1/messages/count_tokens",
        None,
        "u",
        AT,
        prices,
    )
    assert free == Measured(TokenUsage(source="free"), 0.0, 0.0)


def test_measure_prices_what_the_cache_saved() -> None:
    prices = PriceBook(parse_prices(["house input=10 output=0 cache_read=1 cache_write=20"]))
    body = RecordedResponse(
        status=200,
        body={
            "model": "house",
            "type": "message",
            "usage": {"input_tokens": 0, "cache_read_input_tokens": 1_000_000},
        },
    )
    read = measure(body, "/v1/messages", "house", "http://h/v1/messages", AT, prices)
    assert (read.cost_usd, read.cache_saved_usd) == (1.0, 9.0)
    written = RecordedResponse(
        status=200,
        body={
            "model": "house",
            "type": "message",
            "usage": {"input_tokens": 0, "cache_creation_input_tokens": 1_000_000},
        },
    )
    assert measure(written, "/v1/messages", "house", "u", AT, prices).cache_saved_usd == -10.0
    unpriced = measure(body, "/v1/messages", "other", "u", AT, PriceBook())
    assert unpriced.cost_usd is None
    assert unpriced.cache_saved_usd is None
