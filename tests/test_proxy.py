"""The recording proxy (``promptcache_proxy``, ``promptcache serve``) for calls the session cannot intercept:
curl and a client with its own socket code, each run as a subprocess pointed at the fixture's URLs,
recorded, replayed offline, and failing with the miss diff when the prompt changed; recordings shared with
in-process clients both ways; streams relayed as they arrive; and nothing forwarded that should not be."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLIENTS_CONFTEST, FAKE_SECRETS, Suite
from llm_server import LLMServer

from pytest_promptcache.cli import main
from pytest_promptcache.proxy.server import ProxyServer
from pytest_promptcache.proxy.upstreams import parse_upstreams
from pytest_promptcache.session import CacheSession
from pytest_promptcache.settings import build_settings

SOCKET_CLIENT = Path(__file__).parent / "proxy_socket_client.py"

PROXY_CONFTEST = (
    CLIENTS_CONFTEST
    + """
import json, os, subprocess, sys
from pathlib import Path

PROMPT = os.environ.get("PROMPT", "hello through the proxy")

def chat_body(prompt, **extra):
    request = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": prompt}]}
    return json.dumps({**request, **extra})

def curl(proxy, path, body, base="openai"):
    # --compressed: live answers come gzipped (the fake server's x-test-gzip), recordings stay plain.
    command = ["curl", "-sS", "--compressed", "--max-time", "30", "-w", "\\n%{http_code}",
               proxy.base_urls[base] + path, "-H", "x-test-gzip: 1", "-H", "content-type: application/json",
               "-H", "authorization: Bearer " + os.environ["OPENAI_API_KEY"], "-d", body]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **proxy.env},
                         timeout=60, check=True).stdout
    text, _, status = out.rpartition("\\n")
    return int(status), text

def socket_client(proxy, body, *flags):
    command = [sys.executable, os.environ["SOCKET_CLIENT"], proxy.base_urls["openai"] + "/chat/completions",
               body, *flags]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **proxy.env},
                         timeout=60, check=True).stdout
    return json.loads(out)

def seen(name, value):
    with Path(os.environ["SEEN_FILE"]).open("a") as fh:
        fh.write(json.dumps({"test": name, "seen": value}) + "\\n")
"""
)

CURL_TESTS = """
import json
from conftest import PROMPT, chat_body, curl

def test_curl_chat(promptcache_proxy):
    status, text = curl(promptcache_proxy, "/chat/completions", chat_body(PROMPT))
    assert status == 200, text
    assert json.loads(text)["choices"][0]["message"]["content"] == "echo: " + PROMPT

def test_curl_stream(promptcache_proxy):
    body = chat_body(PROMPT, stream=True, stream_options={"include_usage": True})
    status, text = curl(promptcache_proxy, "/chat/completions", body)
    assert status == 200, text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    deltas = [e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]]
    assert "".join(deltas) == "echo: " + PROMPT
    assert events[-1]["usage"]["completion_tokens"] > 0
    assert text.rstrip().endswith("data: [DONE]")
"""

SOCKET_TESTS = """
from conftest import PROMPT, chat_body, seen, socket_client

def test_socket_chat(promptcache_proxy):
    reply = socket_client(promptcache_proxy, chat_body(PROMPT))
    assert reply["status"] == 200, reply
    assert reply["body"]["choices"][0]["message"]["content"] == "echo: " + PROMPT

def test_socket_stream(promptcache_proxy):
    reply = socket_client(promptcache_proxy, chat_body(PROMPT + ", streamed", stream=True))
    assert reply["status"] == 200, reply
    assert reply["chunks"][-1] == "data: [DONE]\\n\\n"
    seen("stream", reply["chunks"])
"""


@pytest.fixture
def proxied(clients: Suite, monkeypatch: pytest.MonkeyPatch) -> Suite:
    """A suite whose proxy forwards openai, anthropic and gemini calls to the loopback server."""
    url = clients.server.url
    clients.pytester.makeconftest(PROXY_CONFTEST)
    clients.pytester.makeini(
        f"[pytest]\npromptcache_upstreams =\n    openai={url}/v1\n    anthropic={url}\n    gemini={url}\n"
    )
    monkeypatch.setenv("SOCKET_CLIENT", str(SOCKET_CLIENT))
    monkeypatch.delenv("PROMPT", raising=False)
    return clients


def chat_response_headers(by_test: dict[str, Any]) -> dict[str, str]:
    return by_test["test_curl.py::test_curl_chat"]["response"]["headers"]  # type: ignore[no-any-return]


def report(suite: Suite) -> dict[str, Any]:
    return json.loads((suite.path / "r.json").read_text())  # type: ignore[no-any-return]


def test_curl_records_then_replays_offline_and_a_changed_prompt_fails_with_the_diff(
    proxied: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxied.pytester.makepyfile(test_curl=CURL_TESTS)
    recorded = proxied.run("--promptcache=record")
    recorded.assert_outcomes(passed=2)
    recorded.stdout.fnmatch_lines(["mode record: 2 LLM calls: 2 live (2 recorded)"])
    assert proxied.server.count() == 2
    # The client's credential reached the provider, and no file holds it.
    assert proxied.server.requests[0].headers["authorization"] == f"Bearer {FAKE_SECRETS['OPENAI_API_KEY']}"
    assert FAKE_SECRETS["OPENAI_API_KEY"] not in proxied.cassette_text()
    port = proxied.server.port
    by_test = {data["meta"]["test"]: data for data in proxied.recordings().values()}
    assert set(by_test) == {"test_curl.py::test_curl_chat", "test_curl.py::test_curl_stream"}
    # Keyed as the request sent upstream, as an in-process call to the same URL is.
    chat = by_test["test_curl.py::test_curl_chat"]["request"]
    assert (chat["host"], chat["path"]) == (f"127.0.0.1:{port}", "/v1/chat/completions")
    assert by_test["test_curl.py::test_curl_stream"]["response"]["events"][-1] == {"text": "[DONE]"}
    assert "content-encoding" not in chat_response_headers(by_test)
    # curl asked for zstd too, which a recorder could not decode: not asked of the upstream.
    assert proxied.server.requests[0].headers["accept-encoding"] == "deflate, gzip, br"

    proxied.server.stop()
    replayed = proxied.run("--promptcache-report=r.json")
    replayed.assert_outcomes(passed=2)
    replayed.stdout.fnmatch_lines(["mode replay: 2 LLM calls: 2 replayed"])
    by_test_report = report(proxied)["by_test"]
    assert {name: b["replayed"] for name, b in by_test_report.items()} == {
        "test_curl.py::test_curl_chat": 1,
        "test_curl.py::test_curl_stream": 1,
    }

    monkeypatch.setenv("PROMPT", "hello through the changed proxy")
    missed = proxied.run("-k", "chat")
    missed.assert_outcomes(failed=1, deselected=1)
    missed.stdout.fnmatch_lines(
        [
            "promptcache: no recording for this request (mode: replay)",
            f"  request:   POST http://127.0.0.1:{port}/v1/chat/completions",
            "*recorded by test_curl.py::test_curl_chat)",
            '-        "content": "hello through the proxy",',
            '+        "content": "hello through the changed proxy",',
            "  pytest --promptcache=record test_curl.py::test_curl_chat",
            "The test then raised: AssertionError: *promptcache_miss*",
        ]
    )


@pytest.mark.slow  # three pytest runs, each starting interpreters for the client
def test_a_client_with_its_own_socket_code_records_and_replays_each_event_as_a_chunk(
    proxied: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxied.pytester.makepyfile(test_socket=SOCKET_TESTS)
    proxied.run("--promptcache=record").assert_outcomes(passed=2)
    events = next(d for d in proxied.recordings().values() if "events" in d["response"])["response"]["events"]
    proxied.server.stop()
    replayed = proxied.run()
    replayed.assert_outcomes(passed=2)
    replayed.stdout.fnmatch_lines(["mode replay: 2 LLM calls: 2 replayed"])
    chunks = proxied.seen()["stream"]
    # The replayed stream arrives as it was recorded: one event per HTTP chunk, in order.
    assert len(chunks) == len(events)
    assert all(chunk.startswith("data: ") and chunk.endswith("\n\n") for chunk in chunks)

    monkeypatch.setenv("PROMPT", "hello through the proxy again")
    missed = proxied.run()
    missed.assert_outcomes(failed=2)
    missed.stdout.fnmatch_lines(['+        "content": "hello through the proxy again, streamed",'])


IN_PROCESS = """
import os
from conftest import ask

def test_in_process(oai0):
    prompt = os.environ["PROMPT"]
    assert ask(oai0, prompt).choices[0].message.content == "echo: " + prompt
"""

VIA_PROXY = """
import json, os
from conftest import chat_body, curl

def test_via_proxy(promptcache_proxy):
    prompt = os.environ["PROMPT"]
    status, text = curl(promptcache_proxy, "/chat/completions", chat_body(prompt))
    assert status == 200, text
    assert json.loads(text)["choices"][0]["message"]["content"] == "echo: " + prompt
"""


@pytest.mark.slow
def test_a_recording_made_in_process_replays_through_the_proxy_and_the_reverse(
    proxied: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxied.pytester.makepyfile(test_in_process=IN_PROCESS, test_via_proxy=VIA_PROXY)
    monkeypatch.setenv("PROMPT", "made in process")
    proxied.run("--promptcache=record", "test_in_process.py").assert_outcomes(passed=1)
    monkeypatch.setenv("PROMPT", "made through the proxy")
    proxied.run("--promptcache=record", "test_via_proxy.py").assert_outcomes(passed=1)
    assert proxied.server.count() == 2
    proxied.server.stop()

    monkeypatch.setenv("PROMPT", "made in process")
    through_proxy = proxied.run("test_via_proxy.py")
    through_proxy.assert_outcomes(passed=1)
    through_proxy.stdout.fnmatch_lines(["mode replay: 1 LLM call: 1 replayed"])
    monkeypatch.setenv("PROMPT", "made through the proxy")
    in_process = proxied.run("test_in_process.py")
    in_process.assert_outcomes(passed=1)
    in_process.stdout.fnmatch_lines(["mode replay: 1 LLM call: 1 replayed"])
    assert len(proxied.recordings()) == 2


IN_PROCESS_CLIENT_OF_THE_PROXY = """
import openai
from conftest import ask

def test_sdk_pointed_at_the_proxy(promptcache_proxy, promptcache):
    client = openai.OpenAI(base_url=promptcache_proxy.base_urls["openai"], max_retries=0)
    assert ask(client, "in-process client, proxy URL").choices[0].message.content.startswith("echo: ")
    assert len(promptcache.calls) == 1
"""


@pytest.mark.slow  # two pytest runs through the SDK
def test_an_in_process_client_of_the_proxy_goes_through_it_not_around_it(proxied: Suite) -> None:
    """The adapters leave requests to the proxy's own paths alone, and the socket guard lets them connect:
    the proxy keys the call as sent upstream, so it replays whatever port the proxy gets next time."""
    proxied.pytester.makepyfile(test_client=IN_PROCESS_CLIENT_OF_THE_PROXY)
    proxied.run("--promptcache=record").assert_outcomes(passed=1)
    (data,) = proxied.recordings().values()
    assert data["request"]["host"] == f"127.0.0.1:{proxied.server.port}"
    assert data["meta"]["test"] == "test_client.py::test_sdk_pointed_at_the_proxy"
    proxied.server.stop()
    replayed = proxied.run()
    replayed.assert_outcomes(passed=1)
    replayed.stdout.fnmatch_lines(["mode replay: 1 LLM call: 1 replayed"])


LEAVES_EARLY = """
from conftest import chat_body, socket_client

def test_leaves_after_the_first_event(promptcache_proxy):
    body = chat_body("a long story", stream=True).replace("4.1-mini", "4.1-mini+fault-hang-after-first")
    reply = socket_client(promptcache_proxy, body, "--leave-after-first")
    assert reply["status"] == 200
    assert len(reply["chunks"]) == 1
"""


def test_a_stream_reaches_the_client_while_it_is_recorded(proxied: Suite) -> None:
    """The server sends one event, then holds the rest until its client leaves: the client gets that event
    only if the proxy relays it as it arrives, and the server sees the proxy leave only if the proxy
    noticed its own client hang up."""
    proxied.server.chunk_delay = 0.2  # the server's hold: 50 chunk delays, reached only if this fails
    proxied.pytester.makepyfile(test_leaves=LEAVES_EARLY)
    result = proxied.run("--promptcache=record")
    result.assert_outcomes(passed=1)
    # A record run that saved none of its calls fails, saying why.
    result.stdout.fnmatch_lines(
        [
            "mode record: 1 LLM call: 1 live",
            "nothing was saved*",
            "*the client closed the stream before it ended",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    (request,) = proxied.server.requests
    request.finished.wait()  # bounded by the server's hold
    assert (request.events_sent, request.client_left) == (1, True)
    assert proxied.recordings() == {}


PROVIDERS = """
import json
from conftest import curl

def test_anthropic(promptcache_proxy):
    body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 50,
                       "messages": [{"role": "user", "content": "hi claude"}]})
    status, text = curl(promptcache_proxy, "/v1/messages", body, base="anthropic")
    assert status == 200, text
    assert json.loads(text)["content"][0]["text"] == "echo: hi claude"

def test_gemini(promptcache_proxy):
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi gemini"}]}]})
    path = "/v1beta/models/gemini-2.5-flash:generateContent?key=AIzaSyTESTKEYabcdefghijklmnopqrstuvwx12"
    status, text = curl(promptcache_proxy, path, body, base="gemini")
    assert status == 200, text
    assert json.loads(text)["candidates"][0]["content"]["parts"][0]["text"] == "echo: hi gemini"
"""


@pytest.mark.slow  # two pytest runs of four curl calls
def test_anthropic_and_gemini_through_their_own_mounts(proxied: Suite) -> None:
    proxied.pytester.makepyfile(test_providers=PROVIDERS)
    proxied.run("--promptcache=record").assert_outcomes(passed=2)
    paths = sorted(d["request"]["path"] for d in proxied.recordings().values())
    assert paths == ["/v1/messages", "/v1beta/models/gemini-2.5-flash:generateContent"]
    assert "AIzaSyTESTKEY" not in proxied.cassette_text()
    proxied.server.stop()
    proxied.run("--promptcache-report=r.json").assert_outcomes(passed=2)
    assert set(report(proxied)["by_model"]) == {"claude-sonnet-4-6", "gemini-2.5-flash"}


OTHER_REQUESTS = """
from conftest import curl

def test_models_list(promptcache_proxy):
    status, text = curl(promptcache_proxy, "/models", "")
    assert status == 404
"""


@pytest.mark.slow  # three pytest runs
def test_other_requests_pass_through_outside_replay_and_are_refused_in_replay(proxied: Suite) -> None:
    proxied.pytester.makepyfile(test_other=OTHER_REQUESTS, test_curl=CURL_TESTS)
    proxied.run("--promptcache=record", "test_curl.py", "-k", "chat").assert_outcomes(passed=1, deselected=1)
    proxied.run("--promptcache=record", "test_other.py").assert_outcomes(passed=1)
    assert proxied.server.count("/v1/models") == 1  # forwarded, untouched, not recorded
    assert len(proxied.recordings()) == 1

    refused = proxied.run("test_other.py", "--promptcache-report=r.json")
    refused.assert_outcomes(failed=1)
    port = proxied.server.port
    refused.stdout.fnmatch_lines(
        [
            f"promptcache serve: replay does not forward POST http://127.0.0.1:{port}/v1/models: it is "
            "not an LLM endpoint*recordings in * were made against 127.0.0.1:*",
        ]
    )
    assert proxied.server.count("/v1/models") == 1
    assert report(proxied)["totals"]["refused"] == 1


def test_a_bad_upstream_line_is_a_usage_error(clients: Suite) -> None:
    clients.pytester.makeini("[pytest]\npromptcache_upstreams =\n    openai=ftp://example.com\n")
    result = clients.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*ini promptcache_upstreams: 'openai=ftp://example.com' is not NAME=URL "
            "(e.g. openai=http://127.0.0.1:8080/v1): the URL must start with http:// or https://*"
        ]
    )


# -- promptcache serve, standalone ---------------------------------------------------------------------------


class Served:
    """``promptcache serve`` in a subprocess, as a developer's shell or docker compose runs it."""

    def __init__(self, directory: Path, *args: str) -> None:
        command = [sys.executable, "-m", "pytest_promptcache", "--dir", str(directory), "serve", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        fd, text = self.proc.stdout.fileno(), b""
        # Raw reads: a buffered reader would hold lines that select() then never reports.
        while b"\nstop with" not in text:
            readable, _, _ = select.select([fd], [], [], 30)
            data = os.read(fd, 65536) if readable else b""
            assert data, f"promptcache serve printed no banner: {text!r}"
            text += data
        self.banner = text.decode().splitlines()
        self.url = next(line.split()[-1] for line in self.banner if line.startswith("listening on "))

    def stop(self, sig: signal.Signals) -> tuple[int, str]:
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, out.decode()


@pytest.fixture
def served(tmp_path: Path, llm_server: LLMServer) -> Iterator[list[Served]]:
    running: list[Served] = []
    yield running
    for serve in running:
        if serve.proc.poll() is None:
            serve.proc.kill()
            serve.proc.wait(timeout=30)


def _post(url: str, prompt: str) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": prompt}]})
    command = ["curl", "-sS", "--max-time", "30", "-w", "\n%{http_code}", url, "-d", body]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    text, _, status = out.rpartition("\n")
    return int(status), json.loads(text)


@pytest.mark.slow  # two fresh interpreters running the command
def test_promptcache_serve_standalone_prints_the_report_when_stopped(
    tmp_path: Path, llm_server: LLMServer, served: list[Served]
) -> None:
    cassettes = tmp_path / "cassettes"
    upstream = f"openai={llm_server.url}/v1"
    recording = Served(cassettes, "--mode", "record", "--upstream", upstream)
    served.append(recording)
    assert f"  OPENAI_BASE_URL={recording.url}/openai/v1" in recording.banner
    status, body = _post(f"{recording.url}/openai/v1/chat/completions", "standalone")
    assert (status, body["choices"][0]["message"]["content"]) == (200, "echo: standalone")
    code, out = recording.stop(signal.SIGINT)
    assert code == 0, out
    assert "mode record: 1 LLM call: 1 live (1 recorded)" in out.splitlines()
    assert len(list(cassettes.glob("*.json"))) == 1

    llm_server.stop()
    replay = Served(cassettes, "--upstream", upstream, "--report", str(tmp_path / "r.json"), "-v")
    served.append(replay)
    assert _post(f"{replay.url}/openai/v1/chat/completions", "standalone")[0] == 200
    status, body = _post(f"{replay.url}/openai/v1/chat/completions", "standalone, changed")
    assert status == 404
    assert body["error"]["message"].startswith("promptcache: no recording for this request (mode: replay)")
    code, out = replay.stop(signal.SIGTERM)
    assert code == 1, out  # a call missed: a CI job notices
    assert "mode replay: 2 LLM calls: 1 replayed, 1 missed" in out.splitlines()
    assert "gpt-4.1-mini" in out  # -v: the per-model table
    totals = json.loads((tmp_path / "r.json").read_text())["totals"]
    assert (totals["replayed"], totals["misses"]) == (1, 1)


def test_promptcache_serve_refuses_bad_arguments_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def serve(*args: str) -> tuple[int, str]:
        code = main(["--dir", str(tmp_path), "serve", *args])
        return code, capsys.readouterr().err

    assert serve("--upstream", "openai") == (
        2,
        "promptcache: --upstream: 'openai' is not NAME=URL (e.g. openai=http://127.0.0.1:8080/v1)\n",
    )
    code, err = serve("--mode", "replayy")
    assert (code, err.splitlines()[0]) == (
        2,
        "promptcache: --mode: unknown mode 'replayy'; valid modes are replay, record, rewrite, off",
    )
    monkeypatch.setenv("PROMPTCACHE_MODE", "bogus")
    code, err = serve()
    assert (code, err.splitlines()[0]) == (
        2,
        "promptcache: PROMPTCACHE_MODE: unknown mode 'bogus'; valid modes are replay, record, rewrite, off",
    )
    monkeypatch.delenv("PROMPTCACHE_MODE")
    assert serve("--port", "70000") == (
        2,
        "promptcache: --port: 70000 is not a port (0 to 65535; 0 picks a free one)\n",
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = serve("--port", str(port))
    assert code == 2
    assert err == f"promptcache: cannot listen on 127.0.0.1:{port}: Address already in use\n"


# -- the listener, driven directly: no pytest session, the same engine -----------------------------------


@pytest.fixture
def proxy(tmp_path: Path, llm_server: LLMServer) -> Iterator[ProxyServer]:
    ini = {"promptcache_max_recording_size": "4KiB", "promptcache_state_dir": str(tmp_path / "state")}
    settings = build_settings(rootdir=tmp_path, cli_mode="record", cli_dir=None, env={}, ini=ini)
    upstreams = parse_upstreams([f"openai={llm_server.url}/v1"], "test")
    with ProxyServer(CacheSession(settings, env={}), upstreams, max_connections=3) as running:
        yield running


def exchange(proxy: ProxyServer, head: str, body: bytes = b"", *, hang_up: bool = False) -> tuple[int, bytes]:
    status, _, data = exchange_full(proxy, head, body, hang_up=hang_up)
    return status, data


def exchange_full(
    proxy: ProxyServer, head: str, body: bytes = b"", *, hang_up: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """One request on a raw socket, as written; the status, headers and body of the answer (to the end of
    the connection when it has no length). ``hang_up``: the client sends nothing more after it."""
    with socket.create_connection(proxy.address, timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        if hang_up:
            sock.shutdown(socket.SHUT_WR)
        reader = sock.makefile("rb")
        status = int(reader.readline().split()[1])
        headers: dict[str, str] = {}
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length")
        return status, headers, reader.read(int(length)) if length is not None else reader.read()


def message(body: bytes) -> str:
    return json.loads(body)["error"]["message"]  # type: ignore[no-any-return]


CHAT = json.dumps({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "sent in chunks"}]})


def test_the_listener_is_on_loopback_and_forwards_only_to_its_upstreams(
    proxy: ProxyServer, llm_server: LLMServer
) -> None:
    assert proxy.address[0] == "127.0.0.1"
    status, body = exchange(proxy, "POST /nope/v1/chat/completions HTTP/1.1\nHost: 127.0.0.1\n")
    assert (status, message(body)) == (
        404,
        "promptcache serve: no upstream named 'nope' (configured: /anthropic/, /gemini/, /openai/); add one "
        "with --upstream NAME=URL or ini promptcache_upstreams",
    )
    status, body = exchange(proxy, f"GET {llm_server.url}/v1/models HTTP/1.1\nHost: 127.0.0.1\n")
    assert (status, "not absolute URLs" in message(body)) == (404, True)
    status, body = exchange(proxy, "CONNECT api.openai.com:443 HTTP/1.1\nHost: api.openai.com:443\n")
    assert (status, "not a forward proxy" in message(body)) == (405, True)
    status, body = exchange(proxy, "POST /openai/v1/chat/completions HTTP/1.1\nHost: rebound.example\n")
    assert (status, message(body)) == (
        403,
        "promptcache serve: refused a request for host 'rebound.example': it answers 127.0.0.1 and localhost",
    )
    head = "POST /openai/v1/chat/completions HTTP/1.1\nHost: localhost\nOrigin: https://page.example\n"
    assert exchange(proxy, head)[0] == 403
    assert llm_server.count() == 0


def test_request_bodies_are_read_by_length_or_chunks_within_the_bound(
    proxy: ProxyServer, llm_server: LLMServer
) -> None:
    url = "/openai/v1/chat/completions"
    half = len(CHAT) // 2
    first, rest = CHAT[:half], CHAT[half:]
    chunked = f"{len(first):x};ext=1\r\n{first}\r\n{len(rest):x}\r\n{rest}\r\n0\r\nx-trailer: 1\r\n\r\n"
    status, body = exchange(
        proxy, f"POST {url} HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked\n", chunked.encode()
    )
    assert (status, json.loads(body)["choices"][0]["message"]["content"]) == (200, "echo: sent in chunks")
    # The same request with a length: the same key, served from the recording just made.
    status, _ = exchange(
        proxy, f"POST {url} HTTP/1.1\nHost: 127.0.0.1\nContent-Length: {len(CHAT)}\n", CHAT.encode()
    )
    assert status == 200
    assert llm_server.count() == 1

    refused = {
        "Content-Length: 5000\n": (413, "the request body (5000 bytes) is larger than 4096 bytes"),
        "Content-Length: 12x\n": (400, "content-length '12x' is not a number"),
        "Transfer-Encoding: gzip\n": (
            501,
            "transfer-encoding 'gzip' is not supported; send chunked or a length",
        ),
    }
    for header, (code, text) in refused.items():
        status, body = exchange(proxy, f"POST {url} HTTP/1.1\nHost: 127.0.0.1\n{header}")
        assert (status, message(body)) == (code, f"promptcache serve: {text}")
    chunked_head = f"POST {url} HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked\n"
    for chunks, text in (
        (b"zz\r\n", "a chunk of the request body has no valid size"),
        (b"1001\r\n" + b"x" * 4097 + b"\r\n0\r\n\r\n", "the request body is larger than 4096 bytes"),
        (b"5\r\nabc", "the request body ended inside a chunk"),
        (b"0\r\n" + b"x: 1\r\n" * 101, "too many trailer lines after the request body"),
    ):
        status, body = exchange(proxy, chunked_head, chunks, hang_up=True)
        assert message(body) == f"promptcache serve: {text}"
    head = f"POST {url} HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 10\n"
    status, body = exchange(proxy, head, b"short", hang_up=True)
    assert (status, message(body)) == (400, "promptcache serve: the request body ended early")
    assert llm_server.count() == 1


def test_connections_are_bounded(proxy: ProxyServer) -> None:
    idle = [socket.create_connection(proxy.address, timeout=30) for _ in range(3)]
    try:
        status, body = exchange(proxy, "GET /openai/v1/models HTTP/1.1\nHost: 127.0.0.1\n")
        assert (status, message(body)) == (
            503,
            "promptcache serve: 3 connections are open already; try again",
        )
    finally:
        for sock in idle:
            sock.close()


def chat(prompt: str, **extra: Any) -> str:
    return json.dumps({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": prompt}], **extra})


def post(path: str, body: str, version: str = "HTTP/1.1") -> tuple[str, bytes]:
    head = f"POST {path} {version}\nHost: 127.0.0.1\nContent-Type: application/json\n"
    head += f"Content-Length: {len(body)}\n"
    return head, body.encode()


def test_requests_http_server_cannot_parse_and_clients_that_reset_are_answered_or_dropped(
    proxy: ProxyServer,
) -> None:
    assert exchange(proxy, "GET / / / HTTP/1.1\n")[0] == 400  # http.server's own answers
    assert exchange(proxy, "BREW /openai/v1/chat/completions HTTP/1.1\nHost: 127.0.0.1\n")[0] == 501
    with socket.create_connection(proxy.address, timeout=30) as sock:
        sock.sendall(b"POST /openai/v1/chat/comp")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    status, body = exchange(proxy, *post("/openai/v1/chat/completions", chat("still here")))
    assert (status, json.loads(body)["choices"][0]["message"]["content"]) == (200, "echo: still here")


def test_an_unreachable_upstream_is_a_502_the_client_may_retry(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = build_settings(rootdir=tmp_path, cli_mode="record", cli_dir=None, env={}, ini={})
    lines = [f"down=http://127.0.0.1:{port}", f"secure=https://127.0.0.1:{port}"]
    session = CacheSession(settings, env={})
    with ProxyServer(session, parse_upstreams(lines, "test")) as running:
        for name in ("down", "secure"):
            status, headers, body = exchange_full(running, *post(f"/{name}/v1/chat/completions", chat("hi")))
            assert (status, "x-should-retry" in headers) == (502, False)
            assert message(body).startswith(f"promptcache serve: could not reach {name} at ")
            assert "ConnectionRefusedError" in message(body)
    engine = session.started_engine
    assert engine is not None
    assert [r.outcome.value for r in engine.ledger.records()] == ["error", "error"]
    assert not (tmp_path / "cassettes").exists()


def test_a_cut_upstream_body_reaches_the_client_cut_and_is_not_saved(
    proxy: ProxyServer, llm_server: LLMServer, tmp_path: Path
) -> None:
    conn = http.client.HTTPConnection(*proxy.address, timeout=30)
    for extra in ({}, {"stream": True}):
        conn.request(
            "POST", "/openai/v1/chat/completions", chat("cut me", **extra).replace("mini", "mini+fault-cut")
        )
        reply = conn.getresponse()
        assert reply.status == 200
        with pytest.raises(http.client.IncompleteRead):
            reply.read()
        conn.close()
    conn.request("HEAD", "/openai/v1/chat/completions")
    reply = conn.getresponse()
    assert (reply.status, reply.read()) == (501, b"")  # the fake server has no HEAD; relayed as it came
    assert llm_server.count() == 2  # (its http.server refused the HEAD before counting it)
    assert not (tmp_path / "cassettes").exists()


def test_an_http_1_0_client_gets_a_stream_ended_by_closing_the_connection(
    proxy: ProxyServer, llm_server: LLMServer
) -> None:
    answers = [
        exchange_full(proxy, *post("/openai/v1/chat/completions", chat("old", stream=True), "HTTP/1.0"))
        for _ in range(2)
    ]  # live, then replayed
    for status, headers, body in answers:
        assert (status, "transfer-encoding" in headers) == (200, False)
        assert body.endswith(b"data: [DONE]\n\n")
    assert llm_server.count() == 1


def test_replay_forwards_other_requests_to_hosts_neither_provider_nor_recorded(
    tmp_path: Path, llm_server: LLMServer
) -> None:
    settings = build_settings(rootdir=tmp_path, cli_mode="replay", cli_dir=None, env={}, ini={})
    upstreams = parse_upstreams([f"openai={llm_server.url}/v1"], "test")
    with ProxyServer(CacheSession(settings, env={}), upstreams) as running:
        status, body = exchange(running, "GET /openai/v1/models HTTP/1.1\nHost: 127.0.0.1\n")
    assert (status, json.loads(body)["error"]["message"]) == (404, "No route for GET /v1/models")
    assert llm_server.count() == 1


def test_a_kept_upstream_connection_the_upstream_closed_is_replaced(tmp_path: Path) -> None:
    first = LLMServer().start()
    settings = build_settings(rootdir=tmp_path, cli_mode="record", cli_dir=None, env={}, ini={})
    upstreams = parse_upstreams([f"openai={first.url}/v1"], "test")
    with ProxyServer(CacheSession(settings, env={}), upstreams) as running:
        conn = http.client.HTTPConnection(*running.address, timeout=30)  # one connection, one handler

        def ask(prompt: str) -> int:
            conn.request("POST", "/openai/v1/chat/completions", chat(prompt))
            reply = conn.getresponse()
            reply.read()
            return reply.status

        assert (ask("one"), ask("two")) == (200, 200)
        port = first.port
        first.stop()  # closes the connection the proxy kept
        with LLMServer(port=port) as second:
            assert ask("three") == 200
            assert second.count() == 1
        conn.close()
    assert first.count() == 2


def test_stopping_lets_a_call_in_progress_finish(tmp_path: Path, llm_server: LLMServer) -> None:
    arrived, release = threading.Event(), threading.Event()

    def hold(seconds: float) -> None:
        arrived.set()
        release.wait(30)

    llm_server.sleep = hold  # the server holds a fault-slow call until the test lets it go
    settings = build_settings(rootdir=tmp_path, cli_mode="record", cli_dir=None, env={}, ini={})
    upstreams = parse_upstreams([f"openai={llm_server.url}/v1"], "test")
    running = ProxyServer(CacheSession(settings, env={}), upstreams, grace=30).start()
    answers: list[int] = []
    body = chat("slow").replace("mini", "mini+fault-slow")
    request = post("/openai/v1/chat/completions", body)
    client = threading.Thread(target=lambda: answers.append(exchange(running, *request)[0]))
    client.start()
    assert arrived.wait(30)
    port = running.port
    stopper = threading.Thread(target=running.stop)
    stopper.start()
    for _ in range(10_000):  # until the listener is closed: stop() then waits for the call in progress
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except OSError:
            break
    release.set()
    stopper.join(30)
    client.join(30)
    assert answers == [200]
    running.stop()  # once stopped, stopping again does nothing
    with pytest.raises(RuntimeError, match="the proxy is not running"):
        _ = running.url
    assert len(list((tmp_path / "cassettes").glob("*.json"))) == 1


def test_promptcache_serve_with_no_calls_and_a_report_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = signal.getsignal(signal.SIGTERM)

    def terminate_once_listening() -> None:
        for _ in range(3000):  # until serve has its handler in place: SIGTERM would end pytest itself
            if signal.getsignal(signal.SIGTERM) is not before:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=terminate_once_listening)
    killer.start()
    code = main(["--dir", str(tmp_path), "serve", "--report", str(tmp_path)])
    killer.join(30)
    out = capsys.readouterr().out
    assert code == 2
    assert out.splitlines()[-2:] == [
        "no LLM calls",
        f"promptcache: could not write the JSON report to {tmp_path}: Is a directory",
    ]
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_failure_inside_the_proxy_is_an_answer_not_a_hang_up(tmp_path: Path, llm_server: LLMServer) -> None:
    """The state directory made writable by others after start-up: recording refuses to use it. The client
    gets a 500 saying so, the running test the same problem, and the upstream nothing."""
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    ini = {"promptcache_state_dir": str(state)}
    settings = build_settings(rootdir=tmp_path, cli_mode="record", cli_dir=None, env={}, ini=ini)
    session = CacheSession(settings, env={})
    upstreams = parse_upstreams([f"openai={llm_server.url}/v1"], "test")
    with ProxyServer(session, upstreams) as running:
        status, body = exchange(running, *post("/openai/v1/chat/completions", chat("unsafe")))
    assert status == 500
    assert message(body).startswith("promptcache serve: the proxy failed: UnsafeStateDir(")
    assert "is writable by others (mode 0777)" in message(body)
    assert session.context.take_problems() == [message(body)]
    assert llm_server.count() == 0
