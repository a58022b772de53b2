"""Ordered scopes (a test's own recordings, the N-th identical request answered by the N-th) and the key
rules suites written for vcrpy need: ids after an underscore, multipart uploads."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from pytest_promptcache.keys import Keyer, RawRequest, canonical_json, key_of
from pytest_promptcache.models import CanonicalRequest, RequestScope, schema_version_for
from pytest_promptcache.ordered import OrderedScope
from pytest_promptcache.rules import Normalizer
from pytest_promptcache.scrub import Scrubber
from pytest_promptcache.session import CacheSession
from pytest_promptcache.settings import Mode, Settings, build_settings

HEX = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"call_{HEX}", "call_<HEX_ID>"),
        (f"msg-{HEX}", "msg-<HEX_ID>"),
        (f"tool_search_{HEX}_2", "tool_search_<HEX_ID>_2"),
        (f"trace={HEX}&x", "trace=<HEX_ID>&x"),
        (f"id {HEX}", "id <HEX_ID>"),
        # Inside a word, or followed by one, it is not an id of its own.
        (f"x{HEX}", f"x{HEX}"),
        (f"{HEX}z", f"{HEX}z"),
        (f"call_{HEX[:20]}", f"call_{HEX[:20]}"),
    ],
)
def test_hex_ids_after_an_underscore_or_a_dash_are_normalised(text: str, expected: str) -> None:
    assert Normalizer.parse("hex-id").apply(text) == expected


def settings(tmp_path: Path, **ini: str) -> Settings:
    state = str(tmp_path / "state")
    return build_settings(
        rootdir=tmp_path, cli_mode=None, cli_dir=None, env={}, ini={"promptcache_state_dir": state, **ini}
    )


def keyer(tmp_path: Path) -> Keyer:
    s = settings(tmp_path)
    scrubber = Scrubber(secret_headers=s.secret_headers, secret_params=s.secret_params, patterns=[], env={})
    return Keyer(s, scrubber)


def upload(content: bytes) -> RawRequest:
    # httpx picks a random boundary for every request, as every multipart client does.
    request = httpx.Request("POST", "https://api.openai.com/v1/files", files={"file": ("a.jsonl", content)})
    body = request.read()
    headers = tuple((k.lower(), v) for k, v in request.headers.items())
    return RawRequest("POST", "https", "api.openai.com", None, "/v1/files", (), headers, body)


def test_multipart_bodies_key_without_their_random_boundary(tmp_path: Path) -> None:
    first, second = upload(b'{"a": 1}\n'), upload(b'{"a": 1}\n')
    assert first.body != second.body  # different boundaries on the wire
    k = keyer(tmp_path)
    assert k.key_for(first)[0] == k.key_for(second)[0]
    assert k.key_for(upload(b'{"a": 2}\n'))[0] != k.key_for(first)[0]
    text = k.canonical(first).body_text or ""
    assert "--<BOUNDARY>" in text
    assert '{"a": 1}' in text


def test_a_binary_multipart_body_keys_without_its_boundary_too(tmp_path: Path) -> None:
    k = keyer(tmp_path)
    assert k.key_for(upload(b"\xff\xfe\x00"))[0] == k.key_for(upload(b"\xff\xfe\x00"))[0]
    assert k.canonical(upload(b"\xff\xfe\x00")).body_text is None


def test_an_unscoped_request_keys_as_before_the_scope_existed() -> None:
    # Every recording made before scopes keeps its key: the new field is left out of the key when unset.
    request = CanonicalRequest(
        method="POST", host="api.openai.com", path="/v1/chat/completions", body={"a": 1}
    )
    assert "scope" not in json.loads(canonical_json(request))
    scoped = request.model_copy(update={"scope": RequestScope(name="tests/test_x.py::test_y", index=0)})
    keys = {key_of(request), key_of(scoped)}
    keys.add(
        key_of(request.model_copy(update={"scope": RequestScope(name="tests/test_x.py::test_y", index=1)}))
    )
    keys.add(
        key_of(request.model_copy(update={"scope": RequestScope(name="tests/test_x.py::test_z", index=0)}))
    )
    assert len(keys) == 4


def test_only_scoped_recordings_are_written_as_schema_4() -> None:
    from pytest_promptcache.models import RecordedResponse

    request = CanonicalRequest(method="POST", host="h", path="/v1/chat/completions")
    response = RecordedResponse(status=200, body={})
    assert schema_version_for(response, request) == 2
    assert schema_version_for(response) == 2
    scoped = request.model_copy(update={"scope": RequestScope(name="t", index=0)})
    assert schema_version_for(response, scoped) == 4


def test_a_scope_counts_each_request_under_each_name() -> None:
    scope = OrderedScope(names=("a", "b"))
    assert [scope.index("a", "k1") for _ in range(3)] == [0, 1, 2]
    assert scope.index("a", "k2") == 0
    assert scope.index("b", "k1") == 0


def chat(text: str) -> RawRequest:
    body = json.dumps({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": text}]}).encode()
    return RawRequest("POST", "https", "api.openai.com", None, "/v1/chat/completions", (), (), body)


def test_a_call_that_asks_again_is_counted_once(tmp_path: Path) -> None:
    from pytest_promptcache.ordered import Turn

    cache = CacheSession(settings(tmp_path, promptcache_scope="test"), env={})
    context = cache.begin_test("test_x.py::test_poll", Mode.REPLAY)
    engine = cache.engine()
    turn = Turn()
    engine.start(chat("done?"), turn=turn)
    engine.start(chat("done?"), turn=turn)  # the same call, after waiting for an identical one
    engine.start(chat("done?"))  # the next call
    canonical = keyer(tmp_path).canonical(chat("done?"))
    expected = [
        key_of(canonical.model_copy(update={"scope": RequestScope(name="test_x.py::test_poll", index=i)}))
        for i in (0, 0, 1)
    ]
    assert [call.key for call in context.calls] == expected
    problems = context.take_problems()
    assert len(problems) == 2  # one message per distinct miss
    assert "scope:     test_x.py::test_poll, the request's occurrence 1 there" in problems[0]
    assert "scope:     test_x.py::test_poll, the request's occurrence 2 there" in problems[1]


def test_session_scope_stays_the_default(tmp_path: Path) -> None:
    cache = CacheSession(settings(tmp_path), env={})
    assert cache.begin_test("test_x.py::test_a").scope is None
    assert cache.begin_test("test_x.py::test_a", test_scope=True).scope is not None
    with pytest.raises(ValueError, match="promptcache_scope: 'tests' is not one of session, test"):
        settings(tmp_path, promptcache_scope="tests")


def test_a_canonical_hook_that_breaks_a_scoped_request_fails_its_call(tmp_path: Path) -> None:
    from pytest_promptcache.rules import KeyRules

    cache = CacheSession(settings(tmp_path), env={})
    broken = KeyRules.build(hook=lambda request: request.update(method=None))
    context = cache.begin_test("test_x.py::test_hook", Mode.REPLAY, rules=broken, test_scope=True)
    cache.engine().start(chat("hi"))
    (problem,) = context.take_problems()
    assert "pytest_promptcache_canonical_request left an invalid request" in problem
