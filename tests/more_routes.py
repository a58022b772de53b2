"""The fake provider's routes beyond chat and Bedrock: Cohere v2 (``/v2/chat``, ``/v2/embed``), Ollama
(``/api/chat``, ``/api/generate``, ``/api/embed``), Anthropic on Vertex AI (``:rawPredict``,
``:streamRawPredict``), and the token-counting, embedding and moderation endpoints (Anthropic's
``/messages/count_tokens``, Gemini's ``:countTokens``, ``:embedContent``, ``:batchEmbedContents``,
OpenAI's ``/moderations``), enough of each for the real SDKs.

As in ``llm_server``: the answer echoes the last user text, token counts are word counts, and every live
answer carries something fresh (an id, a timestamp, a duration) that a replay would repeat. Cohere bills
fewer input tokens than its model reads (its prompt template): ``billed_units`` and ``tokens`` differ, so a
test sees which one a count came from.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from llm_server import (
    Json,
    ReceivedRequest,
    _embedding,
    _last_user_text,
    _pieces,
    _prompt_words,
    _sse,
    _words,
)

COHERE_TEMPLATE_TOKENS = 64
NDJSON = "application/x-ndjson"


class Handler(Protocol):
    """What these routes use of ``llm_server``'s request handler."""

    _received: ReceivedRequest

    def _send_json(
        self, status: int, obj: Json, extra: list[tuple[str, str]] | None = None, *, cut: bool = False
    ) -> None: ...

    def _send_stream(self, events: list[bytes], fault: str | None, content_type: str = ...) -> None: ...

    def _anthropic(self, body: Json, model: str, stream: bool, fault: str | None) -> None: ...


def handle(handler: Handler, route: str, body: dict[str, Any]) -> bool:
    """Answer the request if it is one of these routes; False leaves it to ``llm_server``."""
    if "/publishers/anthropic/models/" in route and route.endswith((":rawPredict", ":streamRawPredict")):
        model, _, verb = route.rpartition("/")[2].partition(":")
        if model == "count-tokens":
            _count_tokens(handler, body)
        else:
            handler._anthropic(body, model, verb == "streamRawPredict", None)
        return True
    routes = {
        "/v2/chat": _cohere_chat,
        "/v2/embed": _cohere_embed,
        "/api/chat": _ollama,
        "/api/generate": _ollama,
        "/api/embed": _ollama_embed,
        "/messages/count_tokens": _count_tokens,
        ":countTokens": _gemini_count,
        ":embedContent": _gemini_embed,
        ":batchEmbedContents": _gemini_embed,
        "/moderations": _moderation,
    }
    for suffix, answer in routes.items():
        if route.endswith(suffix):
            answer(handler, body)
            return True
    return False


def _usage(handler: Handler, usage: Json) -> Json:
    handler._received.sent_usage = usage
    return usage


# -- Cohere v2 -----------------------------------------------------------------------------------------


def _cohere_chat(handler: Handler, body: dict[str, Any]) -> None:
    messages = body.get("messages") or []
    answer = f"echo: {_last_user_text(messages)}"
    billed = {"input_tokens": _prompt_words(messages), "output_tokens": _words(answer)}
    tokens = {**billed, "input_tokens": billed["input_tokens"] + COHERE_TEMPLATE_TOKENS}
    usage = _usage(handler, {"billed_units": billed, "tokens": tokens})
    chat_id = str(uuid.uuid4())
    if not body.get("stream"):
        message = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
        answered = {"id": chat_id, "message": message, "finish_reason": "COMPLETE", "usage": usage}
        handler._send_json(200, answered)
        return

    def ev(kind: str, **fields: Json) -> bytes:
        return _sse({"type": kind, **fields}, event=kind)

    empty = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events = [
        ev("message-start", id=chat_id, delta={"message": empty}),
        ev("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}}),
        *(ev("content-delta", index=0, delta={"message": {"content": {"text": w}}}) for w in _pieces(answer)),
        ev("content-end", index=0),
        ev("message-end", delta={"finish_reason": "COMPLETE", "usage": usage}),
    ]
    handler._send_stream(events, None)


def _cohere_embed(handler: Handler, body: dict[str, Any]) -> None:
    texts = [t for t in body.get("texts") or [] if isinstance(t, str)]
    billed = _usage(handler, {"input_tokens": sum(_words(t) for t in texts)})
    handler._send_json(
        200,
        {
            "id": str(uuid.uuid4()),
            "embeddings": {"float": [_embedding(t) for t in texts]},
            "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": billed},
            "response_type": "embeddings_by_type",
        },
    )


# -- Ollama --------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _durations() -> dict[str, int]:
    """Nanoseconds, as Ollama reports them: fresh in every live answer."""
    total = time.perf_counter_ns() % 1_000_000_000 + secrets.randbelow(1000)
    return {"total_duration": total, "load_duration": total // 4, "eval_duration": total // 2}


def _ollama(handler: Handler, body: dict[str, Any]) -> None:
    chat = "messages" in body
    text = _last_user_text(body.get("messages") or []) if chat else str(body.get("prompt") or "")
    answer = f"echo: {text}"
    model = str(body.get("model", ""))
    usage = _usage(
        handler,
        {
            "prompt_eval_count": _prompt_words(body["messages"]) if chat else _words(text),
            "eval_count": _words(answer),
        },
    )

    def part(piece: str, done: bool) -> Json:
        said = {"message": {"role": "assistant", "content": piece}} if chat else {"response": piece}
        out: dict[str, Any] = {"model": model, "created_at": _now(), **said, "done": done}
        if done:
            out.update(done_reason="stop", **_durations(), **usage)
        return out

    # Ollama streams unless told not to.
    if body.get("stream", True) is False:
        handler._send_json(200, part(answer, True))
        return
    lines = [part(w, False) for w in _pieces(answer)] + [part("", True)]
    handler._send_stream([json.dumps(line).encode() + b"\n" for line in lines], None, content_type=NDJSON)


def _ollama_embed(handler: Handler, body: dict[str, Any]) -> None:
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) else [t for t in raw or [] if isinstance(t, str)]
    usage = _usage(handler, {"prompt_eval_count": sum(_words(t) for t in inputs)})
    embeddings = [_embedding(t) for t in inputs]
    handler._send_json(200, {"model": body.get("model"), "embeddings": embeddings, **_durations(), **usage})


# -- counting, embedding, moderation ---------------------------------------------------------------------


def _count_tokens(handler: Handler, body: dict[str, Any]) -> None:
    handler._send_json(200, {"input_tokens": _prompt_words(body.get("messages") or [])})


def _gemini_count(handler: Handler, body: dict[str, Any]) -> None:
    handler._send_json(200, {"totalTokens": _prompt_words(body.get("contents") or [])})


def _gemini_embed(handler: Handler, body: dict[str, Any]) -> None:
    batch = body.get("requests")
    requests: list[Any] = batch if isinstance(batch, list) else [body]
    texts = [_last_user_text([r.get("content")]) for r in requests if isinstance(r, dict)]
    tokens = sum(_words(t) for t in texts)
    usage = _usage(handler, {"promptTokenCount": tokens, "totalTokenCount": tokens})
    if isinstance(batch, list):
        embeddings = [{"values": _embedding(t)} for t in texts]
        handler._send_json(200, {"embeddings": embeddings, "usageMetadata": usage})
    else:
        handler._send_json(200, {"embedding": {"values": _embedding(texts[0] if texts else "")}})


def _moderation(handler: Handler, body: dict[str, Any]) -> None:
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) else list(raw or [])
    result = {
        "flagged": False,
        "categories": {"harassment": False, "violence": False},
        "category_scores": {"harassment": 0.0001, "violence": 0.0002},
        "category_applied_input_types": {"harassment": ["text"], "violence": ["text"]},
    }
    handler._send_json(
        200,
        {
            "id": f"modr-{secrets.token_hex(8)}",
            "model": body.get("model") or "omni-moderation-latest",
            "results": [result for _ in inputs],
        },
    )
