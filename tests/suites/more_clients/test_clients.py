"""One test per client and call shape. With MORE_CLIENTS_CHANGE set, every prompt changes and every test
swallows whatever its call raises: only the plugin can then fail it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cohere
import litellm
import ollama
from google import genai

BASE = os.environ["LLM_URL"]
CHANGE = os.environ.get("MORE_CLIENTS_CHANGE", "")
litellm.suppress_debug_info = True
LITELLM: dict[str, Any] = {
    "model": "openai/gpt-4.1-mini",
    "api_base": BASE + "/v1",
    "api_key": os.environ["OPENAI_API_KEY"],
}
GEMINI = "gemini-2.5-flash"
COMMAND = "command-a-03-2025"
LLAMA = "llama3.2"


def prompt(text: str) -> str:
    return text + CHANGE


@contextmanager
def calling() -> Iterator[None]:
    """The test's call and its checks; when the prompts are changed, the test itself never fails."""
    try:
        yield
    except Exception:
        if not CHANGE:
            raise


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
        chunks = list(gemini.models.generate_content_stream(model=GEMINI, contents=prompt("gemini, sync stream")))
        assert "".join(c.text or "" for c in chunks) == "echo: gemini, sync stream"
        seen.extend([(c.response_id, c.text) for c in chunks])
        usage = chunks[-1].usage_metadata
        assert usage is not None
        seen.append(usage.model_dump(exclude_none=True))


def test_cohere_chat(co: cohere.ClientV2, seen: list[Any]) -> None:
    with calling():
        reply = co.chat(model=COMMAND, messages=[{"role": "user", "content": prompt("cohere, json")}])
        assert reply.message.content is not None
        text = reply.message.content[0].text  # type: ignore[union-attr]
        assert text == "echo: cohere, json"
        assert reply.usage is not None
        seen.extend([reply.id, text, reply.usage.model_dump(exclude_none=True)])


def test_cohere_chat_stream(co: cohere.ClientV2, seen: list[Any]) -> None:
    with calling():
        events = list(
            co.chat_stream(model=COMMAND, messages=[{"role": "user", "content": prompt("cohere, stream")}])
        )
        kinds = [e.type for e in events]
        assert kinds[0] == "message-start"
        assert kinds[-1] == "message-end"
        deltas = [e.delta.message.content.text for e in events if e.type == "content-delta"]  # type: ignore[union-attr]
        assert "".join(deltas) == "echo: cohere, stream"
        seen.extend([events[0].id, deltas, events[-1].delta.usage.model_dump(exclude_none=True)])  # type: ignore[union-attr]


def test_cohere_embed(co: cohere.ClientV2, seen: list[Any]) -> None:
    with calling():
        reply = co.embed(
            model="embed-v4.0",
            texts=[prompt("cohere, embed one"), "two"],
            input_type="search_document",
            embedding_types=["float"],
        )
        assert reply.embeddings.float_ is not None
        assert len(reply.embeddings.float_) == 2
        seen.extend([reply.id, reply.embeddings.float_])


def test_ollama_chat(llama: ollama.Client, seen: list[Any]) -> None:
    with calling():
        reply = llama.chat(model=LLAMA, messages=[{"role": "user", "content": prompt("ollama, json")}])
        assert reply.message.content == "echo: ollama, json"
        seen.extend([reply.created_at, reply.message.content, reply.prompt_eval_count, reply.eval_count])


def test_ollama_chat_stream(llama: ollama.Client, seen: list[Any]) -> None:
    with calling():
        parts = list(
            llama.chat(model=LLAMA, messages=[{"role": "user", "content": prompt("ollama, stream")}], stream=True)
        )
        assert "".join(p.message.content or "" for p in parts) == "echo: ollama, stream"
        assert parts[-1].done
        seen.extend([[p.created_at for p in parts], parts[-1].total_duration, parts[-1].eval_count])


def test_ollama_generate(llama: ollama.Client, seen: list[Any]) -> None:
    with calling():
        reply = llama.generate(model=LLAMA, prompt=prompt("ollama, generate"))
        assert reply.response == "echo: ollama, generate"
        seen.extend([reply.created_at, reply.response, reply.total_duration])


def test_ollama_embed(llama: ollama.Client, seen: list[Any]) -> None:
    with calling():
        reply = llama.embed(model="all-minilm", input=[prompt("ollama, embed"), "two"])
        assert len(reply.embeddings) == 2
        seen.extend([reply.total_duration, [list(e) for e in reply.embeddings]])
