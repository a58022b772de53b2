"""Cohere's own SDK (``ClientV2``): chat, a streamed chat, embeddings."""

from __future__ import annotations

from typing import Any

import cohere
from more_support import calling, prompt

COMMAND = "command-a-03-2025"


def test_cohere_chat(co: cohere.ClientV2, seen: list[Any]) -> None:
    with calling():
        reply = co.chat(model=COMMAND, messages=[cohere.UserChatMessageV2(content=prompt("cohere, json"))])
        assert reply.message.content is not None
        text = reply.message.content[0].text  # type: ignore[union-attr]
        assert text == "echo: cohere, json"
        assert reply.usage is not None
        seen.extend([reply.id, text, reply.usage.model_dump(exclude_none=True)])


def test_cohere_chat_stream(co: cohere.ClientV2, seen: list[Any]) -> None:
    with calling():
        ask = cohere.UserChatMessageV2(content=prompt("cohere, stream"))
        events = list(co.chat_stream(model=COMMAND, messages=[ask]))
        kinds = [e.type for e in events]
        assert kinds[0] == "message-start"
        assert kinds[-1] == "message-end"
        deltas = [str(e.delta.message.content.text) for e in events if e.type == "content-delta"]  # type: ignore[union-attr]
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
