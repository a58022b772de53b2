"""Replay never reaches a provider: connections no adapter handled (the standard library's urllib, a
raw socket, asyncio streams) are refused at the socket when they go to a provider or to a host the
recordings know, the test fails with a message naming the host and the client, and the server sees
nothing. Replay also needs no API key."""

from __future__ import annotations

import json

import pytest
from conftest import Suite

RECORD_ONE = """
from conftest import ask

def test_record_one(oai0):
    assert ask(oai0, "recorded through the SDK").choices[0].message.content
"""

UNHANDLED = """
import asyncio, json, os, socket, urllib.request
from urllib.parse import urlsplit

URL = os.environ["LLM_URL"] + "/v1/chat/completions"
BODY = json.dumps({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()

def test_stdlib_urllib():
    request = urllib.request.Request(URL, data=BODY, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert reply.status == 200

def test_raw_socket():
    parts = urlsplit(URL)
    with socket.socket() as sock:
        sock.settimeout(5)
        sock.connect((parts.hostname, parts.port))
        head = b"POST /v1/chat/completions HTTP/1.0\\r\\ncontent-length: %d\\r\\n\\r\\n" % len(BODY)
        sock.sendall(head + BODY)
        assert sock.recv(100).startswith(b"HTTP/1.1 200")

def test_asyncio_stream():
    parts = urlsplit(URL)
    async def go():
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.close()
    asyncio.run(go())

def test_a_provider_host():
    request = urllib.request.Request("https://api.openai.com/v1/models")
    urllib.request.urlopen(request, timeout=5)
"""


def report(suite: Suite) -> dict[str, object]:
    return json.loads((suite.path / "r.json").read_text())  # type: ignore[no-any-return]


def test_unhandled_connections_are_refused_in_replay_and_reach_nothing(clients: Suite) -> None:
    clients.pytester.makepyfile(test_record=RECORD_ONE)
    clients.run("--promptcache=record").assert_outcomes(passed=1)
    before = clients.server.count()
    clients.pytester.makepyfile(test_unhandled=UNHANDLED)

    result = clients.run("--promptcache-report=r.json", "test_unhandled.py")
    result.assert_outcomes(failed=4)
    assert clients.server.count() == before
    port = clients.server.url.rsplit(":", 1)[1]
    result.stdout.fnmatch_lines(
        [
            f"promptcache: replay refused a connection to 127.0.0.1:{port} by urllib.request: the "
            f"recordings in {clients.cassettes} were made against 127.0.0.1:{port}.",
            f"promptcache: replay refused a connection to 127.0.0.1:{port} by test_unhandled: *",
            "promptcache: replay refused a connection to api.openai.com:443 by urllib.request: "
            "api.openai.com is an LLM provider (promptcache_guard_hosts).",
        ]
    )
    totals = report(clients)["totals"]
    assert isinstance(totals, dict)
    assert totals["refused"] == 4
    assert totals["live"] == 0


def test_the_guard_is_off_outside_replay_and_when_turned_off(clients: Suite) -> None:
    clients.pytester.makepyfile(test_record=RECORD_ONE, test_unhandled=UNHANDLED)
    clients.run("--promptcache=record", "test_record.py").assert_outcomes(passed=1)
    before = clients.server.count()
    # Record mode: the stdlib call goes out (and is not recorded: no adapter saw it).
    clients.run("--promptcache=record", "test_unhandled.py", "-k", "urllib").assert_outcomes(
        passed=1, deselected=3
    )
    assert clients.server.count() == before + 1
    clients.pytester.makeini("[pytest]\npromptcache_guard = off\n")
    clients.run("test_unhandled.py", "-k", "urllib or socket").assert_outcomes(passed=2, deselected=2)
    assert clients.server.count() == before + 3


def test_extra_guarded_hosts_and_bad_switch(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import socket

        def test_internal():
            socket.getaddrinfo("llm.internal.example", 443)
        """
    )
    clients.pytester.makeini("[pytest]\npromptcache_guard_hosts =\n    *.internal.example\n")
    result = clients.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*refused a connection to llm.internal.example:443*is an LLM provider*"])
    clients.pytester.makeini("[pytest]\npromptcache_guard = maybe\n")
    clients.run().stderr.fnmatch_lines(["*ini promptcache_guard: *'maybe'; write true or false*"])


def test_replay_needs_no_key_and_restores_the_environment(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    clients.pytester.makepyfile(
        """
        import anthropic, openai

        def test_clients_start():
            openai.OpenAI()
            anthropic.Anthropic()
        """
    )
    clients.run().assert_outcomes(passed=1)
    import os

    assert os.environ["OPENAI_API_KEY"] == ""
    assert "ANTHROPIC_API_KEY" not in os.environ
    clients.run("--promptcache=record").assert_outcomes(failed=1)  # record needs the real key
    clients.pytester.makeini("[pytest]\npromptcache_placeholder_keys = off\n")
    clients.run().assert_outcomes(failed=1)
