"""Anthropic calls of an LLM app, and a download it needs, recorded with pytest-recording."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx
import pytest
from vcr_sample import BASE

CLAUDE = "claude-sonnet-4-6"


def text_of(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


@pytest.mark.vcr
def test_message(claude: anthropic.Anthropic) -> None:
    reply = claude.messages.create(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "Hi Claude"}]
    )
    assert text_of(reply) == "echo: Hi Claude"


@pytest.mark.vcr
def test_message_with_system(claude: anthropic.Anthropic) -> None:
    reply = claude.messages.create(
        model=CLAUDE,
        max_tokens=64,
        system="Answer as a pirate.",
        messages=[{"role": "user", "content": "Where is the treasure?"}],
    )
    assert text_of(reply) == "echo: Where is the treasure?"
    assert reply.usage.input_tokens > 0


@pytest.mark.vcr
def test_message_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "Stream to me"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "echo: Stream to me"


@pytest.mark.vcr
def test_tool_use(claude: anthropic.Anthropic) -> None:
    reply = claude.messages.create(
        model=CLAUDE,
        max_tokens=64,
        tools=[{"name": "lookup_order", "description": "Find an order", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "Where is order 42?"}],
    )
    assert any(block.type == "tool_use" and block.name == "lookup_order" for block in reply.content)


@pytest.mark.vcr
def test_multi_turn(claude: anthropic.Anthropic) -> None:
    history: list[Any] = [{"role": "user", "content": "Remember the number 7"}]
    first = claude.messages.create(model=CLAUDE, max_tokens=64, messages=history)
    history += [
        {"role": "assistant", "content": text_of(first)},
        {"role": "user", "content": "Which number?"},
    ]
    second = claude.messages.create(model=CLAUDE, max_tokens=64, messages=history)
    assert text_of(second) == "echo: Which number?"


@pytest.mark.vcr
def test_async_message(aclaude: anthropic.AsyncAnthropic) -> None:
    async def go() -> Any:
        return await aclaude.messages.create(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "Async Claude"}]
        )

    assert text_of(asyncio.run(go())) == "echo: Async Claude"


@pytest.mark.vcr
def test_beta_header(claude: anthropic.Anthropic) -> None:
    # vcr_config filters anthropic-beta out of the cassette.
    reply = claude.messages.create(
        model=CLAUDE,
        max_tokens=64,
        messages=[{"role": "user", "content": "Cache this"}],
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    assert text_of(reply) == "echo: Cache this"


@pytest.mark.vcr
def test_download_then_describe(claude: anthropic.Anthropic) -> None:
    image = httpx.get(f"{BASE}/files/cat.png")
    assert image.status_code == 200
    assert len(image.content) == 256
    reply = claude.messages.create(
        model=CLAUDE,
        max_tokens=64,
        messages=[{"role": "user", "content": f"Describe an image of {len(image.content)} bytes"}],
    )
    assert text_of(reply) == "echo: Describe an image of 256 bytes"
