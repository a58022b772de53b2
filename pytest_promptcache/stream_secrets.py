"""Secrets in streamed text. A stream delivers the text a client assembles in fragments, one per event,
so a secret the server echoes can arrive cut in pieces that no single event shows whole. Secrets are
therefore looked for in each text as the client joins it, and every fragment that overlaps one is cut:
the joined text then reads as if scrubbed whole, the rest of the stream is untouched, and no event is
added or dropped.

The texts clients join: OpenAI chat ``choices[].delta.content`` (and refusal, reasoning, tool-call
arguments), legacy completions ``choices[].text``, Responses ``*.delta`` events (output text, function
call arguments, reasoning summaries), Anthropic ``content_block_delta`` (text, partial JSON, thinking),
and Gemini ``candidates[].content.parts[].text``, whether its stream is SSE or one JSON array.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .models import RecordedResponse, SSEEvent
from .scrub import Scrubber, SecretMatch

_CHAT_DELTA_TEXT = ("content", "refusal", "reasoning_content", "reasoning")
_ANTHROPIC_DELTA_TEXT = ("text", "partial_json", "thinking")

# (the text it is part of, the JSON object holding it, the field holding it)
_Fragment = tuple[str, dict[str, Any], str]


def _fragments(data: Any) -> Iterator[_Fragment]:
    """The text fragments one event carries, each named by the text it is part of."""
    if not isinstance(data, dict):
        return
    kind = data.get("type")
    if kind == "content_block_delta":
        delta = data.get("delta")
        if isinstance(delta, dict):
            for name in _ANTHROPIC_DELTA_TEXT:
                if isinstance(delta.get(name), str):
                    yield f"content_block[{data.get('index')}].delta.{name}", delta, name
        return
    if isinstance(kind, str) and kind.endswith(".delta") and isinstance(data.get("delta"), str):
        if kind.endswith("audio.delta"):
            return  # base64 audio, not text
        where = ", ".join(
            f"{name} {data[name]}"
            for name in ("item_id", "output_index", "content_index", "summary_index")
            if data.get(name) is not None
        )
        yield f"{kind} ({where})", data, "delta"
        return
    yield from _choice_fragments(data.get("choices"))
    yield from _candidate_fragments(data.get("candidates"))


def _choice_fragments(choices: Any) -> Iterator[_Fragment]:
    if not isinstance(choices, list):
        return
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        i = choice.get("index", position)
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            if isinstance(choice.get("text"), str):
                yield f"choices[{i}].text", choice, "text"
            continue
        for name in _CHAT_DELTA_TEXT:
            if isinstance(delta.get(name), str):
                yield f"choices[{i}].delta.{name}", delta, name
        calls = delta.get("tool_calls")
        for call_position, call in enumerate(calls if isinstance(calls, list) else []):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                j = call.get("index", call_position)
                yield f"choices[{i}].delta.tool_calls[{j}].function.arguments", function, "arguments"


def _candidate_fragments(candidates: Any) -> Iterator[_Fragment]:
    if not isinstance(candidates, list):
        return
    for position, candidate in enumerate(candidates):
        content = candidate.get("content") if isinstance(candidate, dict) else None
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                i = candidate.get("index", position)
                which = "thought" if part.get("thought") else "text"
                yield f"candidates[{i}].content.parts[].text ({which})", part, "text"


@dataclass
class _Text:
    """One text as a client joins it: its fragments in order, with the event each is in."""

    fragments: list[tuple[int, dict[str, Any], str]]

    def joined(self) -> str:
        return "".join(holder[name] for _, holder, name in self.fragments)


def _texts(datas: Sequence[Any]) -> dict[str, _Text]:
    texts: dict[str, _Text] = {}
    for index, data in enumerate(datas):
        for where, holder, name in _fragments(data):
            texts.setdefault(where, _Text([])).fragments.append((index, holder, name))
    return texts


def _cut(fragment: str, offset: int, matches: Sequence[SecretMatch]) -> str:
    """``fragment``, which starts at ``offset`` of its joined text, without what overlaps a match; the
    fragment where a match starts carries its placeholder."""
    end = offset + len(fragment)
    out: list[str] = []
    kept = offset  # everything before this (in joined coordinates) is dealt with
    for match in matches:
        if match.end <= offset or match.start >= end:
            continue
        if match.start > kept:
            out.append(fragment[kept - offset : match.start - offset])
        if match.start >= offset:
            out.append(match.placeholder)
        kept = max(kept, min(match.end, end))
    out.append(fragment[kept - offset :])
    return "".join(out)


def redact_stream(datas: Sequence[Any], scrubber: Scrubber) -> list[Any]:
    """The data of a stream's events (or of a JSON-array stream's items) with every fragment that
    overlaps a secret in its joined text cut. A copy when anything is cut; the same items otherwise."""
    found = {where: m for where, text in _texts(datas).items() if (m := scrubber.find(text.joined()))}
    if not found:
        return list(datas)
    copied = copy.deepcopy(list(datas))
    for where, text in _texts(copied).items():
        matches = found.get(where)
        if matches is None:
            continue
        offset = 0
        for _, holder, name in text.fragments:
            fragment = holder[name]
            holder[name] = _cut(fragment, offset, matches)
            offset += len(fragment)
    return copied


def redact_events(events: Sequence[SSEEvent], scrubber: Scrubber) -> list[SSEEvent]:
    datas = redact_stream([ev.data for ev in events], scrubber)
    return [
        ev if ev.data is data else ev.model_copy(update={"data": data})
        for ev, data in zip(events, datas, strict=True)
    ]


@dataclass(frozen=True)
class StreamFinding:
    """A secret in the text a client would join from a recorded stream."""

    text: str  # which text, e.g. "choices[0].delta.content"
    source: str  # what it is: "$OPENAI_API_KEY", a credential the client sent, or the pattern it matched
    secret: str
    events: tuple[int, ...]  # the indices of the events (or array items) holding its fragments


def stream_findings(response: RecordedResponse, scrubber: Scrubber) -> list[StreamFinding]:
    """Secrets in the texts a client would join from a recording's stream: its SSE events, or the items
    of a JSON-array body (Gemini without ``alt=sse``). Empty for a response that is not a stream."""
    if response.events is not None:
        datas: list[Any] = [ev.data for ev in response.events]
    elif isinstance(response.body, list):
        datas = list(response.body)
    else:
        return []
    findings: list[StreamFinding] = []
    for where, text in _texts(datas).items():
        joined = text.joined()
        for match in scrubber.find(joined):
            events: list[int] = []
            offset = 0
            for index, holder, name in text.fragments:
                size = len(holder[name])
                if size and offset < match.end and match.start < offset + size and index not in events:
                    events.append(index)
                offset += size
            secret = joined[match.start : match.end]
            findings.append(StreamFinding(where, match.source, secret, tuple(events)))
    return findings
