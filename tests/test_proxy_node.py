"""A Node service's LLM calls under pytest: ``tests/node/script.mjs`` uses the official ``openai`` npm
package (pinned by ``tests/node/package-lock.json``, installed by ``npm ci`` there, which ``.ci/run``
does) and runs as a subprocess pointed at the ``promptcache_proxy`` fixture through its environment.
Recorded, replayed offline, and a changed prompt fails the test with the miss diff.

Without Node or the installed package the tests are skipped, saying how to install it; CI sets
``PROMPTCACHE_REQUIRE_NODE=1``, which turns that skip into a failure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import FAKE_SECRETS, Suite

NODE_DIR = Path(__file__).parent / "node"


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").is_file():
        return f"the openai npm package is not installed: run `npm ci` in {NODE_DIR}"
    return None


@pytest.fixture
def node_suite(clients: Suite, monkeypatch: pytest.MonkeyPatch) -> Suite:
    missing = _missing()
    if missing is not None:
        if os.environ.get("PROMPTCACHE_REQUIRE_NODE") == "1":
            pytest.fail(f"PROMPTCACHE_REQUIRE_NODE=1, but {missing}")
        pytest.skip(missing)
    clients.pytester.makeini(f"[pytest]\npromptcache_upstreams =\n    openai={clients.server.url}/v1\n")
    clients.pytester.makepyfile(test_node=NODE_TESTS)
    monkeypatch.setenv("NODE_SCRIPT", str(NODE_DIR / "script.mjs"))
    monkeypatch.delenv("PROMPT", raising=False)
    return clients


NODE_TESTS = """
import json, os, subprocess

PROMPT = os.environ.get("PROMPT", "hello from node")

def node(proxy, kind):
    done = subprocess.run(["node", os.environ["NODE_SCRIPT"], kind, PROMPT], capture_output=True, text=True,
                          env={**os.environ, **proxy.env}, timeout=60)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)

def test_node_chat(promptcache_proxy):
    code, reply = node(promptcache_proxy, "chat")
    assert code == 0, reply
    assert reply["text"] == "echo: " + PROMPT
    assert reply["usage"]["completion_tokens"] == len(reply["text"].split())

def test_node_stream(promptcache_proxy):
    code, reply = node(promptcache_proxy, "stream")
    assert code == 0, reply
    assert reply["text"] == "echo: " + PROMPT
    assert reply["usage"]["completion_tokens"] > 0
"""


@pytest.mark.slow  # five Node processes importing the SDK, three pytest runs: ~7 s on 2 loaded cores
def test_the_openai_npm_package_records_replays_offline_and_fails_on_a_changed_prompt(
    node_suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = node_suite.run("--promptcache=record")
    recorded.assert_outcomes(passed=2)
    recorded.stdout.fnmatch_lines(["mode record: 2 LLM calls: 2 live (2 recorded)"])
    assert node_suite.server.count("/v1/chat/completions") == 2
    # The SDK's own request: its key went upstream, and its telemetry headers nowhere.
    sent = node_suite.server.requests[0].headers
    assert sent["authorization"] == f"Bearer {FAKE_SECRETS['OPENAI_API_KEY']}"
    assert sent["user-agent"].startswith("OpenAI/JS")
    text = node_suite.cassette_text()
    assert FAKE_SECRETS["OPENAI_API_KEY"] not in text
    assert "x-stainless" not in text
    tests = sorted(d["meta"]["test"] for d in node_suite.recordings().values())
    assert tests == ["test_node.py::test_node_chat", "test_node.py::test_node_stream"]

    node_suite.server.stop()
    replayed = node_suite.run()
    replayed.assert_outcomes(passed=2)
    replayed.stdout.fnmatch_lines(["mode replay: 2 LLM calls: 2 replayed"])

    monkeypatch.setenv("PROMPT", "hello from a changed node")
    missed = node_suite.run("-k", "chat")
    missed.assert_outcomes(failed=1, deselected=1)
    missed.stdout.fnmatch_lines(
        [
            "promptcache: no recording for this request (mode: replay)",
            "*recorded by test_node.py::test_node_chat)",
            '-        "content": "hello from node",',
            '+        "content": "hello from a changed node",',
            "  pytest --promptcache=record test_node.py::test_node_chat",
            # The Node SDK got the 404 with the message, and did not retry it.
            "The test then raised: AssertionError: *'status': 404*",
        ]
    )
    assert "no recording for this request" in missed.stdout.str().split("The test then raised")[1]
