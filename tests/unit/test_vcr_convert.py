"""The vcr compatibility layer's core, without pytest: requests and responses between vcrpy's shapes and
ours, cassettes opened as pytest-recording opens them and played as vcr plays them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from vcr.request import Request
from vcr.serialize import serialize
from vcr.serializers import yamlserializer

from pytest_promptcache.compat_vcr import mode_for_test
from pytest_promptcache.compat_vcr.convert import (
    ConversionError,
    body_bytes,
    from_vcr,
    recorded_response,
    response_parts,
    to_vcr,
    to_vcr_response,
    uri_of,
)
from pytest_promptcache.compat_vcr.opening import CassetteError, merge_config, open_cassette
from pytest_promptcache.compat_vcr.player import VcrPlayer
from pytest_promptcache.keys import Keyer, RawRequest
from pytest_promptcache.scrub import Scrubber
from pytest_promptcache.settings import Mode, build_settings
from pytest_promptcache.streams import build_replay

CHAT = json.dumps({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Hi"}]}).encode()


def raw(
    body: bytes = CHAT,
    query: tuple[tuple[str, str], ...] = (),
    port: int | None = None,
    path: str = "/v1/chat/completions",
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),),
) -> RawRequest:
    return RawRequest("POST", "https", "api.openai.com", port, path, query, headers, body)


def keyer() -> Keyer:
    s = build_settings(rootdir=Path("/tmp"), cli_mode=None, cli_dir=None, env={}, ini={})
    return Keyer(
        s, Scrubber(secret_headers=s.secret_headers, secret_params=s.secret_params, patterns=[], env={})
    )


@pytest.mark.parametrize(
    "request_",
    [
        raw(),
        raw(query=(("api-version", "2024-06-01"), ("q", "a b&c"))),
        raw(port=8443),
        raw(path="/model/anthropic.claude-3-haiku-20240307-v1:0/converse"),
        raw(body=b""),
        raw(headers=(("anthropic-version", "2023-06-01"), ("anthropic-beta", "x"))),
    ],
)
def test_a_request_through_vcr_and_back_keys_the_same(request_: RawRequest) -> None:
    k = keyer()
    assert k.key_for(from_vcr(to_vcr(request_)))[0] == k.key_for(request_)[0]


def test_the_uri_is_the_one_sent_when_the_adapter_knows_it() -> None:
    sent = RawRequest(
        "POST",
        "https",
        "bedrock-runtime.us-east-1.amazonaws.com",
        None,
        "/model/a:0/converse",
        (),
        (),
        b"",
        target="/model/a%3A0/converse",
    )
    assert uri_of(sent) == "https://bedrock-runtime.us-east-1.amazonaws.com/model/a%3A0/converse"
    assert uri_of(raw(query=(("q", "a b"),))) == "https://api.openai.com/v1/chat/completions?q=a+b"


def test_request_bodies_of_every_shape_vcr_keeps() -> None:
    import io

    assert body_bytes(None) == b""
    assert body_bytes("é") == "é".encode()
    assert body_bytes(io.BytesIO(b"file")) == b"file"
    assert body_bytes([b"a", "b"]) == b"ab"
    assert body_bytes(bytearray(b"x")) == b"x"
    with pytest.raises(ConversionError, match="a request body of type int"):
        body_bytes(3)


def response(body: Any, headers: dict[str, list[str]] | None = None, status: int = 200) -> dict[str, Any]:
    return {"status": {"code": status, "message": "OK"}, "headers": headers or {}, "body": {"string": body}}


JSON = {"content-type": ["application/json"]}


def test_a_json_response_is_stored_parsed() -> None:
    stored = recorded_response(response(b'{"id": "x"}', JSON))
    assert stored.body == {"id": "x"}
    assert stored.headers == {"content-type": "application/json"}


def test_a_gzip_body_is_stored_decoded_without_its_encoding() -> None:
    headers = {**JSON, "Content-Encoding": ["gzip"], "Content-Length": ["99"]}
    stored = recorded_response(response(gzip.compress(b'{"id": "z"}'), headers))
    assert stored.body == {"id": "z"}
    assert build_replay(stored).headers == (("content-type", "application/json"), ("content-length", "10"))


def test_a_stream_is_stored_as_its_events() -> None:
    sse = b'data: {"a": 1}\n\ndata: {"a": 2}\n\ndata: [DONE]\n\n'
    stored = recorded_response(response(sse.decode(), {"content-type": ["text/event-stream"]}))
    assert stored.events is not None
    assert [e.data for e in stored.events[:2]] == [{"a": 1}, {"a": 2}]
    assert len(build_replay(stored).chunks) == 3


def test_a_stream_that_carried_an_error_is_served_as_recorded() -> None:
    sse = b'event: error\ndata: {"type": "error"}\n\n'
    stored = recorded_response(response(sse, {"content-type": ["text/event-stream"]}))
    assert b"".join(build_replay(stored).chunks) == sse


def test_the_shape_vcr_wrote_for_httpx_before_8() -> None:
    old = {"status_code": 201, "headers": JSON, "content": '{"ok": true}'}
    stored = recorded_response(old)
    assert (stored.status, stored.body) == (201, {"ok": True})


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (response(b"x", {"content-encoding": ["zstd"]}), "unsupported content-encoding zstd"),
        (response(b"not gzip", {"content-encoding": ["gzip"]}), "could not decode the body"),
        ({"headers": {}}, "a response without the fields vcr writes"),
    ],
)
def test_responses_that_cannot_be_converted(broken: dict[str, Any], message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        recorded_response(broken)


def test_a_served_response_as_vcr_lists_it() -> None:
    stored = recorded_response(response(b'{"id": "x"}', JSON))
    listed = to_vcr_response(build_replay(stored))
    assert listed["status"]["code"] == 200
    assert listed["body"]["string"] == b'{"id":"x"}'
    assert listed["headers"]["content-type"] == ["application/json"]


@pytest.mark.parametrize(
    ("session", "record_mode", "expected"),
    [
        # A cassette's configuration never makes a replay go live.
        (Mode.REPLAY, "once", Mode.REPLAY),
        (Mode.REPLAY, "all", Mode.REPLAY),
        (Mode.OFF, "none", Mode.OFF),
        # It refines a recording session.
        (Mode.RECORD, "none", Mode.REPLAY),
        (Mode.RECORD, "new_episodes", Mode.RECORD),
        (Mode.RECORD, "all", Mode.REWRITE),
        (Mode.REWRITE, "once", Mode.REWRITE),
        (Mode.REWRITE, "none", Mode.REPLAY),
        (Mode.RECORD, "bogus", Mode.RECORD),
    ],
)
def test_a_record_mode_in_vcr_config_refines_the_session_mode(
    session: Mode, record_mode: str, expected: Mode
) -> None:
    assert mode_for_test(session, record_mode) is expected


def test_the_closest_marker_wins_as_in_pytest_recording() -> None:
    # iter_markers yields the closest first; pytest-recording applies them farthest first.
    merged = merge_config({"a": 0, "b": 0}, [{"a": "function"}, {"a": "class", "c": 1}])
    assert merged == {"a": "function", "b": 0, "c": 1}


# -- a cassette opened and played ------------------------------------------------------------------------


def write_cassette(path: Path, interactions: list[tuple[RawRequest, dict[str, Any]]]) -> None:
    """A cassette as vcrpy writes one (its own serializer)."""
    requests = [Request(r.method, uri_of(r), r.body, dict(r.headers)) for r, _ in interactions]
    text = serialize({"requests": requests, "responses": [resp for _, resp in interactions]}, yamlserializer)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def player(tmp_path: Path, config: dict[str, Any] | None = None, **kwargs: Any) -> VcrPlayer:
    opened = open_cassette(
        name="test_x",
        cassette_dir=str(tmp_path / "cassettes" / "test_mod"),
        extra=kwargs.pop("extra", ()),
        config=config or {},
        record_mode="none",
        configure=kwargs.pop("configure", lambda vcr: None),
        rootdir=tmp_path,
    )
    return VcrPlayer(opened, **kwargs)


def test_interactions_are_played_once_each_in_order(tmp_path: Path) -> None:
    answers = [response(json.dumps({"n": n}).encode(), JSON) for n in range(3)]
    write_cassette(tmp_path / "cassettes/test_mod/test_x.yaml", [(raw(), a) for a in answers])
    p = player(tmp_path)
    assert p.scope_names == ("cassettes/test_mod/test_x.yaml",)
    assert p.handles("api.openai.com", "/v1/chat/completions")
    assert not p.handles("api.openai.com", "/v1/embeddings")
    played = [p.play(raw()) for _ in range(4)]
    assert [x.recording.response.body for x in played[:3] if x] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert played[3] is None
    assert played[1] is not None
    assert played[1].where == "cassettes/test_mod/test_x.yaml, interaction 2 of 3"
    assert p.cassette.play_count == 3
    assert p.cassette.all_played
    lines = p.explain(raw())
    assert "3 interactions, 3 played" in lines[0]
    assert "played already" in lines[1]


def test_a_request_that_matches_nothing_is_explained_by_vcr_matchers(tmp_path: Path) -> None:
    write_cassette(tmp_path / "cassettes/test_mod/test_x.yaml", [(raw(), response(b"{}", JSON))])
    p = player(tmp_path)
    assert p.play(raw(path="/v1/embeddings")) is None
    lines = p.explain(raw(path="/v1/embeddings"))
    assert lines[1] == "  closest:      POST https://api.openai.com/v1/chat/completions"
    # vcr's default matchers as pytest-recording configures them: method, scheme, host, port, path, query.
    assert lines[2:] == ["    path: /v1/embeddings != /v1/chat/completions"]


def test_filters_apply_to_the_request_as_keyed(tmp_path: Path) -> None:
    write_cassette(tmp_path / "cassettes/test_mod/test_x.yaml", [])
    config = {"filter_headers": ["anthropic-beta"], "filter_query_parameters": ["trace"]}
    p = player(tmp_path, config)
    sent = raw(query=(("trace", "t1"), ("v", "2")), headers=(("anthropic-beta", "b"), ("x", "y")))
    keyed = p.prepare(sent)
    assert keyed is not None
    assert keyed.query == (("v", "2"),)
    assert ("anthropic-beta", "b") not in keyed.headers
    assert ("x", "y") in keyed.headers
    assert player(tmp_path, {"ignore_hosts": ["api.openai.com"]}).prepare(sent) is None


def test_what_the_cassette_did_not_answer_is_listed_after_its_interactions(tmp_path: Path) -> None:
    write_cassette(tmp_path / "cassettes/test_mod/test_x.yaml", [(raw(), response(b"{}", JSON))])
    p = player(tmp_path, {"filter_headers": ["authorization"]})
    fill = p.made(raw(path="/v1/embeddings", headers=(("authorization", "Bearer k"),)))
    fill(build_replay(recorded_response(response(b'{"data":[]}', JSON))))
    assert len(p.cassette) == 2
    assert p.cassette.requests[1].path == "/v1/embeddings"
    assert "authorization" not in p.cassette.requests[1].headers
    assert p.cassette.responses[1]["body"]["string"] == b'{"data":[]}'
    assert p.cassette.play_counts[1] == 1


def test_extra_cassettes_and_a_serializer_the_suite_registers(tmp_path: Path) -> None:
    write_cassette(tmp_path / "cassettes/test_mod/shared.yaml", [(raw(), response(b'{"n": 9}', JSON))])
    registered: list[str] = []

    def configure(vcr: Any) -> None:
        registered.append(type(vcr).__name__)
        vcr.register_serializer("custom", yamlserializer)

    p = player(tmp_path, {"serializer": "custom"}, extra=["shared.yaml"], configure=configure)
    assert registered == ["VCR"]
    # Its own cassette would be test_x.custom: missing, so only the extra one answers.
    assert p.scope_names == ("cassettes/test_mod/test_x.custom", "cassettes/test_mod/shared.yaml")
    played = p.play(raw())
    assert played is not None
    assert played.recording.response.body == {"n": 9}


def test_a_cassette_vcr_cannot_read_names_itself(tmp_path: Path) -> None:
    (tmp_path / "cassettes/test_mod").mkdir(parents=True)
    (tmp_path / "cassettes/test_mod/test_x.yaml").write_text("interactions: [{request: 1}]\n")
    with pytest.raises(CassetteError, match=r"vcr cannot read the cassette .*test_x.yaml"):
        player(tmp_path)
    with pytest.raises(CassetteError, match="vcr cannot use this test's configuration"):
        player(tmp_path, {"serializer": "unregistered"})


def test_an_interaction_that_cannot_be_served_is_named_in_the_miss(tmp_path: Path) -> None:
    broken = response(b"x", {"content-encoding": ["zstd"]})
    write_cassette(tmp_path / "cassettes/test_mod/test_x.yaml", [(raw(), broken)])
    p = player(tmp_path)
    assert p.play(raw()) is None
    assert p.explain(raw())[-1] == "  interaction 1 could not be served: unsupported content-encoding zstd"


def test_a_player_that_does_not_read_its_cassette(tmp_path: Path) -> None:
    write_cassette(tmp_path / "cassettes/test_mod/test_x.yaml", [(raw(), response(b"{}", JSON))])
    p = player(tmp_path, play=False)
    assert p.play(raw()) is None
    assert not p.handles("api.openai.com", "/v1/chat/completions")
    assert p.explain(raw()) == [
        "  vcr cassette: cassettes/test_mod/test_x.yaml (not read: promptcache_vcr = native)"
    ]


def test_a_cassette_name_too_long_for_a_file_is_shortened_as_pytest_recording_does(tmp_path: Path) -> None:
    opened = open_cassette(
        name="test_" + "x" * 300,
        cassette_dir=str(tmp_path),
        extra=(),
        config={},
        record_mode="none",
        configure=lambda vcr: None,
        rootdir=tmp_path,
    )
    (name,) = opened.paths
    assert len(name) <= 255
    assert "..." in name
    assert name.endswith(".yaml")


def test_playback_repeats_serve_the_same_interaction_again(tmp_path: Path) -> None:
    write_cassette(tmp_path / "cassettes/test_mod/test_x.yaml", [(raw(), response(b'{"n": 1}', JSON))])
    p = player(tmp_path, {"allow_playback_repeats": True})
    first, second = p.play(raw()), p.play(raw())
    assert first is not None
    assert second is first
    assert p.cassette.play_counts[0] == 2


def test_header_values_of_every_shape_a_cassette_holds() -> None:
    status, headers, body = response_parts(
        {"status": {"code": 200}, "headers": {"X-A": [b"bytes"], "X-B": "one", "X-C": ["1", "2"]}, "body": {}}
    )
    assert (status, body) == (200, b"")
    assert headers == [("x-a", "bytes"), ("x-b", "one"), ("x-c", "1"), ("x-c", "2")]


def test_a_request_the_cassette_s_configuration_ignores_is_keyed_as_the_session_s(tmp_path: Path) -> None:
    from pytest_promptcache.ordered import OrderedScope
    from pytest_promptcache.session import CacheSession

    write_cassette(tmp_path / "cassettes/test_mod/test_x.yaml", [])
    ignoring = player(tmp_path, {"ignore_hosts": ["api.openai.com"]})
    s = build_settings(
        rootdir=tmp_path, cli_mode=None, cli_dir=None, env={}, ini={"promptcache_state_dir": "st"}
    )
    cache = CacheSession(s, env={})
    context = cache.begin_test("test_mod.py::test_x")
    context.scope = OrderedScope(names=ignoring.scope_names, player=ignoring)
    cache.engine().start(raw())
    (call,) = context.calls
    assert call.key == keyer().key_for(raw())[0]  # no scope in it
    (problem,) = context.take_problems()
    assert "scope:" not in problem
