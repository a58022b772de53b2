"""Scrubbing, tested directly: which credentials are learned, which environment variables and key shapes
are secrets, streams redacted on the text a client joins, and test ids with secrets hidden."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.context import TestContext
from pytest_promptcache.keys import Keyer, RawRequest
from pytest_promptcache.live import scrubbed
from pytest_promptcache.models import RecordedResponse, SSEEvent
from pytest_promptcache.scrub import MAX_LEARNED, Scrubber, secret_env_values
from pytest_promptcache.settings import AWS_ACCESS_KEY_ID_PATTERN, Mode, Settings, build_settings
from pytest_promptcache.stream_secrets import redact_stream, stream_findings

SECRET = "Zq7-sent-credential-0a1b2c3d"  # no known shape, in no variable: only learning finds it
ENV_KEY = "sk-proj-ENVKEYabcdefghijklmnopqrstuvwxyz0123456789"
SHAPED = "sk-ant-admin01-Q7w8E9r0T1y2U3i4O5p6"  # a key shape no variable holds
SIGNATURE = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
SIGV4 = (
    "AWS4-HMAC-SHA256 Credential=EXAMPLEKEYID0123/20260101/us-east-1/bedrock/aws4_request, "
    f"SignedHeaders=host;x-amz-date, Signature={SIGNATURE}"
)


def settings() -> Settings:
    return build_settings(rootdir=Path("/tmp"), cli_mode=None, cli_dir=None, env={}, ini={})


def scrubber(env: dict[str, str] | None = None) -> Scrubber:
    s = settings()
    return Scrubber(
        secret_headers=s.secret_headers,
        secret_params=s.secret_params,
        patterns=s.secret_patterns,
        env=env or {},
    )


# -- credentials the client sent ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ((), (("key", SECRET),)),
        ((), (("Subscription-Key", SECRET),)),
        ((), (("x-amz-security-token", SECRET),)),
        ((("ocp-apim-subscription-key", SECRET),), ()),
        ((("x-amz-security-token", SECRET),), ()),
        ((("x-goog-api-key", SECRET),), ()),
        ((("authorization", f"Bearer {SECRET}"),), ()),
        ((("authorization", "Basic " + base64.b64encode(f"me:{SECRET}".encode()).decode()),), ()),
        ((("cookie", f"theme=dark; session={SECRET}"),), ()),
    ],
)
def test_every_credential_the_client_sent_is_learned(
    headers: tuple[tuple[str, str], ...], query: tuple[tuple[str, str], ...]
) -> None:
    scrub = scrubber()
    assert scrub.learn(headers, query)
    assert scrub.text(f"you said {SECRET}!") == "you said <redacted>!"


def test_an_aws_sigv4_authorization_yields_its_access_key_id_and_signature() -> None:
    scrub = scrubber()
    scrub.learn((("authorization", SIGV4),))
    text = f"id EXAMPLEKEYID0123 signed {SIGNATURE}."
    assert scrub.text(text) == "id <redacted> signed <redacted>."
    presigned = (("X-Amz-Credential", "EXAMPLEKEYID4567/20260101/us-east-1/s3/aws4_request"),)
    scrub.learn((), presigned)
    assert scrub.text("EXAMPLEKEYID4567") == "<redacted>"


def test_credential_fields_of_a_request_body_are_learned_for_the_answer() -> None:
    scrub = scrubber()
    keyer = Keyer(settings(), scrub)
    keyer.key_for(raw({"model": "m", "api_key": SECRET, "messages": [{"content": f"I use {SECRET}"}]}))
    assert scrub.text(f"echo: I use {SECRET}") == "echo: I use <redacted>"


def raw(
    body: Any, query: tuple[tuple[str, str], ...] = (), headers: tuple[tuple[str, str], ...] = ()
) -> RawRequest:
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    return RawRequest("POST", "https", "llm.example", None, path, query, headers, json.dumps(body).encode())


def test_the_key_does_not_depend_on_the_value_of_a_credential_in_the_query_and_the_prompt() -> None:
    def key_and_body(credential: str) -> tuple[str, str]:
        scrub = scrubber()
        scrub.learn((), (("key", credential),))
        body = {"contents": [{"parts": [{"text": f"my key is {credential}"}]}]}
        key, canonical = Keyer(settings(), scrub).key_for(raw(body, (("key", credential),)))
        return key, json.dumps(canonical.model_dump(mode="json"))

    key, text = key_and_body(SECRET)
    assert SECRET not in text
    assert key == key_and_body("Wx4-other-credential-9f8e7d6c")[0]


def test_a_secret_in_the_path_is_hidden_and_takes_no_part_in_the_key() -> None:
    scrub = scrubber()
    scrub.learn((("api-key", SECRET),))
    request = RawRequest("POST", "https", "h", None, f"/keys/{SECRET}/v1/chat/completions", (), (), b"{}")
    assert Keyer(settings(), scrub).canonical(request).path == "/keys/<redacted>/v1/chat/completions"


def test_a_credential_learned_after_a_request_was_keyed_is_still_hidden_from_it() -> None:
    scrub = scrubber()
    keyer = Keyer(settings(), scrub)
    request = raw({"contents": [{"parts": [{"text": f"a later key {SECRET}"}]}]})
    assert SECRET in json.dumps(keyer.key_for(request)[1].body)
    scrub.learn((("x-api-key", SECRET),))
    assert SECRET not in json.dumps(keyer.key_for(request)[1].body)


def test_learned_credentials_are_bounded_newest_kept() -> None:
    scrub = scrubber()
    values = [f"credential-{i:06d}" for i in range(MAX_LEARNED + 10)]
    for value in values:
        scrub.learn((("x-api-key", value),))
    assert scrub.text(values[-1]) == "<redacted>"
    assert scrub.text(values[0]) == values[0]
    # Forgotten, but learned again as soon as a call sends it.
    assert scrub.learn((("x-api-key", values[0]),))
    assert scrub.text(values[0]) == "<redacted>"
    assert not scrub.learn((("x-api-key", values[0]),))


def test_empty_and_blank_credentials_hide_nothing() -> None:
    scrub = scrubber({"OPENAI_API_KEY": "", "AWS_SESSION_TOKEN": "   "})
    assert not scrub.learn(
        (("authorization", "Bearer"), ("api-key", ""), ("cookie", "a=; b=")), (("key", ""), ("sig", " "))
    )
    text = "plain words stay as they are"
    assert scrub.text(text) == text
    assert scrub.find(text) == []
    events = [{"choices": [{"index": 0, "delta": {"content": c}}]} for c in ("plain ", "words")]
    assert redact_stream(events, scrub) == events


# -- defaults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AZURE_OPENAI_API_KEY",
        "AZURE_CLIENT_SECRET",
        "AZURE_STORAGE_CONNECTION_STRING",
        "DJANGO_SECRET_KEY",
        "POSTGRES_PASSWORD",
        "MISTRAL_APIKEY",
        "GITHUB_TOKEN",
        "SSH_PRIVATE_KEY",
    ],
)
def test_secret_environment_variables(name: str) -> None:
    assert secret_env_values({name: "value-0123456789"}) == {"value-0123456789": f"<redacted:{name}>"}


@pytest.mark.parametrize("name", ["PATH", "HOME", "PRIMARY_KEY", "SORT_KEY", "KEYBOARD_LAYOUT", "TOKENIZERS"])
def test_ordinary_environment_variables_are_not_secrets(name: str) -> None:
    assert secret_env_values({name: "value-0123456789"}) == {}


def test_default_secret_headers_params_and_patterns() -> None:
    s = settings()
    assert {"ocp-apim-subscription-key", "x-amz-security-token", "authorization"} <= set(s.secret_headers)
    assert {"key", "subscription-key", "x-amz-signature", "x-amz-credential"} <= set(s.secret_params)
    assert AWS_ACCESS_KEY_ID_PATTERN in s.secret_patterns


@pytest.mark.parametrize("key_id", ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A", "AKIAABCDEFGHIJKLMNOP"])
def test_aws_access_key_ids_are_replaced_anywhere(key_id: str) -> None:
    assert scrubber().text(f"id={key_id}, keep it") == "id=<redacted>, keep it"


@pytest.mark.parametrize(
    "prose",
    [
        "ASIAN MARKETS OPENED HIGHER IN ASIA TODAY",
        "ASIA-PACIFIC-REGIONAL-OFFICE",
        "AKIAK is a city in Alaska",
        "ASIATICALLYSPEAKINGTOO",  # 22 capitals: too long to be an id
        "THE_ASIAPACIFICOFFICE1_TEAM",
        "akiaiosfodnn7example",
    ],
)
def test_aws_key_id_shape_does_not_match_ordinary_prose(prose: str) -> None:
    assert scrubber().text(prose) == prose


# -- streams -----------------------------------------------------------------------------------------


def pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


PROMPT = f"keys {ENV_KEY}, {SECRET} and {SHAPED} end"
EXPECTED = "keys <redacted:OPENAI_API_KEY>, <redacted> and <redacted> end"


def chat(c: str) -> Any:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": c}}]}


def chat_tool(c: str) -> Any:
    return {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": c}}]}}]}


def responses(c: str) -> Any:
    return {"type": "response.output_text.delta", "item_id": "msg_1", "content_index": 0, "delta": c}


def anthropic(c: str) -> Any:
    return {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": c}}


def anthropic_json(c: str) -> Any:
    return {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": c},
    }


def gemini(c: str) -> Any:
    return {"candidates": [{"content": {"parts": [{"text": c}], "role": "model"}, "index": 0}]}


def completion(c: str) -> Any:
    return {"object": "text_completion", "choices": [{"index": 0, "text": c}]}


SHAPES = [chat, chat_tool, responses, anthropic, anthropic_json, gemini, completion]


def learned() -> Scrubber:
    scrub = scrubber({"OPENAI_API_KEY": ENV_KEY})
    scrub.learn((("api-key", SECRET),))
    return scrub


@pytest.mark.parametrize("shape", SHAPES)
def test_a_secret_cut_over_events_is_redacted_in_the_joined_text(shape: Any) -> None:
    frames = pieces(PROMPT)
    events = [
        {"type": "ping"},
        *(shape(c) for c in frames),
        {"type": "done", "text": "whole texts are not cut"},
    ]
    before = json.dumps(events)
    out = redact_stream(events, learned())
    assert json.dumps(events) == before  # the recorder's own data is not changed under it
    assert len(out) == len(events)
    assert out[0] == events[0]
    assert out[-1] == events[-1]
    joined = "".join(_fragment(e) for e in out[1:-1])
    assert joined == EXPECTED


# What the shapes above hold besides their one fragment.
LABELS = {"chat.completion.chunk", "text_completion", "response.output_text.delta", "msg_1", "model"}
LABELS |= {"content_block_delta", "text_delta", "input_json_delta"}


def _fragment(event: Any) -> str:
    (fragment,) = [s for s in _strings(event) if s not in LABELS]
    return fragment


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_only_overlapping_fragments_change_and_separate_texts_stay_apart() -> None:
    frames = ["safe ", SECRET[:10], SECRET[10:], " and more"]
    other = "sk-pr"  # alone, the start of nothing: another choice's text is another text
    events = [chat(c) for c in frames] + [
        {"choices": [{"index": 1, "delta": {"content": other}}]},
    ]
    out = redact_stream(events, learned())
    assert [e["choices"][0]["delta"]["content"] for e in out] == [
        "safe ",
        "<redacted>",
        "",
        " and more",
        other,
    ]


def test_two_secrets_in_one_fragment_and_one_spanning_three() -> None:
    text = f"{SECRET} {SECRET}|{ENV_KEY}"
    frames = [text[: len(SECRET) * 2 + 2], text[len(SECRET) * 2 + 2 : -5], text[-5:-2], text[-2:]]
    out = redact_stream([chat(c) for c in frames], learned())
    contents = [e["choices"][0]["delta"]["content"] for e in out]
    assert contents == ["<redacted> <redacted>|", "<redacted:OPENAI_API_KEY>", "", ""]


def test_a_recorded_stream_is_saved_with_the_secret_redacted_and_no_event_lost() -> None:
    events = [SSEEvent(data=gemini(c)) for c in pieces(PROMPT, 4)] + [SSEEvent(text="[DONE]")]
    response = RecordedResponse(status=200, headers={"content-type": "text/event-stream"}, events=events)
    saved = scrubbed(response, learned())
    assert saved.events is not None
    assert len(saved.events) == len(events)
    assert "".join(_fragment(e.data) for e in saved.events[:-1]) == EXPECTED
    array = RecordedResponse(status=200, body=[gemini(c) for c in pieces(PROMPT, 4)])
    assert isinstance(scrubbed(array, learned()).body, list)
    assert "".join(_fragment(e) for e in scrubbed(array, learned()).body) == EXPECTED  # type: ignore[union-attr]


def test_findings_name_the_secret_its_text_and_the_events_holding_it() -> None:
    frames = ["ok ", ENV_KEY[:20], ENV_KEY[20:], " done"]
    events = [SSEEvent(event="content_block_delta", data=anthropic(c)) for c in frames]
    response = RecordedResponse(status=200, events=events)
    (finding,) = stream_findings(response, scrubber({"OPENAI_API_KEY": ENV_KEY}))
    assert finding.text == "content_block[0].delta.text"
    assert finding.source == "$OPENAI_API_KEY"
    assert finding.secret == ENV_KEY
    assert finding.events == (1, 2)
    clean = scrubbed(response, scrubber({"OPENAI_API_KEY": ENV_KEY}))
    assert stream_findings(clean, scrubber({"OPENAI_API_KEY": ENV_KEY})) == []
    (shaped,) = stream_findings(
        RecordedResponse(status=200, body=[gemini(c) for c in pieces(SHAPED)]), scrubber()
    )
    assert shaped.source == "an Anthropic key (sk-ant-...)"
    assert shaped.events == tuple(range(len(pieces(SHAPED))))
    assert stream_findings(RecordedResponse(status=200, body={"text": ENV_KEY}), scrubber()) == []


# -- test ids ----------------------------------------------------------------------------------------


def test_ids_with_secrets_are_hidden_and_the_command_names_a_runnable_clean_target() -> None:
    scrub = scrubber({"OPENAI_API_KEY": ENV_KEY})
    ctx = TestContext(
        nodeid=f"t.py::test_key[{ENV_KEY}]", mode=Mode.REPLAY, target=f"t.py::test_key[{ENV_KEY}]"
    )
    ctx.hide_secrets(scrub.text, scrub.generation)
    assert ctx.nodeid == "t.py::test_key[<redacted:OPENAI_API_KEY>]"
    assert ctx.target == "t.py::test_key"

    sent = TestContext(
        nodeid=f"t.py::test_sent[{SECRET}]", mode=Mode.REPLAY, target=f"t.py::test_sent[{SECRET}]"
    )
    sent.hide_secrets(scrub.text, scrub.generation)
    assert sent.nodeid == f"t.py::test_sent[{SECRET}]"  # not known to be a secret yet
    scrub.learn((("api-key", SECRET),))
    sent.hide_secrets(scrub.text, scrub.generation)
    assert sent.nodeid == "t.py::test_sent[<redacted>]"

    named = TestContext(nodeid=f"{SECRET}.py::test", mode=Mode.REPLAY, target=f"{SECRET}.py::test")
    named.hide_secrets(scrub.text, scrub.generation)
    assert named.target is None  # no part of it can be named: the command runs the suite
