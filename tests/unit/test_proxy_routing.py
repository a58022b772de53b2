"""Where the proxy forwards (upstream lines, routes, the variables clients read), what it asks upstreams
to encode, and how a session leaves its own proxy alone: pure functions and a session, no sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_promptcache.keys import key_of
from pytest_promptcache.models import CanonicalRequest, RecordedResponse, Recording, RecordingMeta
from pytest_promptcache.proxy.forward import accept_encoding
from pytest_promptcache.proxy.upstreams import Route, UpstreamError, parse_upstream, parse_upstreams, route
from pytest_promptcache.session import CacheSession
from pytest_promptcache.settings import build_settings


def test_an_upstream_mounts_under_its_name_with_its_own_path() -> None:
    up = parse_upstream(" OpenAI = http://127.0.0.1:8080/v1/ ", "test")
    assert (up.name, up.scheme, up.host, up.port, up.base_path) == (
        "openai",
        "http",
        "127.0.0.1",
        8080,
        "/v1",
    )
    assert (up.netloc, up.url, up.mount, up.connect_port) == (
        "127.0.0.1:8080",
        "http://127.0.0.1:8080/v1",
        "/openai/v1",
        8080,
    )
    default_port = parse_upstream("anthropic=https://api.anthropic.com:443", "test")
    assert (default_port.netloc, default_port.connect_port, default_port.mount) == (
        "api.anthropic.com",
        443,
        "/anthropic",
    )
    assert parse_upstream("local=http://[::1]:9000", "test").netloc == "[::1]:9000"


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("openai", "x: 'openai' is not NAME=URL (e.g. openai=http://127.0.0.1:8080/v1)"),
        ("openai=", "x: 'openai=' is not NAME=URL (e.g. openai=http://127.0.0.1:8080/v1)"),
        (
            "open ai=http://h",
            "x: 'open ai=http://h' is not NAME=URL (e.g. openai=http://127.0.0.1:8080/v1); "
            "NAME is a lower-case word: letters, digits, - and _",
        ),
        (
            "openai=api.openai.com/v1",
            "x: 'openai=api.openai.com/v1' is not NAME=URL (e.g. "
            "openai=http://127.0.0.1:8080/v1): the URL must start with http:// or https:// and name a host",
        ),
        (
            "openai=http://h:99999",
            "x: 'openai=http://h:99999' is not NAME=URL (e.g. "
            "openai=http://127.0.0.1:8080/v1): Port out of range 0-65535",
        ),
        ("openai=https://me:pw@h/v1", "x: the URL for openai holds credentials; the clients send their own"),
        (
            "openai=https://h/v1?key=1",
            "x: 'openai=https://h/v1?key=1' is not NAME=URL (e.g. "
            "openai=http://127.0.0.1:8080/v1): a base URL has no query or fragment",
        ),
    ],
)
def test_a_bad_upstream_line_says_what_a_good_one_is(line: str, error: str) -> None:
    with pytest.raises(UpstreamError) as raised:
        parse_upstream(line, "x")
    assert str(raised.value) == error


def test_upstream_lines_replace_defaults_by_name_and_add_new_ones() -> None:
    defaults = parse_upstreams([], "ini")
    assert {n: u.url for n, u in defaults.items()} == {
        "openai": "https://api.openai.com/v1",
        "anthropic": "https://api.anthropic.com",
        "gemini": "https://generativelanguage.googleapis.com",
    }
    lines = ["# a comment", "", "openai=http://127.0.0.1:8080/v1", "my-llm=https://llm.internal.example"]
    mine = parse_upstreams(lines, "ini")
    assert mine["openai"].url == "http://127.0.0.1:8080/v1"
    assert mine["anthropic"] == defaults["anthropic"]
    assert {n: u.env_names for n, u in mine.items()} == {
        "openai": ("OPENAI_BASE_URL",),
        "anthropic": ("ANTHROPIC_BASE_URL",),
        "gemini": ("GOOGLE_GEMINI_BASE_URL", "GEMINI_BASE_URL"),
        "my-llm": ("MY_LLM_BASE_URL",),
    }
    assert list(parse_upstreams(["x=http://h"], "cli", defaults=False)) == ["x"]


def test_routes_go_only_to_configured_upstreams_with_the_path_as_sent() -> None:
    upstreams = parse_upstreams([], "ini")
    found = route("/openai/v1/models/a%2Fb:x?limit=1&key=k", upstreams)
    assert found == Route(upstreams["openai"], "/v1/models/a%2Fb:x", "limit=1&key=k")
    assert route("/gemini", upstreams) == Route(upstreams["gemini"], "/", "")
    assert route("/elsewhere/v1/chat/completions", upstreams) == (
        "no upstream named 'elsewhere' (configured: /anthropic/, /gemini/, /openai/); add one with "
        "--upstream NAME=URL or ini promptcache_upstreams"
    )
    assert route("http://evil.example/v1/chat/completions", upstreams) == (
        "the proxy forwards only paths under /NAME/ of a configured upstream, not absolute URLs"
    )
    assert route("/x", {}) == (
        "no upstream named 'x' (configured: none); add one with --upstream NAME=URL or ini "
        "promptcache_upstreams"
    )


@pytest.mark.parametrize(
    ("asked", "sent"),
    [
        (None, None),  # the client asked for nothing: nor does the proxy
        ("gzip, deflate, br, zstd", "gzip, deflate, br"),
        ("zstd", "identity"),  # nothing a recorder could decode: ask for the body as it is
        ("gzip;q=1.0, identity;q=0.5", "gzip;q=1.0"),
    ],
)
def test_upstreams_are_asked_only_for_encodings_a_recorder_decodes(
    asked: str | None, sent: str | None
) -> None:
    assert accept_encoding(asked) == sent


def _session(tmp_path: Path) -> CacheSession:
    settings = build_settings(rootdir=tmp_path, cli_mode=None, cli_dir=None, env={}, ini={})
    return CacheSession(settings, env={})


def test_a_session_leaves_requests_to_its_own_proxy_to_the_proxy(tmp_path: Path) -> None:
    session = _session(tmp_path)
    path = "/openai/v1/chat/completions"
    assert session.handles("127.0.0.1", path)
    session.add_proxy(8123, ["/openai/", "/anthropic/"])
    # Sent over the socket, so the proxy keys it as sent upstream, not by its own port.
    assert not session.handles("127.0.0.1", path)
    assert not session.handles("LOCALHOST", "/anthropic/v1/messages")
    assert session.handles("api.example.com", path)  # a real host with such a path is intercepted
    assert session.handles("127.0.0.1", "/v1/chat/completions")
    session.add_proxy(8124, ["/openai/"])
    session.remove_proxy(8123)
    assert not session.handles("127.0.0.1", path)
    session.remove_proxy(8124)
    assert session.handles("127.0.0.1", path)


def test_the_socket_guard_lets_the_proxy_through_even_on_a_recorded_port(tmp_path: Path) -> None:
    """A proxy on the port a recording was made against (a server replaced by the proxy) is still
    reachable in replay; the recorded server is not."""
    request = CanonicalRequest(method="POST", host="127.0.0.1:8123", path="/v1/chat/completions", body={})
    recording = Recording(
        key=key_of(request),
        request=request,
        response=RecordedResponse(status=200, headers={}, body={}),
        meta=RecordingMeta(
            recorded_at="2026-11-01T00:00:00Z",  # type: ignore[arg-type]
            test="t",
            url="http://127.0.0.1:8123/v1/chat/completions",
            latency_ms=1.0,
            plugin_version="0",
        ),
    )
    (tmp_path / "cassettes").mkdir()
    (tmp_path / "cassettes" / f"{recording.key}.json").write_text(
        json.dumps(recording.model_dump(mode="json"))
    )
    session = _session(tmp_path)
    assert session.refuse_connection("127.0.0.1", 8123, may_wait=True) is not None
    session.add_proxy(8123, ["/openai/"])
    assert session.refuse_connection("127.0.0.1", 8123, may_wait=True) is None
    assert session.refuse_connection("127.0.0.1", 8124, may_wait=True) is None
