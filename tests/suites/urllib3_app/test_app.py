"""An app whose LLM calls go through urllib3, as it would make them: requests (JSON, an SSE stream read
with iter_lines and iter_content), raw urllib3 (preloaded, and streamed with read_chunked, stream(n) and
read(n)), and boto3's bedrock-runtime client (converse, converse_stream, invoke_model,
invoke_model_with_response_stream). PROMPT_PREFIX changes every prompt (a miss for each test)."""

from __future__ import annotations

import json
import os
from typing import Any

import requests
import urllib3
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

BASE = os.environ["LLM_URL"]
PREFIX = os.environ.get("PROMPT_PREFIX", "Hi")
GPT = "gpt-4.1-mini"
CLAUDE = "claude-sonnet-4-6"
# The model ids as boto3 sends them (URL-encoded in the path: anthropic.claude-...-v1%3A0).
CLAUDE_ON_BEDROCK = "anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-lite-v1:0"
AUTH = {"authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"}


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": GPT, "messages": [{"role": "user", "content": f"{PREFIX}: {text}"}], **extra}


def claude(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": CLAUDE,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": f"{PREFIX}: {text}"}],
        **extra,
    }


def converse_messages(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": f"{PREFIX}: {text}"}]}]


def without_wire_headers(response: dict[str, Any]) -> dict[str, Any]:
    # A replay serves the recorded headers minus the wire's (content-length, set-cookie): compare the rest.
    meta = {
        k: v for k, v in response["ResponseMetadata"].items() if k not in ("HTTPHeaders", "RetryAttempts")
    }
    return {**response, "ResponseMetadata": meta}


# -- requests ------------------------------------------------------------------------------------------


def test_requests_json(seen: list[Any]) -> None:
    r = requests.post(f"{BASE}/v1/chat/completions", json=chat("requests json"), headers=AUTH, timeout=10)
    r.raise_for_status()
    assert r.json()["choices"][0]["message"]["content"] == f"echo: {PREFIX}: requests json"
    seen += [r.status_code, r.json()]


def test_requests_sse_iter_lines(seen: list[Any]) -> None:
    body = chat("requests stream", stream=True, stream_options={"include_usage": True})
    with requests.post(f"{BASE}/v1/chat/completions", json=body, headers=AUTH, stream=True, timeout=10) as r:
        r.raise_for_status()
        lines = [line.decode() for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    seen += lines


def test_requests_iter_content_keeps_the_chunks(seen: list[Any]) -> None:
    with requests.post(
        f"{BASE}/v1/messages", json=claude("requests chunks", stream=True), stream=True, timeout=10
    ) as r:
        r.raise_for_status()
        # chunk_size=None: each piece as it arrives, one HTTP chunk (one SSE event) at a time.
        seen += [chunk.decode() for chunk in r.iter_content(chunk_size=None)]
    assert len(seen) > 3
    assert seen[-1].startswith("event: message_stop")


# -- raw urllib3 ---------------------------------------------------------------------------------------


def test_urllib3_preloaded(seen: list[Any]) -> None:
    r = urllib3.request("POST", f"{BASE}/v1/messages", json=claude("urllib3 preloaded"), timeout=10)
    assert r.status == 200
    # Preloaded: the body is in r.data, and read() has nothing left, as with a live response. (A JSON
    # body is stored parsed, so it replays as the same JSON, not necessarily the same whitespace.)
    seen += [r.json(), json.loads(r.data), r.read().decode()]


def test_urllib3_read_chunked(seen: list[Any]) -> None:
    http = urllib3.PoolManager()
    r = http.request(
        "POST", f"{BASE}/v1/messages", json=claude("urllib3 chunks", stream=True), preload_content=False
    )
    seen += [chunk.decode() for chunk in r.read_chunked()]
    r.release_conn()
    assert seen[-1].startswith("event: message_stop")


def test_urllib3_stream_and_read_n(seen: list[Any]) -> None:
    http = urllib3.PoolManager()
    body = chat("urllib3 stream(n)", stream=True)
    r = http.request("POST", f"{BASE}/v1/chat/completions", json=body, preload_content=False)
    seen.append([chunk.decode() for chunk in r.stream(16)])
    body = chat("urllib3 read(n)", stream=True)
    r = http.request("POST", f"{BASE}/v1/chat/completions", json=body, preload_content=False)
    pieces: list[str] = []
    while piece := r.read(10):
        pieces.append(piece.decode())
    seen.append(pieces)
    assert all(len(p) == 10 for p in pieces[:-1])


def test_urllib3_event_stream_bytes(seen: list[Any]) -> None:
    """The Bedrock stream as bytes: the chunks a replay sends must be the ones the server sent."""
    http = urllib3.PoolManager()
    body = {"messages": converse_messages("raw event stream")}
    url = f"{BASE}/model/{CLAUDE_ON_BEDROCK.replace(':', '%3A')}/converse-stream"
    r = http.request("POST", url, json=body, preload_content=False)
    assert r.headers["content-type"] == "application/vnd.amazon.eventstream"
    seen += [chunk.hex() for chunk in r.read_chunked()]


# -- boto3 bedrock-runtime -----------------------------------------------------------------------------


def test_bedrock_converse(bedrock: Any, seen: list[Any]) -> None:
    system = [{"text": "You are terse."}, {"cachePoint": {"type": "default"}}]
    r = bedrock.converse(modelId=CLAUDE_ON_BEDROCK, messages=converse_messages("converse"), system=system)
    assert r["output"]["message"]["content"][0]["text"] == f"echo: {PREFIX}: converse"
    assert r["usage"]["cacheReadInputTokens"] > 0
    seen.append(without_wire_headers(r))


def test_bedrock_converse_nova(bedrock: Any, seen: list[Any]) -> None:
    r = bedrock.converse(modelId=NOVA, messages=converse_messages("nova"))
    seen.append(without_wire_headers(r))


def test_bedrock_converse_stream(bedrock: Any, seen: list[Any]) -> None:
    r = bedrock.converse_stream(modelId=CLAUDE_ON_BEDROCK, messages=converse_messages("converse stream"))
    events = list(r["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == f"echo: {PREFIX}: converse stream"
    assert events[-1]["metadata"]["usage"]["outputTokens"] > 0
    seen += events


def anthropic_body(text: str) -> str:
    return json.dumps(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 64,
            "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": f"{PREFIX}: {text}"}],
        }
    )


def test_bedrock_invoke_model(bedrock: Any, seen: list[Any]) -> None:
    r = bedrock.invoke_model(modelId=CLAUDE_ON_BEDROCK, body=anthropic_body("invoke"))
    message = json.loads(r["body"].read())
    assert message["content"][0]["text"] == f"echo: {PREFIX}: invoke"
    seen += [message, r["contentType"]]


def test_bedrock_invoke_model_with_response_stream(bedrock: Any, seen: list[Any]) -> None:
    r = bedrock.invoke_model_with_response_stream(
        modelId=CLAUDE_ON_BEDROCK, body=anthropic_body("invoke stream")
    )
    chunks = [json.loads(event["chunk"]["bytes"]) for event in r["body"]]
    assert chunks[-1]["type"] == "message_stop"
    seen += chunks


def test_a_caught_bedrock_error_still_fails_a_miss(bedrock: Any, seen: list[Any]) -> None:
    """Code under test that swallows the client's error: a replay miss must fail the test anyway."""
    try:
        r = bedrock.converse(modelId=NOVA, messages=converse_messages("caught"))
    except ClientError as exc:
        seen.append(exc.response["Error"]["Code"])
    else:
        seen.append(r["output"])
