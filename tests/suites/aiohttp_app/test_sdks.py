"""litellm's async path (its httpx transport over aiohttp) and google-genai's async client."""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import litellm
from google import genai
from suite_support import BASE, calling, prompt

litellm.suppress_debug_info = True
LITELLM: dict[str, Any] = {
    "model": "openai/gpt-4.1-mini",
    "api_base": BASE + "/v1",
    "api_key": os.environ["OPENAI_API_KEY"],
}
GEMINI = "gemini-2.5-flash"


async def test_litellm_acompletion(seen: list[Any]) -> None:
    with calling():
        reply = await litellm.acompletion(
            messages=[{"role": "user", "content": prompt("litellm, json")}], **LITELLM
        )
        assert reply.choices[0].message.content == "echo: litellm, json"
        seen.extend([reply.id, reply.choices[0].message.content, reply.usage.total_tokens])


async def test_litellm_acompletion_stream(seen: list[Any]) -> None:
    with calling():
        stream = await litellm.acompletion(
            messages=[{"role": "user", "content": prompt("litellm, stream")}],
            stream=True,
            stream_options={"include_usage": True},
            **LITELLM,
        )
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "echo: litellm, stream"
        seen.extend([chunks[0].id, [c.choices[0].delta.content for c in chunks if c.choices]])
        seen.append(chunks[-1].usage.total_tokens)


async def test_gemini_generate_content(gemini: genai.Client, seen: list[Any]) -> None:
    with calling():
        reply = await gemini.aio.models.generate_content(model=GEMINI, contents=prompt("gemini, json"))
        assert reply.text == "echo: gemini, json"
        assert isinstance(gemini._api_client._aiohttp_session, aiohttp.ClientSession)
        assert reply.usage_metadata is not None
        seen.extend([reply.response_id, reply.text, reply.usage_metadata.model_dump(exclude_none=True)])


async def test_gemini_generate_content_stream(gemini: genai.Client, seen: list[Any]) -> None:
    with calling():
        stream = await gemini.aio.models.generate_content_stream(
            model=GEMINI, contents=prompt("gemini, stream")
        )
        chunks = [chunk async for chunk in stream]
        assert "".join(c.text or "" for c in chunks) == "echo: gemini, stream"
        assert isinstance(gemini._api_client._aiohttp_session, aiohttp.ClientSession)
        seen.extend([(c.response_id, c.text) for c in chunks])
        usage = chunks[-1].usage_metadata
        assert usage is not None
        seen.append(usage.model_dump(exclude_none=True))
