"""AWS event streams (``application/vnd.amazon.eventstream``), as Bedrock streams converse-stream and
invoke-with-response-stream.

A body is cut into its messages by the length each one starts with, and each message is kept byte for
byte: a replay sends exactly those bytes, one message a chunk, so botocore's parser yields the same events.
Beside the bytes, a decoded view (headers, JSON payload) for review and for reading usage, made with
botocore's own parser when botocore is installed (it is wherever boto3 made the call). Independent of any
HTTP library.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Callable
from typing import Any

from . import jsontext
from .models import EventStreamMessage

MEDIA_TYPE = "application/vnd.amazon.eventstream"
# Prelude (total length, headers length, prelude CRC) and the message CRC after the payload.
_PRELUDE = 12
_OVERHEAD = 16
# botocore's own limits: 128 KiB of headers and 24 MiB of payload a message.
MAX_MESSAGE = _OVERHEAD + 128 * 1024 + 24 * 1024 * 1024


class FramingError(ValueError):
    """Bytes that cannot be an event-stream message: the stream is not recorded."""


def is_event_stream(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == MEDIA_TYPE


class Framer:
    """Cuts a body into whole messages as it arrives, whatever the chunk boundaries."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        messages: list[bytes] = []
        while len(self._buffer) >= 4:
            total = int.from_bytes(self._buffer[:4], "big")
            if not _OVERHEAD <= total <= MAX_MESSAGE:
                raise FramingError(f"an event-stream message claims {total} bytes")
            if len(self._buffer) < total:
                break
            messages.append(bytes(self._buffer[:total]))
            del self._buffer[:total]
        return messages

    @property
    def partial(self) -> bool:
        """Bytes of an unfinished message are left over."""
        return bool(self._buffer)


def _view_value(value: Any) -> Any:
    # Header values are strings, numbers, booleans, or bytes (byte arrays, UUIDs): JSON needs text.
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    return value


def _decode(raw: bytes) -> tuple[dict[str, Any], bytes] | None:
    try:
        from botocore.eventstream import EventStreamBuffer, ParserError  # type: ignore[import-untyped]
    except ImportError:
        return None
    parser = EventStreamBuffer()
    parser.add_data(raw)
    try:
        message = next(parser)
    except (StopIteration, ParserError):
        return None
    return {name: _view_value(value) for name, value in message.headers.items()}, message.payload


def _json_or_text(data: bytes) -> tuple[Any, str | None]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, None
    try:
        return jsontext.loads(text), None
    except ValueError:
        return None, text


def _wrapped(payload: Any) -> Any:
    """invoke-with-response-stream wraps each piece of the model's own stream as ``{"bytes": base64}``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("bytes"), str):
        return None
    try:
        inner = base64.b64decode(payload["bytes"], validate=True)
    except (binascii.Error, ValueError):
        return None
    return _json_or_text(inner)[0]


def message(raw: bytes) -> EventStreamMessage:
    """One message as stored: its exact bytes, and a decoded view when botocore can give one."""
    encoded = base64.b64encode(raw).decode("ascii")
    decoded = _decode(raw)
    if decoded is None:
        return EventStreamMessage(base64=encoded)
    headers, payload = decoded
    data, text = _json_or_text(payload)
    inner = _wrapped(data)
    if inner is not None:
        # The wrapped bytes are in the view decoded: their base64 again would only lengthen the line.
        data = {k: v for k, v in data.items() if k != "bytes"} or None
    return EventStreamMessage(headers=headers, payload=data, text=text, decoded=inner, base64=encoded)


def message_type(msg: EventStreamMessage) -> str | None:
    value = (msg.headers or {}).get(":message-type")
    return value if isinstance(value, str) else None


def event_type(msg: EventStreamMessage) -> str | None:
    value = (msg.headers or {}).get(":event-type")
    return value if isinstance(value, str) else None


def is_error(msg: EventStreamMessage) -> bool:
    """An exception or error message: the provider failed mid-stream (throttling, model errors)."""
    return message_type(msg) in ("exception", "error")


def raw_bytes(msg: EventStreamMessage) -> bytes:
    return base64.b64decode(msg.base64)


def reframe(raw: bytes, payload: bytes) -> bytes:
    """``raw`` with another payload: the same headers, new lengths and checksums."""
    headers_length = int.from_bytes(raw[4:8], "big")
    headers = raw[_PRELUDE : _PRELUDE + headers_length]
    prelude = (_OVERHEAD + headers_length + len(payload)).to_bytes(4, "big") + headers_length.to_bytes(
        4, "big"
    )
    body = prelude + zlib.crc32(prelude).to_bytes(4, "big") + headers + payload
    return body + zlib.crc32(body).to_bytes(4, "big")


def scrubbed(
    msg: EventStreamMessage, scrub_json: Callable[[Any], Any], scrub_text: Callable[[str], str]
) -> EventStreamMessage:
    """The message with secrets replaced in its view and, only when that changed anything, in its bytes
    (re-framed from the view, so still a valid message): a recording stays byte-exact unless a secret
    was in it."""
    payload = scrub_json(msg.payload)
    text = scrub_text(msg.text) if msg.text is not None else None
    decoded = scrub_json(msg.decoded)
    if payload == msg.payload and text == msg.text and decoded == msg.decoded:
        return msg
    if text is not None:
        new_payload = text.encode("utf-8")
    elif decoded is not None:
        wrapped = base64.b64encode(jsontext.encode_compact(decoded)).decode("ascii")
        new_payload = jsontext.encode_compact({"bytes": wrapped, **(payload or {})})
    else:
        new_payload = jsontext.encode_compact(payload)
    raw = reframe(raw_bytes(msg), new_payload)
    return EventStreamMessage(
        headers=msg.headers,
        payload=payload,
        text=text,
        decoded=decoded,
        base64=base64.b64encode(raw).decode("ascii"),
    )
