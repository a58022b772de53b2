"""HTTP/1.1 on the proxy's client side, below what ``http.server`` parses: a request body read within
bounds (a length or chunks), the requests only this machine's clients may make, and the bytes of the
proxy's own answers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from email.message import Message
from http import HTTPStatus
from typing import Protocol
from urllib.parse import urlsplit

_MAX_CHUNK_LINE = 1024
_MAX_TRAILERS = 100
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost"})


class Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...

    def readline(self, size: int, /) -> bytes: ...


class BadRequest(Exception):
    """A request the proxy cannot read; answered with ``status`` and the message, then the connection
    is closed (what is left of the body cannot be told from a next request)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def read_body(rfile: Reader, headers: Message, limit: int) -> bytes:
    """The request's body, by its content-length or its chunks, at most ``limit`` bytes."""
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if coding.strip().lower() != "chunked":
            raise BadRequest(501, f"transfer-encoding {coding!r} is not supported; send chunked or a length")
        return _read_chunked(rfile, limit)
    text = headers.get("content-length")
    if text is None:
        return b""
    if not text.strip().isdigit():
        raise BadRequest(400, f"content-length {text!r} is not a number")
    length = int(text)
    if length > limit:
        raise BadRequest(413, f"the request body ({length} bytes) is larger than {limit} bytes")
    body = rfile.read(length)
    if len(body) < length:
        raise BadRequest(400, "the request body ended early")
    return body


def _read_chunked(rfile: Reader, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(_MAX_CHUNK_LINE + 1)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            size = -1
        if size < 0 or len(line) > _MAX_CHUNK_LINE:
            raise BadRequest(400, "a chunk of the request body has no valid size")
        total += size
        if total > limit:
            raise BadRequest(413, f"the request body is larger than {limit} bytes")
        if size == 0:
            break
        data = rfile.read(size)
        if len(data) < size or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise BadRequest(400, "the request body ended inside a chunk")
        parts.append(data)
    for _ in range(_MAX_TRAILERS):
        if rfile.readline(_MAX_CHUNK_LINE + 1) in (b"\r\n", b"\n", b""):
            return b"".join(parts)
    raise BadRequest(400, "too many trailer lines after the request body")


def is_loopback(netloc: str) -> bool:
    try:
        host = urlsplit(f"//{netloc}").hostname
    except ValueError:
        return False
    return host in LOOPBACK_NAMES


def outsider(headers: Message) -> str | None:
    """Why a request that did not come from this machine's own clients is refused: a web page may send
    one to 127.0.0.1 (with its own Origin), or reach the port through a DNS name it controls."""
    host = headers.get("host")
    if host is not None and not is_loopback(host):
        return f"promptcache serve: refused a request for host {host!r}: it answers 127.0.0.1 and localhost"
    origin = headers.get("origin")
    if origin is not None and not is_loopback(urlsplit(origin).netloc):
        return f"promptcache serve: refused a request from origin {origin!r}: it answers local clients"
    return None


def status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


def header_lines(headers: Iterable[tuple[str, str]]) -> list[bytes]:
    """Header lines as bytes; one with a line break or NUL (a hand-edited recording) is dropped, never
    sent on to split the response."""
    lines = []
    for name, value in headers:
        line = f"{name}: {value}"
        if not any(c in line for c in "\r\n\0"):
            lines.append(line.encode("latin-1", "replace") + b"\r\n")
    return lines


def error_body(message: str, kind: str) -> bytes:
    # The shape of the engine's miss answer: SDKs find "message" in "error", botocore at the top.
    body = {"type": "error", "error": {"type": kind, "code": kind, "message": message}, "message": message}
    return json.dumps(body).encode("utf-8")
