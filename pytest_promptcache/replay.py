"""What a recorded response replays as: its status, its headers without the wire's, and its body as the
chunks the client reads, one per SSE event or AWS event-stream message. Built once per recording."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from .jsontext import encode_standard
from .models import RecordedResponse, SSEEvent


@dataclass(slots=True)
class Replay:
    """A recorded response ready to serve many times: built once, then only copied into a Response.
    Never changed: what is derived from it is kept.

    Tuples and slots: a session holds thousands (the memory tier, preloaded before the first test), and
    each list or instance dict would be one more object for every garbage collection to walk."""

    status: int
    # Handed to each response as they are: an HTTP library's own headers object kept per recording
    # saved ~2 µs a call and cost three objects that every later garbage collection walks (in a
    # 2,000-call process, one full collection more: ~50 ms).
    headers: tuple[tuple[str, str], ...]
    chunks: tuple[bytes, ...]
    # The body when it is replayed whole, with its length (``assemble``), not as a stream.
    whole: bytes | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        whole = None
        if any(name == "content-length" for name, _ in self.headers):
            whole = b"".join(self.chunks)  # one chunk: the same bytes object, not a copy
        self.whole = whole


# Headers that describe the wire, not the answer: a replay has no wire, and its body is stored decoded.
WIRE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "content-encoding",
        "content-length",
    }
)


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON, written by pydantic-core: a sixth of json.dumps' time, which a stream's
    first serve pays once per event. Non-finite numbers as json.dumps writes them (NaN, Infinity)."""
    try:
        return to_json(value, inf_nan_mode="constants")
    except PydanticSerializationError:  # a lone surrogate: as the escape it arrived as
        return encode_standard(value)


def event_bytes(
    event: str | None, data: Any, text: str | None, event_id: str | None, retry: int | None
) -> bytes:
    """One SSE event on the wire: its fields, a line each, and the blank line that ends it."""
    if event is None and event_id is None and retry is None and text is None:
        if data is None:
            return b"\n\n"
        return b"data: " + json_bytes(data) + b"\n\n"  # nearly every event of a stream
    lines: list[str] = []
    if event is not None:
        lines.append(f"event: {event}\n")
    if event_id is not None:
        lines.append(f"id: {event_id}\n")
    if retry is not None:
        lines.append(f"retry: {retry}\n")
    if text is not None:
        lines.extend(f"data: {line}\n" for line in text.split("\n"))
        return ("".join(lines) + "\n").encode("utf-8")
    head = "".join(lines).encode("utf-8")
    if data is not None:
        head += b"data: " + json_bytes(data) + b"\n"
    return head + b"\n"


def encode_event(ev: SSEEvent) -> bytes:
    return event_bytes(ev.event, ev.data, ev.text, ev.id, ev.retry)


def build_replay(response: RecordedResponse) -> Replay:
    """Streams replay one chunk per event (or event-stream message) and without a content-length."""
    chunks: list[bytes] | None = None
    if response.events is not None:
        chunks = [encode_event(ev) for ev in response.events]
    elif response.event_stream is not None:
        chunks = [base64.b64decode(message.base64) for message in response.event_stream]
    return assemble(response.status, response.headers, chunks, response.base64, response.text, response.body)


def replay_of_data(response: Mapping[str, Any]) -> Replay:
    """The same from a response as parsed from its file, in the form recordings are written in (every
    field of the right type, ``store.served`` checks): no model built in between."""
    chunks: list[bytes] | None = None
    events = response.get("events")
    if events is not None:
        chunks = [
            event_bytes(ev.get("event"), ev.get("data"), ev.get("text"), ev.get("id"), ev.get("retry"))
            for ev in events
        ]
    else:
        messages = response.get("event_stream")
        if messages is not None:
            chunks = [base64.b64decode(message["base64"]) for message in messages]
    return assemble(
        response["status"],
        response.get("headers") or {},
        chunks,
        response.get("base64"),
        response.get("text"),
        response.get("body"),
    )


def assemble(
    status: int,
    headers: Mapping[str, str],
    stream: list[bytes] | None,
    base64_body: str | None,
    text: str | None,
    body: Any,
) -> Replay:
    kept = [(k, v) for k, v in headers.items() if k not in WIRE_HEADERS]
    if stream is not None:
        return Replay(status=status, headers=tuple(kept), chunks=tuple(stream))
    if base64_body is not None:
        chunks = [base64.b64decode(base64_body)]
    elif text is not None:
        chunks = [text.encode("utf-8")]
    elif body is not None:
        chunks = [json_bytes(body)]
    else:
        chunks = []
    kept.append(("content-length", str(sum(len(c) for c in chunks))))
    return Replay(status=status, headers=tuple(kept), chunks=tuple(chunks))
