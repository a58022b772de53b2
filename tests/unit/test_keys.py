"""The key rules: what changes a key and what must not. Pure functions, tested directly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.keys import HookError, Keyer, RawRequest, canonical_json, display_url, key_of
from pytest_promptcache.rules import KeyRules
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


# -- stability --------------------------------------------------------------------------------------------


def test_the_key_of_a_request_is_pinned() -> None:
    # Committed cassettes are named by these keys: a change here makes every user's recordings miss.
    canonical = keyer().key_for(raw())[1]
    assert canonical_json(canonical) == (
        '{"body":{"messages":[{"content":"Hi","role":"user"}],"model":"gpt-4.1-mini","temperature":0.2,'
        '"tools":[{"function":{"name":"f","parameters":{}},"type":"function"}]},'
        '"headers":{"anthropic-version":"2023-06-01"},"host":"api.openai.com","method":"POST",'
        '"path":"/v1/chat/completions"}'
    )
    assert key_of(canonical) == hashlib.sha256(canonical_json(canonical).encode()).hexdigest()
    assert key(raw()) == "2ae378157b0d4ceeb426a48a02ffb67f7b95cabbb7056b7f0a747430601aeb60"


def test_keys_are_the_same_from_any_keyer_and_remembered() -> None:
    k = keyer()
    assert k.recall(raw()) is None  # never keyed, and no key memory
    first = k.key_for(raw())
    assert keyer().key_for(raw()) == first
    assert k.canonical(raw()) == first[1]
    # Remembered per request bytes and rule set: its key and model, not the canonical request.
    assert k.recall(raw()) == (first[0], first[1].model)
    assert k.recall(raw(b'{"model": "gpt-4o", "other": 1}')) is None
    assert k.recall(raw(), KeyRules.build(ignore_fields=["user"])) is None


def test_the_method_is_upper_cased_and_the_host_lower_cased() -> None:
    lower = RawRequest("post", "https", "API.OpenAI.com", None, "/v1/chat/completions", (), HEADERS, b"{}")
    upper = RawRequest("POST", "https", "api.openai.com", 443, "/v1/chat/completions", (), HEADERS, b"{}")
    assert key(lower) == key(upper)


# -- RawRequest and URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "host", "port", "netloc"),
    [
        ("https", "api.openai.com", None, "api.openai.com"),
        ("https", "api.openai.com", 443, "api.openai.com"),
        ("http", "localhost", 80, "localhost"),
        ("http", "localhost", 443, "localhost:443"),
        ("https", "LLM.Internal", 8443, "llm.internal:8443"),
        ("http", "::1", 8765, "[::1]:8765"),
        ("http", "::1", None, "[::1]"),
    ],
)
def test_netloc(scheme: str, host: str, port: int | None, netloc: str) -> None:
    assert RawRequest("GET", scheme, host, port, "/", (), (), b"").netloc == netloc


def test_header_lookup_by_lower_case_name() -> None:
    request = raw()
    assert request.header("anthropic-version") == "2023-06-01"
    assert request.header("x-missing") is None


def test_display_url_hides_secret_params_and_secret_values() -> None:
    s = settings()
    scrub = scrubber(s, {"GEMINI_API_KEY": "AIzaSyTESTKEYabcdefghijklmnopqrstuvwx12"})
    request = raw(
        host="generativelanguage.googleapis.com",
        path="/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        query=(("alt", "sse"), ("key", "AIza-anything"), ("note", "AIzaSyTESTKEYabcdefghijklmnopqrstuvwx12")),
    )
    assert display_url(request, scrub) == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        "?alt=sse&key=<redacted>&note=<redacted:GEMINI_API_KEY>"
    )
    assert display_url(raw(port=8443), scrub) == "https://api.openai.com:8443/v1/chat/completions"


# -- bodies, rules and hooks ------------------------------------------------------------------------------


def test_normalisers_reach_query_values_and_text_bodies() -> None:
    k = keyer(promptcache_normalize=["iso-date"])
    assert key(raw(query=(("day", "2026-11-27"),)), k) == key(raw(query=(("day", "2026-11-28"),)), k)
    canonical = k.key_for(raw(b"report for 2026-11-27"))[1]
    assert canonical.body_text == "report for <DATE>"
    assert canonical.body_sha256 == hashlib.sha256(b"report for <DATE>").hexdigest()
    assert canonical.body is None


def test_a_binary_body_is_hashed_as_it_is() -> None:
    canonical = keyer().key_for(raw(b"\xff\x00\x01"))[1]
    assert canonical.body_sha256 == hashlib.sha256(b"\xff\x00\x01").hexdigest()


def test_a_tests_own_rules_apply_to_its_requests_only() -> None:
    k = keyer()
    rules = k.default_rules.merged(["temperature"], [])
    warm, cold = raw({**BODY, "temperature": 0.9}), raw({**BODY, "temperature": 0.0})
    assert key(warm, k) != key(cold, k)
    assert k.key_for(warm, rules)[0] == k.key_for(cold, rules)[0]


def test_a_hook_may_change_the_canonical_request() -> None:
    def same_host(request: dict[str, Any]) -> None:
        request["host"] = "api.openai.com"

    k = keyer()
    rules = KeyRules.build(hook=same_host, hook_scope="t.py::a")
    staging = raw(host="staging.example.com")
    assert k.key_for(staging, rules)[0] == key(raw())
    assert key(staging, k) != key(raw())  # without the hook the host counts


def test_a_hook_that_breaks_the_request_is_an_error_that_says_so() -> None:
    def breaks(request: dict[str, Any]) -> None:
        request["surprise"] = 1

    with pytest.raises(HookError, match=r"^pytest_promptcache_canonical_request left an invalid request: "):
        keyer().key_for(raw(), KeyRules.build(hook=breaks, hook_scope="t.py::a"))
