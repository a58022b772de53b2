"""A fake LLM provider server for tests, built on the standard library only.

It speaks just enough of the OpenAI (chat completions, responses, embeddings),
Anthropic (messages), Gemini (generateContent / streamGenerateContent), Bedrock
Runtime (``bedrock_server``), Cohere v2 and Ollama (``more_routes``) wire formats
for the real SDKs to work against it, so record/replay can be tested end to end
over real sockets instead of through transport mocks.

Design notes:

* Every live answer carries fresh ids (a per-server counter plus a random part),
  real timestamps, a random ``Set-Cookie`` and a random ``x-request-id``.  A
  replayed answer is therefore distinguishable from a new live one.
* The *text* of an answer is a pure function of the prompt
  (``"echo: <last user text>"``) and token counts are word counts, so tests can
  assert on content and usage without caring whether it was live or replayed.
* Faults are chosen by the request's model name (see ``_FAULTS``), which lets
  a test pick a failure mode through the ordinary SDK call surface.

Run standalone with ``python tests/llm_server.py --port 8765``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import re
import secrets
import select
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

__all__ = ["LLMServer", "ReceivedRequest"]

# Network errors that only mean "the client went away"; the tests provoke these
# on purpose (abandoned streams), so they must never surface as tracebacks.
_DISCONNECT_ERRORS: tuple[type[BaseException], ...] = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    TimeoutError,
)

# Fault markers are matched as substrings of the model name so that a test can
# still embed a realistic model name (``gpt-4o-mini+fault-slow``) if it wants.
_FAULT_STATUS: dict[str, int] = {
    "fault-500": 500,
    "fault-429": 429,
    "fault-401": 401,
    "fault-400": 400,
}
# fault-flaky: the first request with a given body gets a 429 (retry-after: 0), later ones succeed.
# fault-hang-after-first: a stream sends its first event, then holds the rest back until the client
# leaves (or _HANG_FACTOR chunk delays pass), so a test sees whether a client went on with one event.
_FAULTS = (*_FAULT_STATUS, "fault-cut", "fault-slow", "fault-hang-after-first", "fault-flaky")

_SLOW_SECONDS = 0.3
_HANG_FACTOR = 50
_ANTHROPIC_CACHE_READ_TOKENS = 100
_GEMINI_CACHED_CONTENT_TOKENS = 100

Json = Any
Headers = list[tuple[str, str]]


@dataclass
class ReceivedRequest:
    """One request as the server saw it (before any fault was applied)."""

    method: str
    path: str  # including the query string
    headers: dict[str, str]  # lower-case names; repeated headers are comma-joined
    body: bytes
    json: Json = None  # parsed body, or None if absent / not JSON
    received_at: float = field(default_factory=time.time)
    # The usage object the answer carried, in the provider's own shape; None when it carried none
    # (errors, chat streams without include_usage). Ground truth for token and cost accounting tests.
    sent_usage: Json = None
    # Stream events written, and whether the server saw the client leave before the stream's end: what
    # a client read is shown by counts, not by how long it took.
    events_sent: int = 0
    client_left: bool = False
    # Set when the server is done with the request, however it ended; wait on it instead of sleeping.
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)


# ---------------------------------------------------------------------------
# Small pure helpers
# ---------------------------------------------------------------------------


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: Json) -> str:
    """Flatten any provider's message content into plain text.

    Handles plain strings, OpenAI/Anthropic/Responses part lists (``text``
    fields), Anthropic ``tool_result`` blocks (nested ``content``) and Gemini
    ``parts``.  Non-text parts (images, ...) simply contribute nothing.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = [_text_of(item) for item in content]
        return " ".join(piece for piece in pieces if piece)
    if isinstance(content, dict):
        for key in ("text", "content", "parts"):
            if key in content:
                return _text_of(content[key])
    return ""


def _prompt_words(messages: Json) -> int:
    """Deterministic prompt "tokens": words of every message plus 5 per message."""
    if not isinstance(messages, list):
        return _words(_text_of(messages)) + 5
    return sum(_words(_text_of(m)) for m in messages) + 5 * len(messages)


def _pieces(text: str) -> list[str]:
    """Split into word-sized stream deltas whose concatenation is exactly ``text``."""
    found = re.findall(r"\S+\s*|\s+", text)
    return found if found else [""]


def _split_n(text: str, n: int) -> list[str]:
    """Split ``text`` into ``n`` roughly equal non-empty parts (for JSON deltas)."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _embedding(text: str) -> list[float]:
    # int16 / 32768 is exactly representable as float32, so the float and the
    # base64 (float32) encodings decode to identical Python floats.
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [int.from_bytes(digest[i : i + 2], "little", signed=True) / 32768.0 for i in range(0, 16, 2)]


def _dumps(obj: Json) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def _sse(data: Json, event: str | None = None, eol: str = "\n") -> bytes:
    head = f"event: {event}{eol}" if event is not None else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}{eol}{eol}".encode()


def _find_key(obj: Json, key: str) -> bool:
    if isinstance(obj, dict):
        return key in obj or any(_find_key(v, key) for v in obj.values())
    if isinstance(obj, list):
        return any(_find_key(v, key) for v in obj)
    return False


def _fault_of(model: str) -> str | None:
    for name in _FAULTS:
        if name in model:
            return name
    return None


def _last_user_text(messages: Json) -> str:
    if not isinstance(messages, list):
        return _text_of(messages)
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role", "user") == "user":
            return _text_of(message)
    return ""


# ---------------------------------------------------------------------------
# Error bodies, one shape per provider family
# ---------------------------------------------------------------------------

_OPENAI_ERR = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
}
_ANTHROPIC_ERR = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
}
_GEMINI_ERR = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
}


def _error_body(family: str, status: int, message: str, request_id: str) -> Json:
    if family == "anthropic":
        kind = _ANTHROPIC_ERR.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    if family == "gemini":
        return {"error": {"code": status, "message": message, "status": _GEMINI_ERR.get(status, "UNKNOWN")}}
    kind, code = _OPENAI_ERR.get(status, ("server_error", "server_error"))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Lets a test stop() and immediately rebind the same port, even with
    # connections of the previous incarnation lingering in TIME_WAIT.
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: LLMServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Client disconnects are expected (abandoned streams, stop() shutting
        # sockets down); only genuine server bugs deserve a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _ClientGone(Exception):
    """Raised internally when a write fails because the peer disconnected."""


_QUIET_ERRORS: tuple[type[BaseException], ...] = (_ClientGone, *_DISCONNECT_ERRORS)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeLLM/1.0"
    # Never block forever on an idle keep-alive connection from a client that
    # vanished without FIN; stop() also shuts active sockets down explicitly.
    timeout = 60.0
    _received: ReceivedRequest

    # -- lifecycle ---------------------------------------------------------

    @property
    def owner(self) -> LLMServer:
        return cast(_HTTPServer, self.server).owner

    def setup(self) -> None:
        super().setup()
        self.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except _DISCONNECT_ERRORS:
            pass
        finally:
            self.owner._track(self.connection, add=False)

    def version_string(self) -> str:
        # The default appends the Python version, which is noise in recordings.
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        # Test output should stay clean; requests are inspectable via .requests.
        return

    # -- method dispatch ---------------------------------------------------

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            self._handle()
        except _QUIET_ERRORS:
            # The peer is gone; never try to reuse this connection.
            self.close_connection = True
        finally:
            received = getattr(self, "_received", None)
            if received is not None:
                received.finished.set()

    # -- request reading ---------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(65537)
            if not line:
                break
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Consume optional trailers up to the blank line so the next
                # keep-alive request starts at a clean boundary.
                while True:
                    trailer = self.rfile.readline(65537)
                    if trailer in (b"\r\n", b"\n", b""):
                        break
                break
            out += self.rfile.read(size)
            self.rfile.readline(65537)  # CRLF after the chunk data
        return bytes(out)

    # -- response writing --------------------------------------------------

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except _DISCONNECT_ERRORS as exc:
            raise _ClientGone from exc

    def _common_headers(self) -> Headers:
        return [
            ("x-request-id", f"req_{secrets.token_hex(12)}"),
            ("Set-Cookie", f"session={secrets.token_hex(16)}; Path=/"),
        ]

    def _start(self, status: int, headers: Headers) -> None:
        self.send_response(status)
        for name, value in [*self._common_headers(), *headers]:
            self.send_header(name, value)
        try:
            self.end_headers()
        except _DISCONNECT_ERRORS as exc:
            raise _ClientGone from exc

    def _wants_gzip(self) -> bool:
        accepts = "gzip" in self.headers.get("Accept-Encoding", "").lower()
        return accepts and self.headers.get("x-test-gzip") == "1"

    def _send_json(self, status: int, obj: Json, extra: Headers | None = None, *, cut: bool = False) -> None:
        body = _dumps(obj)
        headers: Headers = [("Content-Type", "application/json"), *(extra or [])]
        if self._wants_gzip():
            body = zlib.compress(body, wbits=31)
            headers.append(("Content-Encoding", "gzip"))
        if cut:
            # Promise more than we send, then hang up: the client must notice
            # an incomplete body rather than silently accept a truncated one.
            headers.append(("Content-Length", str(len(body) + 100)))
            self._start(status, headers)
            self._write(body[: max(1, len(body) // 2)])
            self.close_connection = True
            return
        headers.append(("Content-Length", str(len(body))))
        self._start(status, headers)
        self._write(body)

    def _send_error_json(self, family: str, status: int, message: str) -> None:
        # SDKs honour x-should-retry; only 429/500 are left retryable so that
        # retry behaviour stays testable while other errors fail fast.
        extra: Headers = []
        if status == 429:
            extra.append(("retry-after", "0"))
        if status not in (429, 500):
            extra.append(("x-should-retry", "false"))
        self._send_json(status, _error_body(family, status, message, f"req_{secrets.token_hex(12)}"), extra)

    def _send_stream(
        self, events: list[bytes], fault: str | None, content_type: str = "text/event-stream"
    ) -> None:
        gzip = self._wants_gzip()
        headers: Headers = [
            ("Content-Type", content_type),
            ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"),
        ]
        if gzip:
            headers.append(("Content-Encoding", "gzip"))
        self._start(200, headers)
        compressor = zlib.compressobj(wbits=31) if gzip else None

        def chunk(data: bytes) -> None:
            if data:
                self._write(b"%x\r\n%s\r\n" % (len(data), data))

        def encode(data: bytes) -> bytes:
            if compressor is None:
                return data
            # SYNC_FLUSH makes each event decodable as soon as it arrives,
            # which is what a streaming client (and a recorder) relies on.
            return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)

        # Cut after two events, but always leave at least one unsent so even a
        # short stream is visibly incomplete at the SSE level too.
        cut_at = min(2, max(len(events) - 1, 1)) if fault == "fault-cut" else -1
        split_at_cr = self.owner.sse_crlf_split and compressor is None and content_type == "text/event-stream"
        for index, event in enumerate(events):
            if index == cut_at:
                # No terminating zero-length chunk: the client must see a
                # protocol error / incomplete read, not a clean end of stream.
                self.close_connection = True
                return
            if fault == "fault-hang-after-first" and index == 1:
                if self._client_leaves_within(self.owner.chunk_delay * _HANG_FACTOR):
                    self._received.client_left = True
                    raise _ClientGone
            elif index > 0 and self.owner.chunk_delay > 0:
                self.owner.sleep(self.owner.chunk_delay)
            if split_at_cr:
                # CRLF line ends, each HTTP chunk ending right after a "\r": its "\n" opens the next one.
                crlf = event.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                for piece in re.split(b"(?<=\r)", crlf):
                    chunk(piece)
            else:
                chunk(encode(event))
            self._received.events_sent += 1
        if compressor is not None:
            chunk(compressor.flush())
        self._write(b"0\r\n\r\n")

    def _deltas(self, text: str, json_parts: int | None = None) -> list[str]:
        """Stream deltas of ``text``: words (JSON in ``json_parts`` parts), or ``delta_chars`` characters
        each when the server is set to cut streams small, as tokenizers cut a key in real streams."""
        size = self.owner.delta_chars
        if size:
            return [text[i : i + size] for i in range(0, len(text), size)] or [""]
        return _split_n(text, json_parts) if json_parts else _pieces(text)

    def _client_leaves_within(self, timeout: float) -> bool:
        """Whether the client closes the connection within ``timeout`` seconds (it sends nothing more
        while it reads a response, so the socket turns readable only when it hangs up)."""
        readable, _, _ = select.select([self.connection], [], [], timeout)
        if not readable:
            return False
        try:
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except OSError:
            return True

    # -- routing -----------------------------------------------------------

    def _handle(self) -> None:
        raw = self._read_body()
        parsed: Json = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        self._received = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers=self._lower_headers(),
            body=raw,
            json=parsed,
        )
        self.owner._record(self._received)
        route = urlsplit(self.path).path.rstrip("/")
        if self.command == "POST" and route.startswith("/model/") and isinstance(parsed, dict):
            # Bedrock Runtime lives beside this file (it imports this module's helpers).
            import bedrock_server

            bedrock_server.handle(self, route, parsed)
            return
        if self.command == "POST" and isinstance(parsed, dict):
            # Cohere, Ollama, Anthropic on Vertex, token counting, embeddings and moderation: beside this
            # file too.
            import more_routes

            if more_routes.handle(self, route, parsed):
                return

        if self.command == "GET" and route.startswith("/files/"):
            # A file an LLM app downloads (an image to describe): bytes that are not text, not an LLM call.
            data = hashlib.sha256(route.encode()).digest() * 8
            self._start(
                200, [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(data)))]
            )
            self._write(data)
            return

        endpoint: Callable[[Json, str, bool, str | None], None] | None = None
        family = "openai"
        model = ""
        if self.command == "POST":
            if route.endswith("/chat/completions"):
                endpoint = self._chat
            elif route.endswith("/responses"):
                endpoint = self._responses
            elif route.endswith("/embeddings"):
                endpoint = self._embeddings
            elif route.endswith("/messages"):
                endpoint, family = self._anthropic, "anthropic"
            elif route.endswith(":generateContent") or route.endswith(":streamGenerateContent"):
                endpoint, family = self._gemini, "gemini"
                model = route.rsplit("/", 1)[-1].split(":", 1)[0]
            elif route.endswith(("/count_tokens", ":countTokens", "/moderations", "/input_tokens")):
                endpoint = self._free

        if endpoint is None:
            self._send_error_json(family, 404, f"No route for {self.command} {self.path}")
            return
        if raw and not isinstance(parsed, dict):
            self._send_error_json(family, 400, "Request body is not a JSON object")
            return
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        if family != "gemini":
            model = str(body.get("model", ""))

        stream = route.endswith(":streamGenerateContent") if family == "gemini" else bool(body.get("stream"))

        fault = _fault_of(model)
        if "fault-slow" in model:
            # Also before an injected error, so concurrent identical failing calls overlap.
            self.owner.sleep(_SLOW_SECONDS)
        if fault == "fault-flaky" and self.owner._first_time(raw):
            self._send_error_json(family, 429, f"Injected transient fault for model {model!r}")
            return
        if fault in _FAULT_STATUS:
            self._send_error_json(family, _FAULT_STATUS[fault], f"Injected fault {fault} for model {model!r}")
            return
        endpoint(body, model, stream, fault)

    def _lower_headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            out[key] = f"{out[key]}, {value}" if key in out else value
        return out

    def _finish(self, obj: Json, events: Callable[[], list[bytes]], stream: bool, fault: str | None) -> None:
        if stream:
            self._send_stream(events(), fault)
        else:
            self._send_json(200, obj, cut=fault == "fault-cut")

    # -- OpenAI chat completions -------------------------------------------

    def _chat(self, body: Json, model: str, stream: bool, fault: str | None) -> None:
        messages = body.get("messages") or []
        user_text = _last_user_text(messages)
        answer = f"echo: {user_text}"
        prompt_tokens = _prompt_words(messages)
        completion_tokens = _words(answer)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        opts = body.get("stream_options")
        if not stream or (isinstance(opts, dict) and opts.get("include_usage")):
            self._received.sent_usage = usage
        tool_name = _first_tool_name(body.get("tools"))
        call_id = f"call_{secrets.token_hex(12)}"
        arguments = json.dumps({"echo": user_text})
        base = {
            "id": self.owner._new_id("chatcmpl"),
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": f"fp_{secrets.token_hex(5)}",
            "service_tier": "default",
        }
        if tool_name is not None:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "annotations": [],
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": tool_name, "arguments": arguments},
                    }
                ],
            }
            finish_reason = "tool_calls"
        else:
            message = {"role": "assistant", "content": answer, "refusal": None, "annotations": []}
            finish_reason = "stop"
        full = {
            **base,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage,
        }

        def events() -> list[bytes]:
            opts = body.get("stream_options")
            include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))

            def chunk(delta: Json, finish: str | None = None) -> bytes:
                obj: dict[str, Any] = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                }
                if include_usage:
                    # OpenAI sends an explicit null on every chunk but the last.
                    obj["usage"] = None
                return _sse(obj)

            out: list[bytes] = []
            if tool_name is not None:
                out.append(
                    chunk(
                        {
                            "role": "assistant",
                            "content": None,
                            "refusal": None,
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": call_id,
                                    "type": "function",
                                    "function": {"name": tool_name, "arguments": ""},
                                }
                            ],
                        }
                    )
                )
                for part in self._deltas(arguments, json_parts=3):
                    out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
            else:
                out.append(chunk({"role": "assistant", "content": "", "refusal": None}))
                for word in self._deltas(answer):
                    out.append(chunk({"content": word}))
            out.append(chunk({}, finish_reason))
            if include_usage:
                out.append(_sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
            out.append(b"data: [DONE]\n\n")
            return out

        self._finish(full, events, stream, fault)

    # -- OpenAI responses --------------------------------------------------

    def _responses(self, body: Json, model: str, stream: bool, fault: str | None) -> None:
        raw_input = body.get("input", "")
        items = raw_input if isinstance(raw_input, list) else [{"role": "user", "content": raw_input}]
        user_text = _last_user_text(items)
        answer = f"echo: {user_text}"
        instructions = body.get("instructions")
        input_tokens = _prompt_words(items)
        if isinstance(instructions, str):
            input_tokens += _words(instructions)
        output_tokens = _words(answer)
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }
        self._received.sent_usage = usage
        resp_id = self.owner._new_id("resp")
        msg_id = self.owner._new_id("msg")
        created = int(time.time())

        part_empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}

        def message(status: str, text: str | None) -> Json:
            content = [] if text is None else [{**part_empty, "text": text}]
            return {
                "type": "message",
                "id": msg_id,
                "status": status,
                "role": "assistant",
                "content": content,
            }

        def response(status: str, output: list[Json], final_usage: Json) -> Json:
            return {
                "id": resp_id,
                "object": "response",
                "created_at": created,
                "status": status,
                "background": False,
                "completed_at": int(time.time()) if status == "completed" else None,
                "error": None,
                "incomplete_details": None,
                "instructions": instructions,
                "max_output_tokens": body.get("max_output_tokens"),
                "max_tool_calls": None,
                "model": model,
                "output": output,
                "parallel_tool_calls": True,
                "previous_response_id": body.get("previous_response_id"),
                "prompt_cache_key": body.get("prompt_cache_key"),
                "reasoning": {"effort": None, "summary": None},
                "safety_identifier": None,
                "service_tier": "default",
                "store": body.get("store", True),
                "temperature": body.get("temperature", 1.0),
                "text": {"format": {"type": "text"}, "verbosity": "medium"},
                "tool_choice": body.get("tool_choice", "auto"),
                "tools": body.get("tools") or [],
                "top_logprobs": 0,
                "top_p": body.get("top_p", 1.0),
                "truncation": "disabled",
                "usage": final_usage,
                "user": None,
                "metadata": body.get("metadata") or {},
            }

        full = response("completed", [message("completed", answer)], usage)

        def events() -> list[bytes]:
            seq = iter(range(1_000_000))

            def ev(kind: str, **fields: Json) -> bytes:
                return _sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

            part_full = {**part_empty, "text": answer}
            loc = {"item_id": msg_id, "output_index": 0, "content_index": 0}
            out = [
                ev("response.created", response=response("in_progress", [], None)),
                ev("response.in_progress", response=response("in_progress", [], None)),
                ev("response.output_item.added", output_index=0, item=message("in_progress", None)),
                ev("response.content_part.added", **loc, part=part_empty),
            ]
            deltas = self._deltas(answer)
            out += [ev("response.output_text.delta", **loc, delta=w, logprobs=[]) for w in deltas]
            out += [
                ev("response.output_text.done", **loc, text=answer, logprobs=[]),
                ev("response.content_part.done", **loc, part=part_full),
                ev("response.output_item.done", output_index=0, item=message("completed", answer)),
                ev("response.completed", response=full),
            ]
            return out

        self._finish(full, events, stream, fault)

    # -- OpenAI embeddings -------------------------------------------------

    def _embeddings(self, body: Json, model: str, stream: bool, fault: str | None) -> None:
        raw = body.get("input", "")
        # A flat list of ints is one tokenised input; anything else listy is a batch.
        if isinstance(raw, list) and raw and not all(isinstance(x, int) for x in raw):
            inputs = [x if isinstance(x, str) else json.dumps(x) for x in raw]
        else:
            inputs = [raw if isinstance(raw, str) else json.dumps(raw)]
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = _embedding(text)
            encoded: Json = base64.b64encode(struct.pack("<8f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(_words(t) for t in inputs)
        obj = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        self._received.sent_usage = obj["usage"]
        # Embeddings never stream; fault-cut still applies to the plain body.
        self._send_json(200, obj, [("openai-model", model)], cut=fault == "fault-cut")

    # -- free endpoints: token counting and moderation, no usage billed -----

    def _free(self, body: Json, model: str, stream: bool, fault: str | None) -> None:
        route = urlsplit(self.path).path
        words = _prompt_words(body.get("messages") or body.get("contents") or body.get("input") or "")
        if route.endswith("/moderations"):
            results = [{"flagged": False, "categories": {}, "category_scores": {}}]
            obj: Json = {"id": self.owner._new_id("modr"), "model": model, "results": results}
        elif route.endswith(":countTokens"):
            obj = {"totalTokens": words}
        else:  # Anthropic's /v1/messages/count_tokens, OpenAI's /v1/responses/input_tokens
            obj = {"input_tokens": words}
        self._send_json(200, obj)

    # -- Anthropic messages ------------------------------------------------

    def _anthropic(self, body: Json, model: str, stream: bool, fault: str | None) -> None:
        messages = body.get("messages") or []
        system = body.get("system")
        user_text = _last_user_text(messages)
        answer = f"echo: {user_text}"
        input_tokens = _prompt_words(messages) + _words(_text_of(system))
        output_tokens = _words(answer)
        cache_read = _ANTHROPIC_CACHE_READ_TOKENS if _find_key(system, "cache_control") else 0
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cache_read,
            "service_tier": "standard",
        }
        self._received.sent_usage = usage
        tool_name = _first_tool_name(body.get("tools"))
        tool_id = f"toolu_{secrets.token_hex(12)}"
        if tool_name is not None:
            block: Json = {"type": "tool_use", "id": tool_id, "name": tool_name, "input": {"echo": user_text}}
            stop_reason = "tool_use"
        else:
            block = {"type": "text", "text": answer}
            stop_reason = "end_turn"
        msg_id = self.owner._new_id("msg")
        full = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

        def events() -> list[bytes]:
            def ev(kind: str, **fields: Json) -> bytes:
                return _sse({"type": kind, **fields}, event=kind)

            start_msg = {**full, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
            if tool_name is not None:
                start_block: Json = {**block, "input": {}}
                deltas = [
                    {"type": "input_json_delta", "partial_json": p}
                    for p in ["", *self._deltas(json.dumps({"echo": user_text}), json_parts=3)]
                ]
            else:
                start_block = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": w} for w in self._deltas(answer)]
            out = [
                ev("message_start", message=start_msg),
                ev("content_block_start", index=0, content_block=start_block),
                ev("ping"),
            ]
            out += [ev("content_block_delta", index=0, delta=d) for d in deltas]
            out += [
                ev("content_block_stop", index=0),
                ev(
                    "message_delta",
                    delta={"stop_reason": stop_reason, "stop_sequence": None},
                    usage={"output_tokens": output_tokens},
                ),
                ev("message_stop"),
            ]
            return out

        self._finish(full, events, stream, fault)

    # -- Gemini ------------------------------------------------------------

    def _gemini(self, body: Json, model: str, stream: bool, fault: str | None) -> None:
        contents = body.get("contents") or []
        user_text = _last_user_text(contents)
        answer = f"echo: {user_text}"
        system = body.get("systemInstruction") or body.get("system_instruction")
        prompt_tokens = _prompt_words(contents) + _words(_text_of(system))
        out_tokens = _words(answer)
        usage: dict[str, Any] = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": out_tokens,
            "totalTokenCount": prompt_tokens + out_tokens,
        }
        if body.get("cachedContent"):
            usage["cachedContentTokenCount"] = _GEMINI_CACHED_CONTENT_TOKENS
        self._received.sent_usage = usage
        response_id = self.owner._new_id("gem")
        # Ids must be unique but Gemini's have no prefix; keep the counter anyway.
        meta = {"modelVersion": model, "responseId": response_id}

        def candidate(text: str, finish: bool) -> Json:
            cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
            if finish:
                cand["finishReason"] = "STOP"
            return cand

        full = {"candidates": [candidate(answer, True)], "usageMetadata": usage, **meta}

        def chunks() -> list[Json]:
            words = self._deltas(answer)
            out: list[Json] = []
            for i, word in enumerate(words):
                last = i == len(words) - 1
                obj: dict[str, Any] = {"candidates": [candidate(word, last)], **meta}
                if last:
                    obj["usageMetadata"] = usage
                out.append(obj)
            return out

        if not stream:
            self._send_json(200, full, cut=fault == "fault-cut")
        elif parse_qs(urlsplit(self.path).query).get("alt") == ["sse"]:
            # Google terminates SSE lines with CRLF; keep that so parsers that
            # only handle "\n\n" are caught by tests.
            self._send_stream([_sse(c, eol="\r\n") for c in chunks()], fault)
        else:
            # Without alt=sse Gemini streams a single JSON array incrementally.
            parts = chunks()
            pieces = [(b"[" if i == 0 else b",\r\n") + _dumps(c) for i, c in enumerate(parts)]
            pieces[-1] += b"]"
            self._send_stream(pieces, fault, content_type="application/json")


def _first_tool_name(tools: Json) -> str | None:
    if not isinstance(tools, list) or not tools or not isinstance(tools[0], dict):
        return None
    first = tools[0]
    function = first.get("function")
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return str(function["name"])
    name = first.get("name")
    return name if isinstance(name, str) else None


# ---------------------------------------------------------------------------
# Public server object
# ---------------------------------------------------------------------------


class LLMServer:
    """Fake OpenAI / Anthropic / Gemini HTTP server on a background thread.

    ``chunk_delay`` may be changed while running; streams read it per chunk. So may ``sse_crlf_split``:
    SSE streams then end lines with CRLF and split every line end across two HTTP chunks.
    ``delta_chars``, when set, cuts every streamed text (and tool-call arguments) into deltas of that
    many characters. Every pause the server makes on purpose (chunk delays, fault-slow) goes through
    ``sleep``, which a test may replace to see the pauses without waiting for them.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay: float = 0.0) -> None:
        self.host = host
        self.chunk_delay = chunk_delay
        self.delta_chars: int | None = None
        self.sse_crlf_split = False
        self.sleep: Callable[[float], None] = time.sleep
        self.requests: list[ReceivedRequest] = []
        self._requested_port = port
        self._lock = threading.Lock()
        self._counter = 0
        self._seen_bodies: set[bytes] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # -- lifecycle ---------------------------------------------------------

    def _first_time(self, body: bytes) -> bool:
        with self._lock:
            if body in self._seen_bodies:
                return False
            self._seen_bodies.add(body)
            return True

    def start(self) -> LLMServer:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"LLMServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        # Keep-alive connections outlive serve_forever(); without this a
        # pooled client could keep talking to a "stopped" server.
        with self._lock:
            live = list(self._connections)
            self._connections.clear()
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addressing --------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("LLMServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- inspection --------------------------------------------------------

    def count(self, path_suffix: str | None = None) -> int:
        """Requests received so far, optionally only those whose path ends with
        ``path_suffix`` (checked with and without the query string)."""
        with self._lock:
            snapshot = list(self.requests)
        if path_suffix is None:
            return len(snapshot)
        return sum(
            1
            for r in snapshot
            if r.path.endswith(path_suffix) or r.path.split("?", 1)[0].endswith(path_suffix)
        )

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._counter = 0

    # -- used by the handler -----------------------------------------------

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _new_id(self, prefix: str) -> str:
        # Counter for readability/ordering, random part so ids never repeat
        # across reset() or server restarts.
        with self._lock:
            self._counter += 1
            n = self._counter
        return f"{prefix}-{n}-{secrets.token_hex(4)}"

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake LLM provider server for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # SIGINT explicitly too: a shell starting us in the background sets it to
    # SIG_IGN, which would otherwise make Ctrl-C / `kill -INT` a no-op.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = LLMServer(args.host, args.port, args.chunk_delay).start()
    print(f"listening on {server.url}", flush=True)
    try:
        # A short wait timeout keeps the main thread returning to the
        # interpreter so signal handlers run promptly.
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
