"""Scrubbing, tested directly: which credentials are learned, which environment variables and key shapes
are secrets, streams redacted on the text a client joins, and test ids with secrets hidden."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.keys import Keyer, RawRequest
from pytest_promptcache.scrub import MAX_LEARNED, Scrubber, secret_env_values
from pytest_promptcache.settings import AWS_ACCESS_KEY_ID_PATTERN, Settings, build_settings

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


def test_empty_and_blank_credentials_hide_nothing() -> None:
    scrub = scrubber({"OPENAI_API_KEY": "", "AWS_SESSION_TOKEN": "   "})
    assert not scrub.learn(
        (("authorization", "Bearer"), ("api-key", ""), ("cookie", "a=; b=")), (("key", ""), ("sig", " "))
    )
    text = "plain words stay as they are"
    assert scrub.text(text) == text
    assert scrub.find(text) == []


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
