from __future__ import annotations

import asyncio
import os
from typing import Any

import anthropic
import httpx
import httpx2
import openai

BASE = os.environ["LLM_URL"]
PROMPT = os.environ.get("ASYNC_PROMPT", "summarise the refund policy")
# Recorded and replayed calls show identical answers; live calls (mode off) get fresh ids each time.
SAME_ANSWERS = os.environ.get("PROMPTCACHE_MODE_UNDER_TEST") != "off"


def messages(text: str) -> Any:
    # Any: the same list serves the OpenAI and the Anthropic SDK, whose parameter types differ.
    return [{"role": "user", "content": text}]


async def test_chat(aoai: openai.AsyncOpenAI) -> None:
    reply = await aoai.chat.completions.create(model="gpt-4.1-mini", messages=messages(PROMPT))
    assert PROMPT in (reply.choices[0].message.content or "")


async def test_stream_with_usage(aoai: openai.AsyncOpenAI) -> None:
    stream = await aoai.chat.completions.create(
        model="gpt-4.1-mini",
        messages=messages("stream it"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert "stream it" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None


async def test_anthropic_stream(aclaude: anthropic.AsyncAnthropic) -> None:
    async with aclaude.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=64,
        messages=messages("claude, async"),
    ) as stream:
        text = await stream.get_final_text()
    assert "claude, async" in text


async def test_raw_httpx_and_httpx2() -> None:
    body = {"model": "gpt-4.1-mini", "messages": messages("raw clients")}
    async with httpx.AsyncClient() as one, httpx2.AsyncClient() as two:
        replies = [await c.post(f"{BASE}/v1/chat/completions", json=body) for c in (one, two)]
    assert [r.status_code for r in replies] == [200, 200]
    assert (replies[0].json()["id"] == replies[1].json()["id"]) >= SAME_ANSWERS


async def test_identical_calls_gathered(aoai: openai.AsyncOpenAI) -> None:
    replies = await asyncio.gather(
        *[
            aoai.chat.completions.create(model="gpt-4.1-mini+fault-slow", messages=messages("eight at once"))
            for _ in range(8)
        ]
    )
    assert (len({r.id for r in replies}) == 1) >= SAME_ANSWERS
