"""A newcomer's suite: the SDKs and raw clients an LLM app uses, as it would use them."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import anthropic
import httpx
import httpx2
import openai

BASE = os.environ["LLM_URL"]
GPT = "gpt-4.1-mini"
CLAUDE = "claude-sonnet-4-6"
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_openai_chat(oai: openai.OpenAI, seen: list[Any]) -> None:
    r = oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "Say hello"}])
    assert r.choices[0].message.content == "echo: Say hello"
    seen += [r.id, r.created, r.choices[0].message.content, r.usage.model_dump() if r.usage else None]


def test_openai_chat_twice_is_one_live_call(oai: openai.OpenAI, seen: list[Any]) -> None:
    for _ in range(2):
        r = oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "Same twice"}])
        seen.append(r.id)
    assert seen[0] == seen[1]


def test_openai_chat_async(aoai: openai.AsyncOpenAI, seen: list[Any]) -> None:
    async def go() -> Any:
        return await aoai.chat.completions.create(
            model=GPT, messages=[{"role": "user", "content": "Async hi"}]
        )

    r = asyncio.run(go())
    seen += [r.id, r.choices[0].message.content]


def test_openai_stream_with_usage(oai: openai.OpenAI, seen: list[Any]) -> None:
    stream = oai.chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": "Stream with usage please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c.model_dump(mode="json") for c in stream]
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    seen += chunks


def test_openai_stream_without_usage(oai: openai.OpenAI, seen: list[Any]) -> None:
    stream = oai.chat.completions.create(
        model=GPT, messages=[{"role": "user", "content": "Stream without usage"}], stream=True
    )
    text = ""
    for chunk in stream:
        seen.append(chunk.id)
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text == "echo: Stream without usage"
    seen.append(text)


def test_openai_stream_async(aoai: openai.AsyncOpenAI, seen: list[Any]) -> None:
    async def go() -> list[Any]:
        stream = await aoai.chat.completions.create(
            model=GPT, messages=[{"role": "user", "content": "Async stream"}], stream=True
        )
        return [c.model_dump(mode="json") async for c in stream]

    seen += asyncio.run(go())


def test_openai_tools(oai: openai.OpenAI, seen: list[Any]) -> None:
    r = oai.chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    seen += [r.id, call.id, call.function.arguments]  # type: ignore[union-attr]


def test_openai_responses(oai: openai.OpenAI, seen: list[Any]) -> None:
    r = oai.responses.create(model=GPT, input="Tell me a fact")
    assert r.output_text == "echo: Tell me a fact"
    seen += [r.id, r.output_text]


def test_openai_responses_stream(oai: openai.OpenAI, seen: list[Any]) -> None:
    with oai.responses.stream(model=GPT, input="Stream a fact") as stream:
        seen += [event.type for event in stream]
        final = stream.get_final_response()
    seen += [final.id, final.output_text]


def test_openai_embeddings(oai: openai.OpenAI, seen: list[Any]) -> None:
    r = oai.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert len(r.data) == 2
    seen += [d.embedding for d in r.data]


def test_anthropic_create(claude: anthropic.Anthropic, seen: list[Any]) -> None:
    m = claude.messages.create(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "Hi Claude"}]
    )
    assert m.content[0].text == "echo: Hi Claude"  # type: ignore[union-attr]
    seen += [m.id, m.usage.model_dump()]


def test_anthropic_stream_true(claude: anthropic.Anthropic, seen: list[Any]) -> None:
    stream = claude.messages.create(
        model=CLAUDE,
        max_tokens=64,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Stream Claude"}],
        stream=True,
    )
    seen += [event.model_dump(mode="json") for event in stream]


def test_anthropic_messages_stream(claude: anthropic.Anthropic, seen: list[Any]) -> None:
    with claude.messages.stream(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "Helper stream"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: Helper stream"
    seen += [final.id, text]


def test_anthropic_async_stream(aclaude: anthropic.AsyncAnthropic, seen: list[Any]) -> None:
    async def go() -> anthropic.types.Message:
        async with aclaude.messages.stream(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "Async Claude"}]
        ) as stream:
            return await stream.get_final_message()

    final = asyncio.run(go())
    seen += [final.id, final.content[0].text]  # type: ignore[union-attr]


def test_anthropic_tools(claude: anthropic.Anthropic, seen: list[Any]) -> None:
    m = claude.messages.create(
        model=CLAUDE,
        max_tokens=64,
        tools=[
            {
                "name": "get_weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    )
    assert m.stop_reason == "tool_use"
    seen += [m.id, m.content[0].model_dump()]


def test_raw_httpx_gemini_with_query_key(seen: list[Any]) -> None:
    r = httpx.post(
        f"{BASE}/v1beta/models/gemini-2.5-flash:generateContent",
        params={"key": os.environ["GEMINI_API_KEY"]},
        json={"contents": [{"parts": [{"text": "Gemini hello"}]}]},
    )
    r.raise_for_status()
    seen.append(r.json())


def test_raw_httpx2_gemini_stream(seen: list[Any]) -> None:
    with (
        httpx2.Client() as client,
        client.stream(
            "POST",
            f"{BASE}/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            params={"alt": "sse"},
            headers={"x-goog-api-key": os.environ["GEMINI_API_KEY"]},
            json={"contents": [{"parts": [{"text": "Gemini stream"}]}]},
        ) as r,
    ):
        seen += [line for line in r.iter_lines() if line]


def test_raw_httpx_async_gzip(seen: list[Any]) -> None:
    async def go() -> Any:
        async with httpx.AsyncClient() as client:
            r = await client.post(
                f"{BASE}/v1/chat/completions",
                headers={"authorization": f"Bearer {os.environ['OPENAI_API_KEY']}", "x-test-gzip": "1"},
                json={"model": GPT, "messages": [{"role": "user", "content": "Compressed please"}]},
            )
            return r.json()

    seen.append(asyncio.run(go()))


def test_raw_httpx2_async_chat(seen: list[Any]) -> None:
    async def go() -> Any:
        async with httpx2.AsyncClient() as client:
            r = await client.post(
                f"{BASE}/v1/chat/completions",
                headers={"authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"},
                json={"messages": [{"content": "Raw httpx2", "role": "user"}], "model": GPT},
            )
            return r.json()

    seen.append(asyncio.run(go()))
