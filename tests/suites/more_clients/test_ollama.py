"""Ollama's own SDK: chat, a streamed chat (newline-delimited JSON), generate, embed."""

from __future__ import annotations

from typing import Any

import ollama
from more_support import calling, prompt

LLAMA = "llama3.2"


def test_ollama_chat(llama: ollama.Client, seen: list[Any]) -> None:
    with calling():
        reply = llama.chat(model=LLAMA, messages=[{"role": "user", "content": prompt("ollama, json")}])
        assert reply.message.content == "echo: ollama, json"
        seen.extend([reply.created_at, reply.message.content, reply.prompt_eval_count, reply.eval_count])


def test_ollama_chat_stream(llama: ollama.Client, seen: list[Any]) -> None:
    with calling():
        messages = [{"role": "user", "content": prompt("ollama, stream")}]
        parts = list(llama.chat(model=LLAMA, messages=messages, stream=True))
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
