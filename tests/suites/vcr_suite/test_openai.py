"""OpenAI calls of an LLM app, recorded with pytest-recording."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx2
import openai
import pytest
from vcr_sample import BASE

GPT = "gpt-4.1-mini"
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def ask(client: openai.OpenAI, text: str, **kw: Any) -> Any:
    return client.chat.completions.create(model=GPT, messages=[{"role": "user", "content": text}], **kw)


@pytest.mark.vcr
def test_chat(oai: openai.OpenAI) -> None:
    assert ask(oai, "Say hello").choices[0].message.content == "echo: Say hello"


@pytest.mark.vcr
def test_chat_with_system_prompt(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(
        model=GPT,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Summarise the refund policy"},
        ],
        temperature=0,
    )
    assert reply.choices[0].message.content == "echo: Summarise the refund policy"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0


@pytest.mark.vcr
def test_chat_stream(oai: openai.OpenAI) -> None:
    stream = ask(oai, "Stream a haiku", stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: Stream a haiku"


@pytest.mark.vcr
def test_chat_stream_with_usage(oai: openai.OpenAI) -> None:
    chunks = list(ask(oai, "Stream with usage", stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


@pytest.mark.vcr
def test_tool_call(oai: openai.OpenAI) -> None:
    reply = ask(oai, "Weather in Oslo?", tools=[WEATHER_TOOL])
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"


@pytest.mark.vcr
def test_json_response_format(oai: openai.OpenAI) -> None:
    reply = ask(oai, "Reply in JSON", response_format={"type": "json_object"})
    assert reply.choices[0].message.content == "echo: Reply in JSON"


@pytest.mark.vcr
def test_embeddings(oai: openai.OpenAI) -> None:
    result = oai.embeddings.create(model="text-embedding-3-small", input="refund policy")
    assert len(result.data[0].embedding) > 0


@pytest.mark.vcr
def test_responses_api(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model=GPT, input="Name a colour")
    assert response.output_text == "echo: Name a colour"


@pytest.mark.vcr
def test_async_chat(aoai: openai.AsyncOpenAI) -> None:
    async def go() -> Any:
        return await aoai.chat.completions.create(
            model=GPT, messages=[{"role": "user", "content": "Async hi"}]
        )

    assert asyncio.run(go()).choices[0].message.content == "echo: Async hi"


@pytest.mark.vcr(decode_compressed_response=False)
def test_gzip_body(oai: openai.OpenAI) -> None:
    # Recorded as the server sent it: gzip bytes in the cassette.
    reply = ask(oai, "Compressed please", extra_headers={"x-test-gzip": "1"})
    assert reply.choices[0].message.content == "echo: Compressed please"


@pytest.mark.vcr
def test_two_questions(oai: openai.OpenAI) -> None:
    first = ask(oai, "First question")
    second = ask(oai, "Second question")
    assert [first.choices[0].message.content, second.choices[0].message.content] == [
        "echo: First question",
        "echo: Second question",
    ]


@pytest.mark.vcr
def test_polling_gets_three_answers(oai: openai.OpenAI) -> None:
    # The same request three times: each answer is a new one (ids count up on the server).
    ids = [ask(oai, "Is the job done?").id for _ in range(3)]
    counters = [int(i.split("-")[1]) for i in ids]
    assert len(set(ids)) == 3
    assert counters == sorted(counters)


@pytest.mark.vcr
def test_reads_what_vcr_recorded(oai: openai.OpenAI, vcr: Any) -> None:
    ask(oai, "What did vcr see?")
    ask(oai, "And then?")
    assert len(vcr) == 2
    assert vcr.play_count == 2
    assert vcr.all_played
    assert [json.loads(r.body)["messages"][0]["content"] for r in vcr.requests] == [
        "What did vcr see?",
        "And then?",
    ]
    assert all("authorization" not in r.headers for r in vcr.requests)
    assert [r["status"]["code"] for r in vcr.responses] == [200, 200]


@pytest.mark.vcr("test_chat.yaml")
def test_answered_by_another_cassette(oai: openai.OpenAI) -> None:
    # No cassette of its own: the marker names test_chat's, which holds this request.
    assert ask(oai, "Say hello").choices[0].message.content == "echo: Say hello"


@pytest.mark.vcr(match_on=["method", "scheme", "host", "port", "path"])
def test_random_trace_id_in_the_query() -> None:
    # A fresh id on every run: vcr matches without the query; promptcache normalises the id (hex-id).
    body = {"model": GPT, "messages": [{"role": "user", "content": "Traced"}]}
    url = f"{BASE}/v1/chat/completions?trace=trace_{uuid.uuid4().hex}"
    reply = httpx2.post(url, json=body, headers={"authorization": "Bearer sk-test"})
    assert reply.json()["choices"][0]["message"]["content"] == "echo: Traced"
