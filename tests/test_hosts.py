"""Recordings made against one host:port replay against another when the user says the hosts are one
(a test server on a random port, staging and production): ini promptcache_host_aliases."""

from __future__ import annotations

import pytest
from conftest import Suite
from llm_server import LLMServer

ONE_CALL = """
from conftest import ask

def test_one(oai0):
    assert "across hosts" in ask(oai0, "across hosts").choices[0].message.content
"""
ALIASES = "[pytest]\npromptcache_host_aliases =\n    127.0.0.1:* = test-server\n"


@pytest.mark.slow
def test_an_alias_lets_recordings_replay_on_another_port(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients.pytester.makepyfile(ONE_CALL)
    clients.pytester.makeini(ALIASES)
    clients.run("--promptcache=record").assert_outcomes(passed=1)
    [recording] = clients.recordings().values()
    assert recording["request"]["host"] == "test-server"
    assert recording["meta"]["url"].startswith(clients.server.url)
    clients.server.stop()
    with LLMServer() as other:
        monkeypatch.setenv("LLM_URL", other.url)
        # The conftest reads LLM_URL at import: a fresh process sees the other port.
        clients.run(subprocess=True).assert_outcomes(passed=1)
        clients.pytester.makeini("[pytest]\n")
        clients.run(subprocess=True).stdout.fnmatch_lines(["*no recording for this request*"])
        assert other.count() == 0


def test_a_bad_alias_is_a_usage_error(clients: Suite) -> None:
    clients.pytester.makepyfile(ONE_CALL)
    clients.pytester.makeini("[pytest]\npromptcache_host_aliases =\n    127.0.0.1:*\n")
    clients.run().stderr.fnmatch_lines(
        ["*promptcache_host_aliases: '127.0.0.1:*' is not 'HOST*PORT*= NAME'*"]
    )
