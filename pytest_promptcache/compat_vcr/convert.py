"""Between vcrpy's shapes and ours.

A request the code sends becomes a vcr ``Request`` to be matched as vcr matches it; a request a cassette
holds becomes a ``RawRequest`` to be keyed as a live one would be; a cassette's response becomes the
``RecordedResponse`` a live call would have made of the same bytes (decoded, streams cut into events), so
it is served, priced and stored like any recording.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from io import BytesIO
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from vcr.request import Request

from ..decoding import BodyDecoder
from ..keys import RawRequest
from ..models import RecordedResponse
from ..streams import WIRE_HEADERS, BodyRecorder, Replay

# What httpx and yarl leave unquoted in a path: an LLM API path comes out as the client sent it.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"


class ConversionError(ValueError):
    """An interaction that cannot be served or stored; the message says why."""


def uri_of(raw: RawRequest) -> str:
    target = raw.target
    if not target:
        target = quote(raw.path, safe=_PATH_SAFE)
        if raw.query:
            target += "?" + urlencode(raw.query)
    return f"{raw.scheme}://{raw.netloc}{target}"


def to_vcr(raw: RawRequest) -> Any:
    """The request as vcr's stubs would have recorded it."""
    return Request(raw.method, uri_of(raw), raw.body, dict(raw.headers))


def body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, BytesIO):
        return body.getvalue()
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, Iterable):  # a generator body, which vcr keeps as a list of chunks
        return b"".join(body_bytes(part) for part in body)
    raise ConversionError(f"a request body of type {type(body).__name__}")


def _header_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_header_value(v) for v in value)
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def from_vcr(request: Any) -> RawRequest:
    """A cassette's request as an adapter would have seen it go out."""
    parts = urlsplit(request.uri)
    path = parts.path or "/"
    return RawRequest(
        method=str(request.method).upper(),
        scheme=parts.scheme,
        host=parts.hostname or "",
        port=parts.port,
        path=unquote(path),
        query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
        headers=tuple((str(k).lower(), _header_value(v)) for k, v in request.headers.items()),
        body=body_bytes(request.body),
        target=path + ("?" + parts.query if parts.query else ""),
    )


def response_parts(response: Mapping[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and raw body bytes of a vcr response (also of the shape vcrpy wrote for httpx
    before 8, ``status_code`` and ``content``)."""
    try:
        if "status_code" in response:
            status, body = response["status_code"], response.get("content")
        else:
            status, body = response["status"]["code"], (response.get("body") or {}).get("string")
        headers = response.get("headers") or {}
        pairs = [
            (str(name).lower(), _header_value(value))
            for name, values in headers.items()
            for value in (values if isinstance(values, list | tuple) else [values])
        ]
        return int(status), pairs, body_bytes(body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConversionError(f"a response without the fields vcr writes ({exc!r})") from None


def recorded_response(response: Mapping[str, Any]) -> RecordedResponse:
    """The response as a live call recording the same bytes would have stored it: decoded, an SSE
    stream as its events, an AWS event stream as its messages, JSON parsed."""
    status, headers, raw = response_parts(response)
    done: list[RecordedResponse] = []
    problems: list[str] = []
    recorder = BodyRecorder(
        status=status,
        headers=headers,
        on_complete=done.append,
        on_incomplete=lambda reason, _failed: problems.append(reason),
    )
    recorder.feed(raw)
    recorder.ended()
    if done:
        return done[0]
    reason = problems[0] if problems else "incomplete"
    if "content-encoding" in reason or "decode" in reason:
        raise ConversionError(reason)
    # A stream that carried an error event, or framing a live recording would refuse: what the test got
    # when it was recorded is what it gets now, as one body.
    decoded = _decoded(headers, raw)
    kept = {k: v for k, v in headers if k not in WIRE_HEADERS}
    return RecordedResponse(status=status, headers=kept, base64=base64.b64encode(decoded).decode())


def _decoded(headers: list[tuple[str, str]], raw: bytes) -> bytes:
    encoding = next((v for k, v in headers if k == "content-encoding"), None)
    return BodyDecoder(encoding).decode(raw)


def to_vcr_response(replay: Replay) -> dict[str, Any]:
    """A served response as vcr lists its responses (``cassette.responses``)."""
    headers: dict[str, list[str]] = {}
    for name, value in replay.headers:
        headers.setdefault(name, []).append(value)
    return {
        "status": {"code": replay.status, "message": ""},
        "headers": headers,
        "body": {"string": b"".join(replay.chunks)},
    }


def json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
