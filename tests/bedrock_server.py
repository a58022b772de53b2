"""The fake provider's Bedrock Runtime routes: ``/model/{modelId}/converse``, ``/converse-stream``,
``/invoke`` and ``/invoke-with-response-stream``, enough of them for boto3's ``bedrock-runtime`` client.

As for the other providers in ``llm_server``: the answer echoes the last user text, token counts are word
counts, and every live answer carries something fresh (a request id, a latency, a message id) that a
replay would repeat. Streams are AWS event streams (``application/vnd.amazon.eventstream``), one message
per HTTP chunk, as Bedrock sends them. Signatures are not checked.

Faults by model id, as elsewhere: ``fault-500``/``-429``/``-400``/``-401`` answer that error in Bedrock's
shape, ``fault-cut`` cuts a stream after two messages, ``fault-stream-error`` ends a stream with an
exception message (as a model error mid-stream does).
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import uuid
import zlib
from typing import Any, Protocol
from urllib.parse import unquote

from llm_server import (
    _FAULT_STATUS,
    Json,
    ReceivedRequest,
    _fault_of,
    _last_user_text,
    _pieces,
    _prompt_words,
    _text_of,
    _words,
)

EVENT_STREAM = "application/vnd.amazon.eventstream"
CACHE_READ_TOKENS = 100
CACHE_WRITE_TOKENS = 20
_ERROR_TYPES = {
    400: "ValidationException",
    401: "AccessDeniedException",
    429: "ThrottlingException",
    500: "InternalServerException",
}


class Handler(Protocol):
    """What these routes use of ``llm_server``'s request handler."""

    _received: ReceivedRequest

    def _send_json(
        self, status: int, obj: Json, extra: list[tuple[str, str]] | None = None, *, cut: bool = False
    ) -> None: ...

    def _send_stream(self, events: list[bytes], fault: str | None, content_type: str = ...) -> None: ...

    @property
    def owner(self) -> Any: ...


# -- the event-stream wire format ----------------------------------------------------------------------


def _string_header(name: str, value: str) -> bytes:
    encoded_name, encoded = name.encode(), value.encode()
    # Header value type 7: a UTF-8 string with a two-byte length.
    return bytes([len(encoded_name)]) + encoded_name + b"\x07" + len(encoded).to_bytes(2, "big") + encoded


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (lengths, CRC), headers, payload, CRC of all before it."""
    header_bytes = b"".join(_string_header(k, v) for k, v in headers.items())
    total = 16 + len(header_bytes) + len(payload)
    prelude = total.to_bytes(4, "big") + len(header_bytes).to_bytes(4, "big")
    body = prelude + zlib.crc32(prelude).to_bytes(4, "big") + header_bytes + payload
    return body + zlib.crc32(body).to_bytes(4, "big")


def event(kind: str, payload: Json) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, json.dumps(payload, separators=(",", ":")).encode())


def exception(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, json.dumps({"message": message}).encode())


# -- routes --------------------------------------------------------------------------------------------


def handle(handler: Handler, route: str, body: dict[str, Any]) -> None:
    model_id, _, operation = unquote(route.removeprefix("/model/")).rpartition("/")
    fault = "fault-stream-error" if "fault-stream-error" in model_id else _fault_of(model_id)
    if fault in _FAULT_STATUS:
        status = _FAULT_STATUS[fault]
        extra = [("x-amzn-ErrorType", f"{_ERROR_TYPES[status]}:http://internal.amazon.com/coral/")]
        handler._send_json(status, {"message": f"Injected fault {fault} for {model_id}"}, extra)
        return
    if operation in ("converse", "converse-stream"):
        _converse(handler, body, stream=operation == "converse-stream", fault=fault)
    elif operation in ("invoke", "invoke-with-response-stream"):
        _invoke(handler, model_id, body, stream=operation == "invoke-with-response-stream", fault=fault)
    else:
        handler._send_json(404, {"message": f"Unknown operation {operation}"})


def _request_id() -> list[tuple[str, str]]:
    return [("x-amzn-RequestId", str(uuid.uuid4()))]


def _converse(handler: Handler, body: dict[str, Any], *, stream: bool, fault: str | None) -> None:
    messages = body.get("messages") or []
    system = body.get("system")
    answer = f"echo: {_last_user_text(messages)}"
    cached = "cachePoint" in json.dumps(system)
    usage = {
        "inputTokens": _prompt_words(messages) + _words(_text_of(system)),
        "outputTokens": _words(answer),
        "cacheReadInputTokens": CACHE_READ_TOKENS if cached else 0,
        "cacheWriteInputTokens": CACHE_WRITE_TOKENS if cached else 0,
    }
    usage["totalTokens"] = sum(usage.values())
    handler._received.sent_usage = usage
    # A fresh latency per live answer: a replay repeats the recorded one.
    metrics = {"latencyMs": random.randint(100, 100_000)}
    if not stream:
        reply = {
            "output": {"message": {"role": "assistant", "content": [{"text": answer}]}},
            "stopReason": "end_turn",
            "usage": usage,
            "metrics": metrics,
        }
        handler._send_json(200, reply, _request_id(), cut=fault == "fault-cut")
        return
    events = [event("messageStart", {"role": "assistant"})]
    deltas = [{"contentBlockIndex": 0, "delta": {"text": piece}} for piece in _pieces(answer)]
    events += [event("contentBlockDelta", delta) for delta in deltas]
    events += [
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": "end_turn"}),
    ]
    if fault == "fault-stream-error":
        events.append(exception("modelStreamErrorException", "Injected model error mid-stream"))
    else:
        events.append(event("metadata", {"usage": usage, "metrics": metrics}))
    handler._send_stream(events, fault, content_type=EVENT_STREAM)


def _anthropic_model(model_id: str) -> str:
    """What Anthropic-on-Bedrock names itself in its body: ``claude-3-haiku-20240307`` for
    ``anthropic.claude-3-haiku-20240307-v1:0`` (and regional or global prefixes)."""
    name = model_id.rsplit("anthropic.", 1)[-1]
    return name.rsplit("-v", 1)[0] if "-v" in name else name


def _invoke(
    handler: Handler, model_id: str, body: dict[str, Any], *, stream: bool, fault: str | None
) -> None:
    messages = body.get("messages") or []
    system = body.get("system")
    answer = f"echo: {_last_user_text(messages)}"
    cached = "cache_control" in json.dumps(system)
    usage = {
        "input_tokens": _prompt_words(messages) + _words(_text_of(system)),
        "cache_creation_input_tokens": CACHE_WRITE_TOKENS if cached else 0,
        "cache_read_input_tokens": CACHE_READ_TOKENS if cached else 0,
        "output_tokens": _words(answer),
    }
    handler._received.sent_usage = usage
    message_id = f"msg_bdrk_{secrets.token_hex(12)}"
    full = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": _anthropic_model(model_id),
        "content": [{"type": "text", "text": answer}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    if not stream:
        counts = [
            ("x-amzn-bedrock-input-token-count", str(usage["input_tokens"])),
            ("x-amzn-bedrock-output-token-count", str(usage["output_tokens"])),
        ]
        handler._send_json(200, full, [*_request_id(), *counts], cut=fault == "fault-cut")
        return
    start = {**full, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    pieces: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    pieces += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
        for p in _pieces(answer)
    ]
    metrics = {
        "inputTokenCount": usage["input_tokens"],
        "outputTokenCount": usage["output_tokens"],
        "invocationLatency": random.randint(100, 100_000),
        "firstByteLatency": random.randint(10, 100),
    }
    pieces += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics},
    ]
    events = [
        event("chunk", {"bytes": base64.b64encode(json.dumps(p, separators=(",", ":")).encode()).decode()})
        for p in pieces
    ]
    if fault == "fault-stream-error":
        events[-1] = exception("modelStreamErrorException", "Injected model error mid-stream")
    handler._send_stream(events, fault, content_type=EVENT_STREAM)
