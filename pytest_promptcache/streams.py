"""Response bodies on their way through, independent of any HTTP library: decoding, SSE parsing,
deciding when a live body is complete (``BodyRecorder``), and the chunks a recorded response replays as."""

from __future__ import annotations

import base64
import codecs
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import eventstream, jsontext
from .decoding import BodyDecoder, UnsupportedEncoding
from .models import EventStreamMessage, RecordedResponse, SSEEvent
from .replay import WIRE_HEADERS, Replay, build_replay, encode_event

# The replay names are also here, where they were before replay.py, for code that imports them so.
__all__ = [
    "ERROR_EVENTS",
    "TERMINAL_EVENTS",
    "WIRE_HEADERS",
    "BodyRecorder",
    "Replay",
    "SSEParser",
    "build_replay",
    "encode_event",
    "event_type",
    "is_error",
    "is_event_stream",
    "is_json_type",
    "is_terminal",
    "parse_event",
]

# Events after which a stream is complete even if the client never reads on (openai stops at [DONE]);
# Cohere v2 ends with message-end.
TERMINAL_EVENTS = frozenset({"message_stop", "response.completed", "response.incomplete", "message-end"})
# Events that mean the provider failed mid-stream: such a stream is never recorded.
ERROR_EVENTS = frozenset({"error", "response.failed"})


def _fields(block: str) -> Iterator[tuple[str, str]]:
    """(name, value) of each field line; each value sliced from the block once (an event's data may
    be 10 MB: splitting into lines, then at the colon, then dropping the space would copy it three
    times)."""
    pos, size = 0, len(block)
    while pos < size:
        end = block.find("\n", pos)
        if end < 0:
            end = size
        if end > pos and block[pos] != ":":
            colon = block.find(":", pos, end)
            if colon < 0:
                yield block[pos:end], ""
            else:
                start = colon + 2 if block.startswith(" ", colon + 1, end) else colon + 1
                yield block[pos:colon], block[start:end]
        pos = end + 1


def parse_event(block: str) -> SSEEvent | None:
    event: str | None = None
    data_lines: list[str] = []
    event_id: str | None = None
    retry: int | None = None
    for name, value in _fields(block):
        if name == "event":
            event = value
        elif name == "data":
            data_lines.append(value)
        elif name == "id":
            event_id = value
        elif name == "retry" and value.isdigit():
            retry = int(value)
    if event is None and not data_lines and event_id is None and retry is None:
        return None
    data_text = "\n".join(data_lines) if data_lines else None
    data: Any = None
    text: str | None = None
    if data_text is not None:
        try:
            data = jsontext.loads(data_text)
        except ValueError:
            text = data_text
        else:
            # A JSON string or number would come back as a different text; keep only objects/arrays.
            if not isinstance(data, dict | list):
                data, text = None, data_text
    return SSEEvent(event=event, data=data, text=text, id=event_id, retry=retry)


class SSEParser:
    """Splits a stream's text into events as it arrives, in time linear in the stream's length.

    Only new text is searched for the blank line that ends an event; the text of an event still open
    stays a list of pieces, joined once when it ends (a 10 MB event in 4 KB chunks is 2,500 appends, not
    2,500 copies of a growing buffer). A ``\r`` ends a line at once, as the client's own parser reads
    it, and a ``\n`` that opens the next chunk right after it is the rest of that ``\r\n``, not a
    second line end (which would end the event early, tearing ``event:`` from ``data:``). Waiting for
    the next chunk instead could miss the terminal event: an SDK closes the stream once it has it.
    """

    def __init__(self) -> None:
        self._pending: list[str] = []
        # Whether the open event's text ends with a line end: a blank line may then start the next chunk.
        self._ends_with_newline = False
        self._after_cr = False

    def feed(self, text: str) -> list[SSEEvent]:
        if not text:
            return []
        if self._after_cr and text[0] == "\n":
            text = text[1:]
        self._after_cr = text.endswith("\r")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text:
            return []
        events: list[SSEEvent] = []
        start = 0
        if self._ends_with_newline and text[0] == "\n":
            # The blank line straddles the chunks: the open event's own last line end is half of it.
            self._end_event(self._take_pending()[:-1], events)
            start = 1
        # Line ends found one at a time: a one-character search is a memchr, and a huge event's data
        # (an image's base64) is one long line, searched ~15x faster so than for "\n\n".
        pos = start
        while (end := text.find("\n", pos)) >= 0:
            if not text.startswith("\n", end + 1):
                pos = end + 1
                continue
            self._pending.append(text[start:end])
            self._end_event(self._take_pending(), events)
            start = pos = end + 2
        if start < len(text):
            self._pending.append(text[start:])
            self._ends_with_newline = text.endswith("\n")
        return events

    def flush(self) -> list[SSEEvent]:
        block = self._take_pending()
        self._after_cr = False
        parsed = parse_event(block.strip("\n"))
        return [parsed] if parsed is not None else []

    def _take_pending(self) -> str:
        block = "".join(self._pending)
        self._pending = []
        self._ends_with_newline = False
        return block

    @staticmethod
    def _end_event(block: str, events: list[SSEEvent]) -> None:
        parsed = parse_event(block)
        if parsed is not None:
            events.append(parsed)


def event_type(ev: SSEEvent) -> str | None:
    if ev.event:
        return ev.event
    if isinstance(ev.data, dict):
        kind = ev.data.get("type")
        if isinstance(kind, str):
            return kind
    return None


def is_terminal(ev: SSEEvent) -> bool:
    return (ev.text is not None and ev.text.strip() == "[DONE]") or event_type(ev) in TERMINAL_EVENTS


def is_error(ev: SSEEvent) -> bool:
    return event_type(ev) in ERROR_EVENTS


def is_event_stream(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == "text/event-stream"


def is_json_type(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


@dataclass
class BodyRecorder:
    """Watches a live body go by and says, at the end, whether it is complete and what it held.

    ``on_complete`` runs exactly once, and only for a body that ended cleanly or whose SSE stream
    reached its terminal event; an abandoned, cut or failed body never reaches it.

    With ``defer``, the callback (which saves a file) is not run but kept in ``pending`` for the caller
    to run where blocking is allowed: an async tee runs it in a worker thread, off the event loop.
    """

    status: int
    headers: list[tuple[str, str]]
    on_complete: Callable[[RecordedResponse], None]
    # Called with the reason and whether the live body failed (True) or was only abandoned (False).
    on_incomplete: Callable[[str, bool], None]
    defer: bool = False
    pending: Callable[[], None] | None = None
    _decoder: BodyDecoder | None = None
    _text_decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="strict")
    )
    _sse: SSEParser | None = None
    _events: list[SSEEvent] = field(default_factory=list)
    _frames: eventstream.Framer | None = None
    _messages: list[EventStreamMessage] = field(default_factory=list)
    _body: list[bytes] = field(default_factory=list)
    _terminal: bool = False
    _done: bool = False
    _problem: str | None = None

    def __post_init__(self) -> None:
        content_type = self._header("content-type")
        try:
            self._decoder = BodyDecoder(self._header("content-encoding"))
        except UnsupportedEncoding as exc:
            self._problem = f"unsupported content-encoding {exc}"
        if is_event_stream(content_type):
            self._sse = SSEParser()
        elif eventstream.is_event_stream(content_type):
            self._frames = eventstream.Framer()

    def _header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def feed(self, chunk: bytes) -> None:
        if self._done or self._problem is not None or self._decoder is None:
            return
        try:
            data = self._decoder.decode(chunk)
            if self._frames is not None:
                self._feed_messages(data)
                return
            if self._sse is None:
                self._body.append(data)
                return
            for ev in self._sse.feed(self._text_decoder.decode(data)):
                if is_error(ev):
                    self._problem = f"the stream carried an error event ({event_type(ev)})"
                    return
                self._events.append(ev)
                if is_terminal(ev):
                    self._terminal = True
        except (zlib.error, UnicodeDecodeError, OSError) as exc:
            self._problem = f"could not decode the body: {exc}"
            return
        if self._terminal:
            self._complete()

    def _feed_messages(self, data: bytes) -> None:
        assert self._frames is not None
        try:
            raws = self._frames.feed(data)
        except eventstream.FramingError as exc:
            self._problem = f"could not read the event stream: {exc}"
            return
        for raw in raws:
            message = eventstream.message(raw)
            if eventstream.is_error(message):
                kind = (message.headers or {}).get(":exception-type") or eventstream.event_type(message)
                self._problem = f"the stream carried an error message ({kind})"
                return
            self._messages.append(message)

    def ended(self) -> None:
        """The live body ended cleanly."""
        if self._done:
            return
        if self._problem is None and self._frames is not None and self._frames.partial:
            self._problem = "the event stream ended inside a message"
        if self._problem is None and self._sse is not None:
            try:
                self._events.extend(self._sse.feed(self._text_decoder.decode(b"", final=True)))
                self._events.extend(self._sse.flush())
            except UnicodeDecodeError as exc:
                self._problem = f"could not decode the body: {exc}"
        self._complete()

    def failed(self, reason: str) -> None:
        if not self._done:
            self._problem = reason
            self._finish_incomplete(failed=True)

    def closed(self) -> None:
        """The client closed the body, read or not: without a terminal event it was abandoned."""
        if not self._done:
            self._problem = self._problem or "the client closed the stream before it ended"
            self._finish_incomplete(failed=False)

    def collected(self) -> None:
        """The response was garbage-collected unread or unclosed: end the call now, whatever ``defer``
        says, since nobody is left to run what is pending (waiting identical calls depend on it)."""
        self.defer = False
        self.closed()
        self.run_pending()

    def run_pending(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending()

    def _settle(self, callback: Callable[[], None]) -> None:
        if self.defer:
            self.pending = callback
        else:
            callback()

    def _finish_incomplete(self, *, failed: bool) -> None:
        self._done = True
        reason = self._problem or "incomplete"
        self._settle(lambda: self.on_incomplete(reason, failed))

    def _complete(self) -> None:
        if self._problem is not None:
            # Decodable-but-wrong bodies and error events are the provider failing, not the client.
            self._finish_incomplete(failed=True)
            return
        self._done = True
        stored = {k.lower(): v for k, v in self.headers}
        if self._sse is not None:
            response = RecordedResponse(status=self.status, headers=stored, events=self._events)
        elif self._frames is not None:
            response = RecordedResponse(status=self.status, headers=stored, event_stream=self._messages)
        else:
            raw = b"".join(self._body)
            response = _body_response(self.status, stored, raw)
        self._settle(lambda: self.on_complete(response))


def _body_response(status: int, headers: dict[str, str], raw: bytes) -> RecordedResponse:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return RecordedResponse(status=status, headers=headers, base64=base64.b64encode(raw).decode())
    if is_json_type(headers.get("content-type")) or text[:1] in ("{", "["):
        try:
            return RecordedResponse(status=status, headers=headers, body=jsontext.loads(text))
        except ValueError:
            pass
    return RecordedResponse(status=status, headers=headers, text=text)
