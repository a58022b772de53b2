"""litellm ``completion`` (sync, over httpx) and google-genai's sync client, stream and not."""

from __future__ import annotations

import os
from typing import Any

import litellm
from google import genai
from more_support import calling, prompt

litellm.suppress_debug_info = True
LITELLM: dict[str, Any] = {
    "model": "openai/gpt-4.1-mini",
    "api_base": os.environ["LLM_URL"] + "/v1",
    "api_key": os.environ["OPENAI_API_KEY"],
}
GEMINI = "gemini-2.5-flash"


def test_litellm_completion(seen: list[Any]) -> None:
    with calling():
        reply = litellm.completion(messages=[{"role": "user", "content": prompt("litellm, sync")}], **LITELLM)
        assert reply.choices[0].message.content == "echo: litellm, sync"
        seen.extend([reply.id, reply.choices[0].message.content, reply.usage.total_tokens])


def test_litellm_completion_stream(seen: list[Any]) -> None:
    with calling():
        stream = litellm.completion(
            messages=[{"role": "user", "content": prompt("litellm, sync stream")}],
            stream=True,
            stream_options={"include_usage": True},
            **LITELLM,
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "echo: litellm, sync stream"
        seen.extend([chunks[0].id, [c.choices[0].delta.content for c in chunks if c.choices]])
        seen.append(chunks[-1].usage.total_tokens)


def test_gemini_generate_content(gemini: genai.Client, seen: list[Any]) -> None:
    with calling():
        reply = gemini.models.generate_content(model=GEMINI, contents=prompt("gemini, sync"))
        assert reply.text == "echo: gemini, sync"
        assert reply.usage_metadata is not None
        seen.extend([reply.response_id, reply.text, reply.usage_metadata.model_dump(exclude_none=True)])


def test_gemini_generate_content_stream(gemini: genai.Client, seen: list[Any]) -> None:
    with calling():
        stream = gemini.models.generate_content_stream(model=GEMINI, contents=prompt("gemini, sync stream"))
        chunks = list(stream)
        assert "".join(c.text or "" for c in chunks) == "echo: gemini, sync stream"
        seen.extend([(c.response_id, c.text) for c in chunks])
        usage = chunks[-1].usage_metadata
        assert usage is not None
        seen.append(usage.model_dump(exclude_none=True))
