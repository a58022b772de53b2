"""A lone surrogate in a provider's JSON (a stream may split "\\ud83d\\ude00" between two events, as a
server that escapes non-ASCII and cuts at UTF-16 units does) has no UTF-8 form. Recording such a call
raised UnicodeEncodeError from inside the client and lost it; it is now written as the escape it
arrived as, and replayed to the client byte for byte, from the file and from its kept form."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import cache_session

from pytest_promptcache.clients import install, uninstall
from pytest_promptcache.keys import key_of
from pytest_promptcache.models import CanonicalRequest, RecordedResponse, Recording, RecordingMeta
from pytest_promptcache.store.cassettes import CassetteStore
from pytest_promptcache.store.files import read_recording

STREAM = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4.1-mini",'
    b'"choices":[{"index":0,"delta":{"content":"smile \\ud83d"},"finish_reason":null}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4.1-mini",'
    b'"choices":[{"index":0,"delta":{"content":"\\ude00 done"},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
WHOLE = (
    b'{"id":"c2","object":"chat.completion","created":1,"model":"gpt-4.1-mini","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"half \\ud83d"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}'
)


class _Provider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    served = 0

    def do_POST(self) -> None:
        type(self).served += 1
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        stream = b'"stream":true' in body
        payload = STREAM if stream else WHOLE
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if stream else "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def provider() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def answers(mode: str, base_url: str, root: Path) -> tuple[list[str | None], str | None]:
    """What the app read from a stream and from a whole answer, in one session of ``mode``."""
    session = cache_session(mode, root)
    install(session)
    try:
        session.begin_test("test_app.py::test_smile")
        client = openai.OpenAI(api_key="sk-test", base_url=base_url, max_retries=0)
        messages: Any = [{"role": "user", "content": "smile"}]
        stream = client.chat.completions.create(model="gpt-4.1-mini", messages=messages, stream=True)
        pieces = [chunk.choices[0].delta.content for chunk in stream]
        whole = client.chat.completions.create(model="gpt-4.1-mini", messages=messages)
        test = session.context
        assert test.take_problems() == []
        outcome = "recorded" if mode == "record" else "replayed"
        assert [call.outcome.value for call in test.calls] == [outcome, outcome]
        session.end_test()
    finally:
        uninstall(session)
        session.close()
    return pieces, whole.choices[0].message.content


def test_a_lone_surrogate_is_recorded_and_replayed_as_it_arrived(provider: str, tmp_path: Path) -> None:
    live = answers("record", provider, tmp_path)
    assert live == (["smile \ud83d", "\ude00 done"], "half \ud83d")
    files = sorted((tmp_path / "cassettes").glob("*.json"))
    assert len(files) == 2
    for path in files:
        text = path.read_bytes().decode("utf-8")  # valid UTF-8: the surrogate is written escaped
        assert "\\ud83d" in text
        assert read_recording(path).key == path.stem
    sent = _Provider.served
    # From the files, then (the second replay) from the forms the first kept in the state directory.
    assert answers("replay", provider, tmp_path) == live
    assert answers("replay", provider, tmp_path) == live
    assert _Provider.served == sent


def test_a_miss_on_a_prompt_with_a_lone_surrogate_prints_its_diff(pytester: pytest.Pytester) -> None:
    # The miss message quotes the request: a raw lone surrogate in it stopped pytest printing the message
    # as it is, and the failure came out as one line of escaped newlines.
    nearby = CanonicalRequest(
        method="POST",
        host="api.openai.com",
        path="/v1/chat/completions",
        body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "half an emoji here"}]},
    )
    CassetteStore(pytester.path / "cassettes").put(
        Recording(
            schema_version=2,
            key=key_of(nearby),
            request=nearby,
            response=RecordedResponse(status=200, headers={"content-type": "application/json"}, body={}),
            meta=RecordingMeta(
                recorded_at=datetime.now(UTC),
                test="test_app.py::test_half",
                url="https://api.openai.com/v1/chat/completions",
                latency_ms=1.0,
                plugin_version="0.1.0",
            ),
        )
    )
    pytester.makeini("[pytest]\npromptcache_dir = cassettes\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_app="""
        import httpx

        def test_half():
            prompt = b'"half an emoji \\\\ud83d here"'
            body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":' + prompt + b'}]}'
            httpx.post("https://api.openai.com/v1/chat/completions", content=body)
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:xdist")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*nearest:*(similarity *, recorded by test_app.py::test_half)",
            '-        "content": "half an emoji here",',
            '+        "content": "half an emoji \\ud83d here",',
        ]
    )
