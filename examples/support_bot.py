"""A small LLM app: the code under test in the demo. It knows nothing of pytest-promptcache."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import openai

MODEL = "gpt-4.1-mini"
CLAUDE = "claude-sonnet-4-6"

CATEGORIES = ("billing", "bug", "other")
LOOKUP_ORDER = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Find an order by its number",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}


def triage(client: openai.OpenAI, ticket: str) -> str:
    """Route a support ticket; the model answers in prose, we pick the category it names."""
    reply = client.chat.completions.create(
        model=MODEL,
        temperature=0,
        user="session-4711",  # volatile per user session: ignored by the key (see pytest.ini)
        messages=[
            {"role": "system", "content": f"Classify the ticket as one of: {', '.join(CATEGORIES)}."},
            {"role": "user", "content": ticket},
        ],
    )
    text = (reply.choices[0].message.content or "").lower()
    return next((c for c in CATEGORIES if c in text), "other")


def stream_reply(client: openai.OpenAI, ticket: str) -> Iterator[str]:
    """Draft a reply token by token, as a chat UI would show it."""
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Draft a short reply to: {ticket}"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


def find_order_call(client: openai.OpenAI, ticket: str) -> dict[str, str]:
    """Let the model decide to call our order lookup tool; return the arguments it chose."""
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": ticket}],
        tools=[LOOKUP_ORDER],  # type: ignore[list-item]
    )
    call = (reply.choices[0].message.tool_calls or [])[0]
    return json.loads(call.function.arguments)  # type: ignore[union-attr, no-any-return]


def similar_tickets(client: openai.OpenAI, tickets: list[str]) -> list[list[float]]:
    response = client.embeddings.create(model="text-embedding-3-small", input=tickets)
    return [item.embedding for item in response.data]


def escalation_note(client: anthropic.Anthropic, ticket: str) -> str:
    """A note for a human agent, from Claude, with the long policy prompt cached by the provider."""
    message = client.messages.create(
        model=CLAUDE,
        max_tokens=200,
        system=[
            {
                "type": "text",
                "text": "You write escalation notes for support agents. Be brief and factual.",
                "cache_control": {"type": "ephemeral"},
            }
        ],
        messages=[{"role": "user", "content": ticket}],
    )
    return "".join(block.text for block in message.content if block.type == "text")


def escalation_note_streamed(client: anthropic.Anthropic, ticket: str) -> str:
    with client.messages.stream(
        model=CLAUDE, max_tokens=200, messages=[{"role": "user", "content": f"Escalate: {ticket}"}]
    ) as stream:
        return "".join(stream.text_stream)
