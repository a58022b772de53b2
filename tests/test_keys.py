"""The key rules: what changes a key and what must not. Pure functions, tested directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.keys import Keyer, RawRequest
from pytest_promptcache.scrub import Scrubber
from pytest_promptcache.settings import Settings, build_settings

BODY: dict[str, Any] = {
    "model": "gpt-4.1-mini",
    "messages": [{"role": "user", "content": "Hi"}],
    "temperature": 0.2,
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
}
HEADERS = (
    ("authorization", "Bearer sk-proj-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    ("content-type", "application/json"),
    ("anthropic-version", "2023-06-01"),
)


def settings(**ini: Any) -> Settings:
    return build_settings(rootdir=Path("/tmp"), cli_mode=None, cli_dir=None, env={}, ini=ini)


def scrubber(s: Settings, env: dict[str, str] | None = None, *, patterns: bool = True) -> Scrubber:
    return Scrubber(
        secret_headers=s.secret_headers,
        secret_params=s.secret_params,
        patterns=s.secret_patterns if patterns else [],
        env=env or {},
    )


def keyer(**ini: Any) -> Keyer:
    s = settings(**ini)
    return Keyer(s, scrubber(s))


def raw(
    body: Any = BODY,
    headers: tuple[tuple[str, str], ...] = HEADERS,
    query: tuple[tuple[str, str], ...] = (),
    host: str = "api.openai.com",
    port: int | None = None,
    path: str = "/v1/chat/completions",
) -> RawRequest:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawRequest("POST", "https", host, port, path, query, headers, data)


def key(request: RawRequest, k: Keyer | None = None) -> str:
    return (k or keyer()).key_for(request)[0]


def test_whitespace_and_key_order_do_not_matter() -> None:
    reordered = json.dumps(dict(reversed(list(BODY.items()))), indent=4).encode()
    assert key(raw(reordered)) == key(raw())


@pytest.mark.parametrize(
    "extra",
    [
        ("authorization", "Bearer sk-proj-bbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
        ("x-api-key", "another-key-123456"),
        ("cookie", "session=abc"),
        ("user-agent", "OpenAI/Python 3.57.0"),
        ("x-stainless-retry-count", "2"),
        ("x-stainless-os", "Linux"),
        ("openai-organization", "org-123"),
        ("traceparent", "00-abc-def-01"),
    ],
)
def test_secrets_telemetry_and_retry_headers_do_not_change_the_key(extra: tuple[str, str]) -> None:
    assert key(raw(headers=(*HEADERS, extra))) == key(raw())


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4.1"},
        {"messages": [{"role": "user", "content": "Hi!"}]},
        {"temperature": 0.3},
        {"tools": []},
        {"tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"stream": True},
        {"stream_options": {"include_usage": True}},
    ],
)
def test_everything_that_shapes_the_answer_changes_the_key(change: dict[str, Any]) -> None:
    assert key(raw({**BODY, **change})) != key(raw())


def test_headers_that_change_the_answer_take_part() -> None:
    beta = (*HEADERS, ("anthropic-beta", "prompt-caching-2024-07-31"))
    assert key(raw(headers=beta)) != key(raw())
    other_version = tuple((k, "2024-01-01" if k == "anthropic-version" else v) for k, v in HEADERS)
    assert key(raw(headers=other_version)) != key(raw())
    custom = (*HEADERS, ("x-tenant", "a"))
    assert key(raw(headers=custom)) == key(raw())
    k = keyer(promptcache_key_headers=["x-tenant"])
    assert key(raw(headers=custom), k) != key(raw(), k)


def test_host_port_path_and_query_take_part_but_secret_params_do_not() -> None:
    assert key(raw(host="api.example.com")) != key(raw())
    assert key(raw(port=8443)) != key(raw())
    assert key(raw(port=443)) == key(raw())  # the scheme's default port is no port
    assert key(raw(path="/v1/responses")) != key(raw())
    assert key(raw(query=(("alt", "sse"),))) != key(raw())
    assert key(raw(query=(("key", "AIzaOne"),))) == key(raw(query=(("key", "AIzaTwo"),))) == key(raw())
    assert key(raw(query=(("b", "2"), ("a", "1")))) == key(raw(query=(("a", "1"), ("b", "2"))))


def test_ignored_fields_take_no_part_even_nested() -> None:
    k = keyer(promptcache_ignore_fields=["user", "metadata.user_id"])
    volatile = {**BODY, "user": "u-1", "metadata": {"user_id": "a", "env": "ci"}}
    other = {**BODY, "user": "u-2", "metadata": {"user_id": "b", "env": "ci"}}
    assert key(raw(volatile), k) == key(raw(other), k)
    assert key(raw({**other, "metadata": {"user_id": "b", "env": "dev"}}), k) != key(raw(other), k)
    assert "user" not in k.key_for(raw(volatile))[1].body  # type: ignore[operator]


def test_non_json_bodies_are_hashed_as_bytes() -> None:
    a = key(raw(b"plain text prompt"))
    assert a == key(raw(b"plain text prompt"))
    assert a != key(raw(b"plain text prompt!"))
    binary = keyer().key_for(raw(b"\xff\x00\x01"))[1]
    assert binary.body_sha256 is not None
    assert binary.body_text is None


def test_secret_values_in_the_body_never_reach_the_canonical_request() -> None:
    secret = "sk-proj-ZZZZ1234ZZZZZZZZZZZZZZZZ5678ZZ"
    s = settings()
    scrub = scrubber(s, {"MY_SERVICE_TOKEN": "tok-1234567890"})
    canonical = Keyer(s, scrub).canonical(
        raw({**BODY, "api_key": "plain-credential-123", "note": f"{secret} and tok-1234567890"})
    )
    text = json.dumps(canonical.body)
    assert secret not in text
    assert "tok-1234567890" not in text
    assert "plain-credential-123" not in text
    assert "<redacted:MY_SERVICE_TOKEN>" in text


def test_empty_and_short_environment_values_are_not_treated_as_secrets() -> None:
    s = settings()
    scrub = scrubber(
        s, {"OPENAI_API_KEY": "", "SHORT_TOKEN": "abc", "PATH": "/usr/bin:/bin/long/enough"}, patterns=False
    )
    assert scrub.text("abc /usr/bin:/bin/long/enough") == "abc /usr/bin:/bin/long/enough"


@pytest.mark.parametrize(
    "prose",
    [
        "risk-assessment-for-the-new-product-line",
        "Bearer of-bad-news-for-everyone-involved",
        "desk-organisation-and-cleaning-tips",
    ],
)
def test_key_shapes_do_not_match_ordinary_prose(prose: str) -> None:
    assert scrubber(settings()).text(prose) == prose


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
        "Bearer eyJhbGciOiJIUzI1NiJ9.abc123def456",
    ],
)
def test_key_shapes_are_replaced_anywhere(secret: str) -> None:
    assert "<redacted>" in scrubber(settings()).text(f"my key is {secret}, keep it safe")
