"""A default key header or endpoint can be taken out (``-name``), and a miss whose request is recorded
under another host finds that recording through the index and names the alias that would replay it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.keys import key_of
from pytest_promptcache.miss import MAX_OTHER_HOSTS, elsewhere, miss_message
from pytest_promptcache.models import CanonicalRequest, RecordedResponse, Recording, RecordingMeta
from pytest_promptcache.settings import (
    DEFAULT_ENDPOINTS,
    DEFAULT_KEY_HEADERS,
    EndpointPattern,
    SettingsError,
    build_settings,
    parse_endpoints,
)
from pytest_promptcache.store.cassettes import CassetteStore

PATH = "/v1/chat/completions"


def settings_with(**ini: Any) -> tuple[str, ...]:
    return build_settings(rootdir=Path("/tmp"), cli_mode=None, cli_dir=None, env={}, ini=ini).key_headers


def test_a_default_key_header_is_taken_out_and_others_added() -> None:
    assert settings_with(promptcache_key_headers="-Anthropic-Beta\nx-tenant") == (
        "anthropic-version",
        "openai-beta",
        "x-tenant",
    )
    assert settings_with(promptcache_key_headers="- openai-beta\n-anthropic-version\n-anthropic-beta") == ()
    assert settings_with() == DEFAULT_KEY_HEADERS


@pytest.mark.parametrize("lines", ["-x-tenant", "anthropic-beta\n-anthropic-beta", "-"])
def test_taking_out_what_is_no_default_or_is_also_added_is_an_error(lines: str) -> None:
    expected = r"promptcache_key_headers: '-.*' removes only a default key header"
    with pytest.raises(SettingsError, match=expected):
        settings_with(promptcache_key_headers=lines)


def request(host: str, text: str = "hello") -> CanonicalRequest:
    body: dict[str, Any] = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": text}]}
    return CanonicalRequest(method="POST", host=host, path=PATH, body=body)


def save(store: CassetteStore, canonical: CanonicalRequest) -> str:
    key = key_of(canonical)
    meta = RecordingMeta(
        recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
        test="t.py::t",
        url=f"http://{canonical.host}{PATH}",
        latency_ms=1.0,
        plugin_version="test",
    )
    response = RecordedResponse(status=200, headers={}, body={"ok": 1})
    store.put(Recording(key=key, request=canonical, response=response, meta=meta))
    return key


@pytest.fixture
def store(tmp_path: Path) -> CassetteStore:
    (tmp_path / "cassettes").mkdir()
    return CassetteStore(tmp_path / "cassettes")


def test_the_same_request_under_another_host_is_found_first(store: CassetteStore) -> None:
    save(store, request("127.0.0.1:1000", "something else"))
    key = save(store, request("127.0.0.1:2000"))
    save(store, request("127.0.0.1:3000", "other"))
    assert elsewhere(request("127.0.0.1:4000"), store) == ("127.0.0.1:2000", key)


def test_only_the_endpoint_under_another_host_is_said_too(store: CassetteStore) -> None:
    save(store, request("staging.example", "other"))
    other_path = request("prod.example").model_copy(update={"path": "/v1/embeddings"})
    save(store, other_path)
    assert elsewhere(request("prod.example"), store) == ("staging.example", None)
    assert elsewhere(request("staging.example"), store) is None


def test_a_handful_of_hosts_is_looked_at(store: CassetteStore) -> None:
    for port in range(MAX_OTHER_HOSTS + 1):
        save(store, request(f"10.0.0.1:{1000 + port}", "other"))
    save(store, request("10.0.0.1:9999"))  # sorts last: past the handful
    assert elsewhere(request("here:1"), store) == ("10.0.0.1:1000", None)


def message(url: str, host: str, found: tuple[str, str | None], near: bool = False) -> str:
    canonical = request(host)
    nearest = (key_of(request(host, "near")), request(host, "near"), 0.9) if near else None
    return miss_message(
        request=canonical,
        key=key_of(canonical),
        url=url,
        directory=Path("/c"),
        target=None,
        near=nearest,
        other_host=found,
    )


@pytest.mark.parametrize(
    ("url", "recorded", "alias"),
    [
        ("http://127.0.0.1:4000/v1/chat/completions", "127.0.0.1:2000", "127.0.0.1:* = 127.0.0.1:2000"),
        ("https://prod.example/v1/chat/completions", "staging.example", "prod.example = staging.example"),
        ("http://[::1]:4000/v1/chat/completions", "[::1]:2000", "[::1]:4000 = [::1]:2000"),
    ],
)
def test_the_message_names_the_alias_that_replays_the_recording(url: str, recorded: str, alias: str) -> None:
    text = message(url, "here", (recorded, "k" * 64))
    assert f"  elsewhere: this very request is recorded for host {recorded}: {'k' * 64}.json" in text
    lines = text.splitlines()
    at = lines.index("               promptcache_host_aliases =")
    assert lines[at + 1] == f"                   {alias}"


def test_an_endpoint_elsewhere_is_said_only_when_this_host_has_no_recording_of_it() -> None:
    url = "http://127.0.0.1:4000/v1/chat/completions"
    said = "elsewhere: POST /v1/chat/completions has recordings for host 127.0.0.1:2000, none for this one"
    assert said in message(url, "127.0.0.1:4000", ("127.0.0.1:2000", None))
    assert "elsewhere" not in message(url, "127.0.0.1:4000", ("127.0.0.1:2000", None), near=True)
    assert "elsewhere: this very" in message(url, "127.0.0.1:4000", ("127.0.0.1:2000", "k" * 64), near=True)


def test_a_default_endpoint_is_taken_out_and_the_rest_stay() -> None:
    every = parse_endpoints([])
    assert len(every) == len(DEFAULT_ENDPOINTS)
    fewer = parse_endpoints(["-/api/generate", "# our own service ends so too"])
    assert EndpointPattern(None, "/api/generate") not in fewer
    assert len(fewer) == len(every) - 1
    assert parse_endpoints(["defaults", "/v1/rerank", "-/v1/rerank"]) == every


@pytest.mark.parametrize("lines", [["-/v1/rerank"], ["/v1/rerank", "-/api/generate"]])
def test_taking_out_an_endpoint_that_is_not_listed_is_an_error(lines: list[str]) -> None:
    with pytest.raises(SettingsError, match=r"promptcache_endpoints: '-/.*' takes out a pattern that is not"):
        parse_endpoints(lines)
