"""What a request says and what a response answered, as text, per wire format.

A request is cut into the segments a provider's prompt cache sees in order (tools, system prompt,
messages): the estimate counts their text, and the caching advisor looks for leading segments that
many requests share. A response's text is what its deltas (or its body) held: what an estimate counts
as output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .models import RecordedResponse

ANTHROPIC_FAMILIES = frozenset({"anthropic", "bedrock-invoke"})


@dataclass(frozen=True, slots=True)
class Segment:
    """One leading part of a prompt: ``label`` names it for a person (``system``, ``messages[2] (user)``),
    ``text`` is what its tokens are counted on, ``ident`` is what makes two of them the same (the
    part's canonical JSON, so a role or a cache marker counts)."""

    label: str
    text: str
    ident: str


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def text_of(value: Any) -> str:
    """The text in a message's content, whatever the provider's shape: strings, ``text`` parts, tool
    inputs and results (as JSON), Gemini parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (text_of(v) for v in value) if t)
    if not isinstance(value, dict):
        return ""
    pieces: list[str] = []
    for name in ("text", "content", "parts", "thinking", "refusal"):
        if name in value:
            pieces.append(text_of(value[name]))
    for name in ("input", "arguments", "args", "functionCall", "function", "tool_calls", "toolUse"):
        inner = value.get(name)
        if inner in (None, "", {}, []):
            continue
        # A tool's input is text while it streams, an object once complete: its JSON is what it cost.
        pieces.append(inner if isinstance(inner, str) else text_of(inner) or _canonical(inner))
    return "\n".join(p for p in pieces if p)


def _segment(label: str, value: Any, text: str | None = None) -> Segment:
    return Segment(label, text_of(value) if text is None else text, _canonical(value))


def _messages(items: Any, name: str) -> Iterator[Segment]:
    if isinstance(items, str):
        yield _segment(name, items)
        return
    if not isinstance(items, list):
        return
    for i, item in enumerate(items):
        role = item.get("role") if isinstance(item, dict) else None
        label = f"{name}[{i}]" + (f" ({role})" if isinstance(role, str) else "")
        yield _segment(label, item)


def _tools(tools: Any) -> Iterator[Segment]:
    if tools:
        # Tool schemas are counted as their JSON: providers render them in a format of their own.
        yield _segment("tools", tools, _canonical(tools))


def segments(body: Any, family: str | None) -> list[Segment]:
    """The prompt's leading parts, in the order the provider's cache sees them."""
    if not isinstance(body, dict):
        return []
    out: list[Segment] = []
    if family == "openai-chat":
        out += _tools(body.get("tools"))
        if "messages" in body:
            out += _messages(body.get("messages"), "messages")
        elif "prompt" in body:
            out += _messages(body.get("prompt"), "prompt")
    elif family == "openai-responses":
        if body.get("instructions"):
            out.append(_segment("instructions", body["instructions"]))
        out += _tools(body.get("tools"))
        out += _messages(body.get("input"), "input")
    elif family in ANTHROPIC_FAMILIES and "messages" in body:
        out += _tools(body.get("tools"))
        if body.get("system"):
            out.append(_segment("system", body["system"]))
        out += _messages(body.get("messages"), "messages")
    elif family == "bedrock-converse":
        tool_config = body.get("toolConfig")
        out += _tools(tool_config.get("tools") if isinstance(tool_config, dict) else None)
        if body.get("system"):
            out.append(_segment("system", body["system"]))
        out += _messages(body.get("messages"), "messages")
    elif family == "gemini":
        system = body.get("systemInstruction") or body.get("system_instruction")
        if system:
            out.append(_segment("systemInstruction", system))
        out += _tools(body.get("tools"))
        out += _messages(body.get("contents"), "contents")
    elif family == "openai-embeddings":
        out += _messages(body.get("input"), "input")
    else:  # bedrock-invoke of a model with its own body, or anything else: its prompt field
        for name in ("prompt", "inputText", "input", "messages"):
            if name in body:
                out += _messages(body[name], name)
                break
    return out


# OpenAI's chat format wraps each message in a few tokens of its own (tiktoken's cookbook: 3 per
# message, 3 more priming the reply); other formats add similar framing, counted the same way.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


def _json_texts(payloads: Iterable[Any]) -> Iterator[str]:
    for data in payloads:
        if not isinstance(data, dict):
            continue
        for choice in data.get("choices") or ():
            if isinstance(choice, dict):
                yield text_of(choice.get("delta") or choice.get("message") or {})
                if isinstance(choice.get("text"), str):
                    yield choice["text"]
        kind = data.get("type")
        if kind == "content_block_delta" and isinstance(data.get("delta"), dict):
            delta = data["delta"]
            yield "".join(
                v for k in ("text", "partial_json", "thinking") if isinstance(v := delta.get(k), str)
            )
        elif isinstance(kind, str) and kind.startswith("response.") and kind.endswith(".delta"):
            yield data["delta"] if isinstance(data.get("delta"), str) else ""
        for candidate in data.get("candidates") or ():
            if isinstance(candidate, dict):
                yield text_of(candidate.get("content") or {})
        if isinstance(data.get("contentBlockDelta"), dict):  # a converse-stream event
            yield text_of(data["contentBlockDelta"].get("delta") or {})
        if isinstance(data.get("delta"), dict) and "contentBlockIndex" in data:
            yield text_of(data["delta"])
        for name in ("completion", "generation", "outputText"):  # Bedrock invoke, other models
            if isinstance(data.get(name), str):
                yield data[name]


def response_text(response: RecordedResponse) -> str:
    """The text a response answered with: its stream's deltas joined, or its body's messages."""
    if response.events is not None:
        payloads: list[Any] = [ev.data for ev in response.events]
    elif response.event_stream is not None:
        payloads = [m.decoded if m.decoded is not None else m.payload for m in response.event_stream]
    elif isinstance(response.body, list):  # Gemini's stream without alt=sse: one JSON array
        payloads = list(response.body)
    elif isinstance(response.body, dict):
        body = response.body
        if body.get("type") == "message" and "content" in body:  # Anthropic
            return text_of(body["content"])
        output = body.get("output")
        if isinstance(output, list):  # Responses
            return text_of(output)
        payloads = [body]
    else:
        return response.text or ""
    return "".join(_json_texts(payloads))
