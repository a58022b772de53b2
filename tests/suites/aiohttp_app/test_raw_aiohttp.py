"""Raw aiohttp: a JSON answer read every way, and SSE streams read every way a client reads one."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import aiohttp
from suite_support import BASE, calling, prompt

CHAT = BASE + "/v1/chat/completions"


def chat(text: str, *, stream: bool = False, model: str = "gpt-4.1-mini") -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt(text)}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


async def test_json_read_json_and_text(http: aiohttp.ClientSession, seen: list[Any]) -> None:
    with calling():
        async with http.post(CHAT, json=chat("json, three ways")) as r:
            data = await r.json()
            text = await r.text()
            raw = await r.read()
        assert r.status == 200
        assert data["choices"][0]["message"]["content"] == "echo: json, three ways"
        assert raw.decode() == text
        seen.extend([r.status, r.content_type, data, r.headers["x-request-id"]])


async def test_stream_iter_any(http: aiohttp.ClientSession, seen: list[Any]) -> None:
    with calling():
        async with http.post(CHAT, json=chat("stream, any", stream=True)) as r:
            chunks = [chunk.decode() async for chunk in r.content.iter_any()]
        assert chunks[-1] == "data: [DONE]\n\n"
        seen.extend([r.status, r.content_type, chunks])


async def test_stream_lines(http: aiohttp.ClientSession, seen: list[Any]) -> None:
    with calling():
        async with http.post(CHAT, json=chat("stream, lines", stream=True)) as r:
            lines = [line.decode() async for line in r.content]
        assert "data: [DONE]\n" in lines
        seen.extend(lines)


async def test_stream_readline_until_eof(http: aiohttp.ClientSession, seen: list[Any]) -> None:
    with calling():
        async with http.post(CHAT, json=chat("stream, readline", stream=True)) as r:
            while not r.content.at_eof():
                # Whether the end is known before one more (empty) read depends on the network.
                if line := await r.content.readline():
                    seen.append(line.decode())
        assert "data: [DONE]\n" in seen


async def test_stream_iter_chunked(http: aiohttp.ClientSession, seen: list[Any]) -> None:
    with calling():
        async with http.post(CHAT, json=chat("stream, chunked", stream=True)) as r:
            pieces = [piece.decode() async for piece in r.content.iter_chunked(64)]
        assert max(len(p) for p in pieces) == 64
        seen.extend(pieces)


async def test_stream_iter_chunks(http: aiohttp.ClientSession, seen: list[Any]) -> None:
    with calling():
        async with http.post(CHAT, json=chat("stream, http chunks", stream=True)) as r:
            pieces = [(data.decode(), end) async for data, end in r.content.iter_chunks()]
        # Live, how a chunk's reads fall depends on timing: a slow reader (a loaded machine) gets one
        # HTTP chunk as its data and then an empty read that ends it. So what is compared is the chunks,
        # each joined from its reads; an empty one is no chunk.
        chunks = [""]
        for data, end in pieces:
            chunks[-1] += data
            if end and chunks[-1]:
                chunks.append("")
        assert chunks.pop() == "", "the stream ended inside an HTTP chunk"
        assert len(chunks) > 2, chunks  # the server's events, one HTTP chunk each
        seen.extend(chunks)


async def test_stream_read_whole(http: aiohttp.ClientSession, seen: list[Any]) -> None:
    with calling():
        async with http.post(CHAT, json=chat("stream, read whole", stream=True)) as r:
            text = await r.text()
        assert text.endswith("data: [DONE]\n\n")
        seen.append(text)


async def test_gzip_stream_decoded_by_aiohttp(http: aiohttp.ClientSession, seen: list[Any]) -> None:
    with calling():
        body = chat("stream, gzipped", stream=True)
        async with http.post(CHAT, json=body, headers={"x-test-gzip": "1"}) as r:
            lines = [line.decode() async for line in r.content]
        assert "data: [DONE]\n" in lines
        seen.extend(lines)


async def test_gzip_json_without_auto_decompress(http: aiohttp.ClientSession, seen: list[Any]) -> None:
    # As litellm reads: aiohttp leaves the body as sent, the client undoes what content-encoding says.
    with calling():
        body = chat("json, gzipped, raw bytes")
        async with http.post(CHAT, json=body, headers={"x-test-gzip": "1"}, auto_decompress=False) as r:
            raw = await r.read()
            encoding = r.headers.get("content-encoding")
        text = zlib.decompress(raw, wbits=31).decode() if encoding == "gzip" else raw.decode()
        assert "json, gzipped, raw bytes" in text
        seen.append(json.loads(text))


async def test_identical_requests_gathered(http: aiohttp.ClientSession, seen: list[Any]) -> None:
    async def one() -> str:
        async with http.post(CHAT, json=chat("four at once", model="gpt-4.1-mini+fault-slow")) as r:
            return str((await r.json())["id"])

    with calling():
        # All four end before the test does, whichever fails.
        ids = await asyncio.gather(*[one() for _ in range(4)], return_exceptions=True)
        for outcome in ids:
            if isinstance(outcome, BaseException):
                raise outcome
        assert len(set(ids)) == 1
        seen.extend(ids)
