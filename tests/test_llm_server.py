"""Tests of the fake LLM server itself, driven by the real SDKs (no plugin involved).

These pin down the wire behaviour that the plugin's record/replay tests rely on,
so a failure here means "the fake provider changed", not "the plugin broke".
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from llm_server import LLMServer

ANTHROPIC_MODEL = "claude-test"  # not in the SDK's deprecation table, so no warnings
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "tell me more"}]}]}
TOOLS_OPENAI: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}},
        },
    }
]
TOOLS_ANTHROPIC: list[Any] = [
    {"name": "lookup", "input_schema": {"type": "object", "properties": {"echo": {"type": "string"}}}}
]


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def oai(server: LLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def ant(server: LLMServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------------------
# OpenAI chat completions
# ---------------------------------------------------------------------------


def test_chat_plain(server: LLMServer, oai: openai.OpenAI) -> None:
    before = int(time.time())
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=user("hello big world"))
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello big world"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id.startswith("chatcmpl-")
    assert before <= completion.created <= time.time()
    usage = completion.usage
    assert usage is not None
    # 3 words + 5 per message; answer "echo: hello big world" is 4 words.
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (8, 4, 12)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0
    assert raw.headers["set-cookie"].startswith("session=")
    assert raw.headers["set-cookie"].endswith("; Path=/")
    assert raw.headers["x-request-id"]
    seen = server.requests[-1]
    assert seen.method == "POST"
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.json == {"model": "gpt-4o-mini", "messages": user("hello big world")}
    assert json.loads(seen.body) == seen.json


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream(oai: openai.OpenAI, include_usage: bool) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=user("one two three"),
        stream=True,
        stream_options={"include_usage": True} if include_usage else openai.omit,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    # role chunk + one per word + finish chunk (+ usage chunk)
    assert len(chunks) == 1 + 4 + 1 + int(include_usage)
    assert len({c.id for c in chunks}) == 1
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    if include_usage:
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.total_tokens == 8 + 4
    else:
        assert all(c.usage is None for c in chunks)


def test_chat_tools(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-4o", messages=user("weather?"), tools=TOOLS_OPENAI)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"echo": "weather?"}

    with oai.chat.completions.stream(model="gpt-4o", messages=user("weather?"), tools=TOOLS_OPENAI) as s:
        final = s.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.name == "lookup"
    assert json.loads(calls[0].function.arguments) == {"echo": "weather?"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_chat_async(server: LLMServer) -> None:
    async def main() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0) as client:
            plain = await client.chat.completions.create(model="m", messages=user("async hi"))
            stream = await client.chat.completions.create(
                model="m", messages=user("async stream"), stream=True, stream_options={"include_usage": True}
            )
            text = ""
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
            return plain.choices[0].message.content or "", text

    assert asyncio.run(main()) == ("echo: async hi", "echo: async stream")


# ---------------------------------------------------------------------------
# OpenAI responses
# ---------------------------------------------------------------------------


def test_responses_plain(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-4.1", input="what is up")
    assert response.output_text == "echo: what is up"
    assert response.id.startswith("resp-")
    assert response.status == "completed"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (3 + 5, 4)
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0

    listed = oai.responses.create(
        model="gpt-4.1",
        input=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": [{"type": "input_text", "text": "second one"}]},
        ],
    )
    assert listed.output_text == "echo: second one"


def test_responses_stream(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="gpt-4.1", input="stream me", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert kinds.count("response.output_text.delta") == 3
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == "echo: stream me"

    with oai.responses.stream(model="gpt-4.1", input="helper path") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "echo: helper path"
    assert final.output_text == "echo: helper path"
    assert final.usage is not None
    assert final.usage.total_tokens == (2 + 5) + 3


# ---------------------------------------------------------------------------
# OpenAI embeddings
# ---------------------------------------------------------------------------


def test_embeddings(server: LLMServer, oai: openai.OpenAI) -> None:
    default = oai.embeddings.create(model="text-embedding-3-small", input="hello")
    # The SDK asks for base64 unless told otherwise and decodes it itself.
    assert server.requests[-1].json["encoding_format"] == "base64"
    vector = default.data[0].embedding
    assert len(vector) == 8
    assert all(isinstance(x, float) and -1.0 <= x < 1.0 for x in vector)

    floats = oai.embeddings.create(
        model="text-embedding-3-small", input=["hello", "other"], encoding_format="float"
    )
    assert [d.index for d in floats.data] == [0, 1]
    assert floats.data[0].embedding == vector  # same text -> same vector, both encodings
    assert floats.data[1].embedding != vector
    assert floats.usage.prompt_tokens == 2

    raw = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"model": "e", "input": "hello", "encoding_format": "base64"},
    ).json()
    assert list(struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))) == vector


# ---------------------------------------------------------------------------
# Anthropic messages
# ---------------------------------------------------------------------------


def test_anthropic_plain(server: LLMServer, ant: anthropic.Anthropic) -> None:
    raw = ant.messages.with_raw_response.create(
        model=ANTHROPIC_MODEL, max_tokens=50, messages=user("hey you")
    )
    message = raw.parse()
    assert message.id.startswith("msg-")
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hey you"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 2 + 5
    assert message.usage.output_tokens == 3
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0
    assert raw.headers["set-cookie"].startswith("session=")
    seen = server.requests[-1]
    assert seen.path == "/v1/messages"
    assert "anthropic-version" in seen.headers


def test_anthropic_cache_read_tokens(ant: anthropic.Anthropic) -> None:
    message = ant.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=50,
        system=[{"type": "text", "text": "long system prompt", "cache_control": {"type": "ephemeral"}}],
        messages=user("cached?"),
    )
    assert message.usage.cache_read_input_tokens == 100
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.input_tokens == 1 + 5 + 3


def test_anthropic_stream(ant: anthropic.Anthropic) -> None:
    events = list(
        ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=50, messages=user("a b"), stream=True)
    )
    kinds = [e.type for e in events]  # the SDK swallows `ping`
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == "echo: a b"

    with ant.messages.stream(model=ANTHROPIC_MODEL, max_tokens=50, messages=user("via helper")) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == "echo: via helper"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    assert final.usage.input_tokens == 2 + 5


def test_anthropic_tools(ant: anthropic.Anthropic) -> None:
    message = ant.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=50, messages=user("use it"), tools=TOOLS_ANTHROPIC
    )
    block = message.content[0]
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")
    assert (block.name, block.input) == ("lookup", {"echo": "use it"})
    assert message.stop_reason == "tool_use"

    with ant.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=50, messages=user("use it"), tools=TOOLS_ANTHROPIC
    ) as stream:
        final = stream.get_final_message()
    block = final.content[0]
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("lookup", {"echo": "use it"})
    assert final.stop_reason == "tool_use"


def test_anthropic_async(server: LLMServer) -> None:
    async def main() -> list[str]:
        async with anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as client:
            plain = await client.messages.create(model=ANTHROPIC_MODEL, max_tokens=9, messages=user("x1"))
            raw_stream = await client.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=9, messages=user("x2"), stream=True
            )
            streamed = ""
            async for event in raw_stream:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    streamed += event.delta.text
            async with client.messages.stream(
                model=ANTHROPIC_MODEL, max_tokens=9, messages=user("x3")
            ) as helper:
                final = await helper.get_final_message()
            out = [plain.content[0], final.content[0]]
            texts = [b.text for b in out if b.type == "text"]
            return [texts[0], streamed, texts[1]]

    assert asyncio.run(main()) == ["echo: x1", "echo: x2", "echo: x3"]


# ---------------------------------------------------------------------------
# Gemini (no SDK installed: raw httpx / httpx2)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("client_module", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_gemini(server: LLMServer, client_module: Any) -> None:
    base = f"{server.url}/v1beta/models/gemini-2.5-flash"
    with client_module.Client() as client:
        body = client.post(f"{base}:generateContent", json=GEMINI_BODY).json()
        assert body["candidates"][0]["content"] == {
            "parts": [{"text": "echo: tell me more"}],
            "role": "model",
        }
        assert body["candidates"][0]["finishReason"] == "STOP"
        assert body["modelVersion"] == "gemini-2.5-flash"
        assert body["usageMetadata"] == {
            "promptTokenCount": 8,
            "candidatesTokenCount": 4,
            "totalTokenCount": 12,
        }

        with client.stream("POST", f"{base}:streamGenerateContent?alt=sse", json=GEMINI_BODY) as response:
            assert response.headers["content-type"] == "text/event-stream"
            raw = response.read()
    # Real Gemini ends SSE lines with CRLF and sends neither event names nor [DONE].
    events = [json.loads(block[len(b"data: ") :]) for block in raw.split(b"\r\n\r\n") if block]
    assert len(events) == 4
    text = "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events)
    assert text == "echo: tell me more"
    assert "finishReason" not in events[0]["candidates"][0]
    assert "usageMetadata" not in events[0]
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"]["totalTokenCount"] == 12
    assert len({e["responseId"] for e in events}) == 1


def test_gemini_stream_without_sse_is_a_json_array(server: LLMServer) -> None:
    url = f"{server.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    chunks = httpx.post(url, json=GEMINI_BODY).json()
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == "echo: tell me more"


# ---------------------------------------------------------------------------
# gzip
# ---------------------------------------------------------------------------


def test_gzip_json(server: LLMServer) -> None:
    payload = {"model": "m", "messages": user("squeeze me")}
    with httpx.Client() as client:
        plain = client.post(f"{server.url}/v1/chat/completions", json=payload)
        assert "content-encoding" not in plain.headers
        with client.stream(
            "POST", f"{server.url}/v1/chat/completions", json=payload, headers={"x-test-gzip": "1"}
        ) as response:
            assert response.headers["content-encoding"] == "gzip"
            compressed = b"".join(response.iter_raw())
    assert int(response.headers["content-length"]) == len(compressed)
    body = json.loads(gzip.decompress(compressed))
    assert body["choices"][0]["message"]["content"] == "echo: squeeze me"


def test_gzip_stream(server: LLMServer) -> None:
    payload = {"model": "m", "messages": user("zip it"), "stream": True}
    with (
        httpx.Client() as client,
        client.stream(
            "POST", f"{server.url}/v1/chat/completions", json=payload, headers={"x-test-gzip": "1"}
        ) as response,
    ):
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["transfer-encoding"] == "chunked"
        raw_chunks = list(response.iter_raw())
    assert raw_chunks[0][:2] == b"\x1f\x8b"
    decoder = zlib.decompressobj(wbits=31)
    # Each event was sync-flushed, so every raw chunk decodes on its own to whole events.
    first = decoder.decompress(raw_chunks[0])
    assert first.startswith(b"data: {")
    assert first.endswith(b"\n\n")
    rest = b"".join(decoder.decompress(c) for c in raw_chunks[1:]) + decoder.flush()
    assert decoder.eof
    assert rest.endswith(b"data: [DONE]\n\n")


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "status", "openai_error", "anthropic_error"),
    [
        ("fault-500", 500, openai.InternalServerError, anthropic.InternalServerError),
        ("fault-429", 429, openai.RateLimitError, anthropic.RateLimitError),
        ("fault-401", 401, openai.AuthenticationError, anthropic.AuthenticationError),
        ("fault-400", 400, openai.BadRequestError, anthropic.BadRequestError),
    ],
)
def test_status_faults(
    oai: openai.OpenAI,
    ant: anthropic.Anthropic,
    model: str,
    status: int,
    openai_error: type[openai.APIStatusError],
    anthropic_error: type[anthropic.APIStatusError],
) -> None:
    with pytest.raises(openai_error) as oerr:
        oai.chat.completions.create(model=model, messages=user("x"))
    assert oerr.value.status_code == status
    assert oerr.value.response.headers["set-cookie"].startswith("session=")
    retryable = status in (429, 500)
    assert ("x-should-retry" in oerr.value.response.headers) is not retryable
    if status == 429:
        assert oerr.value.response.headers["retry-after"] == "0"
    with pytest.raises(anthropic_error) as aerr:
        ant.messages.create(model=model, max_tokens=5, messages=user("x"), stream=True)
    assert aerr.value.status_code == status
    assert isinstance(aerr.value.body, dict)
    assert aerr.value.body["type"] == "error"


def test_status_fault_gemini_in_path(server: LLMServer) -> None:
    response = httpx.post(f"{server.url}/v1beta/models/fault-429:generateContent", json=GEMINI_BODY)
    assert response.status_code == 429
    assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_cut_stream(oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    stream = oai.chat.completions.create(model="fault-cut", messages=user("a b c d"), stream=True)
    received: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        received.extend(stream)
    assert len(received) == 2  # the two events sent before the cut

    # Anthropic's Stream does not wrap transport errors: the raw httpx2 error escapes.
    events = ant.messages.create(model="fault-cut", max_tokens=5, messages=user("a b c"), stream=True)
    with pytest.raises(httpx2.RemoteProtocolError):
        list(events)


def test_cut_non_stream(server: LLMServer, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="fault-cut", messages=user("x"))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{server.url}/v1/messages", json={"model": "fault-cut", "messages": user("x")})


def test_slow(server: LLMServer, oai: openai.OpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server's pauses go through server.sleep: see them instead of timing the call.
    pauses: list[float] = []
    monkeypatch.setattr(server, "sleep", pauses.append)
    completion = oai.chat.completions.create(model="gpt-4o+fault-slow", messages=user("zzz"))
    assert pauses == [0.3]
    assert completion.choices[0].message.content == "echo: zzz"
    oai.chat.completions.create(model="gpt-4o", messages=user("zzz"))
    assert pauses == [0.3]  # only the slow fault pauses a JSON answer


def test_chunk_delay_pauses_between_stream_events(monkeypatch: pytest.MonkeyPatch) -> None:
    with LLMServer(chunk_delay=0.25) as srv:
        pauses: list[float] = []
        monkeypatch.setattr(srv, "sleep", pauses.append)
        with openai.OpenAI(base_url=srv.url, api_key="k", max_retries=0) as client:
            chunks = list(client.chat.completions.create(model="m", messages=user("a b c"), stream=True))
        (request,) = srv.requests
        request.finished.wait()  # the last event may reach the client before the server counts it
    assert request.events_sent == len(chunks) + 1  # and [DONE]
    assert pauses == [0.25] * (request.events_sent - 1)  # none before the first event
    assert not request.client_left


def test_hang_after_first_can_be_abandoned(capfd: pytest.CaptureFixture[str]) -> None:
    # A private server: chunk_delay is server-wide. The hold after the first event lasts until the client
    # leaves, at most 50 chunk delays (30 s): a client that went on with one event never waits for it.
    with LLMServer(chunk_delay=0.6) as srv:
        with (
            openai.OpenAI(base_url=srv.url, api_key="k", max_retries=0) as client,
            client.chat.completions.create(
                model="fault-hang-after-first", messages=user("a b"), stream=True
            ) as stream,
        ):
            first = next(iter(stream))
            assert first.choices[0].delta.role == "assistant"
        (request,) = srv.requests
        request.finished.wait()  # bounded by the hold
        assert (request.events_sent, request.client_left) == (1, True)
    assert capfd.readouterr().err == ""


# ---------------------------------------------------------------------------
# Identity, bookkeeping, plumbing
# ---------------------------------------------------------------------------


def test_identical_requests_differ(server: LLMServer, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    first = oai.chat.completions.with_raw_response.create(model="m", messages=user("same"))
    second = oai.chat.completions.with_raw_response.create(model="m", messages=user("same"))
    assert first.parse().choices[0].message.content == second.parse().choices[0].message.content
    assert first.parse().id != second.parse().id
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert first.headers["set-cookie"] != second.headers["set-cookie"]
    ids = {
        ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=5, messages=user("same")).id for _ in range(2)
    }
    assert len(ids) == 2
    gem = [
        httpx.post(f"{server.url}/v1beta/models/g:generateContent", json=GEMINI_BODY).json()["responseId"]
        for _ in range(2)
    ]
    assert gem[0] != gem[1]


def test_count_reset_and_404() -> None:
    with LLMServer() as srv, httpx.Client(base_url=srv.url) as client:
        client.post("/v1/chat/completions", json={"model": "m", "messages": user("x")})
        client.post("/v1beta/models/g:streamGenerateContent?alt=sse", json=GEMINI_BODY)
        missing = client.post("/v1/nothing", json={})
        assert missing.status_code == 404
        assert "error" in missing.json()
        assert client.get("/v1/chat/completions").status_code == 404
        assert srv.count() == 4
        assert srv.count("/chat/completions") == 2
        assert srv.count(":streamGenerateContent") == 1
        assert srv.count("?alt=sse") == 1
        srv.reset()
        assert srv.count() == 0
        assert srv.requests == []


def test_keep_alive_and_chunked_upload(server: LLMServer) -> None:
    payload = json.dumps({"model": "m", "messages": user("chunked body")}).encode()

    def pieces() -> Iterator[bytes]:
        yield payload[:10]
        yield payload[10:]

    with httpx.Client(base_url=server.url) as client:
        streamed = client.post("/v1/chat/completions", content=pieces())
        assert server.requests[-1].headers.get("transfer-encoding") == "chunked"
        assert streamed.json()["choices"][0]["message"]["content"] == "echo: chunked body"
        # The connection must still be usable after the chunked upload.
        again = client.post("/v1/chat/completions", json={"model": "m", "messages": user("again")})
        assert again.json()["choices"][0]["message"]["content"] == "echo: again"


def test_stop_frees_port_and_drops_keepalive() -> None:
    srv = LLMServer().start()
    port = srv.port
    with httpx.Client(base_url=srv.url) as client:
        assert client.post("/v1/embeddings", json={"model": "e", "input": "x"}).status_code == 200
        srv.stop()
        with pytest.raises(httpx.TransportError):
            client.post("/v1/embeddings", json={"model": "e", "input": "x"})
    with LLMServer(port=port) as again:
        assert again.port == port
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def test_command_line() -> None:
    script = Path(__file__).with_name("llm_server.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--chunk-delay", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "0"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        reply = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": user("cli")})
        assert reply.json()["choices"][0]["message"]["content"] == "echo: cli"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
