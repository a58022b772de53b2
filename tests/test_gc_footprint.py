"""A test process serves most recordings once. Whatever a serve keeps alive, every garbage collection
walks from then on: objects kept per call made a 2,000-call replay run three times the young
collections and a full one (~53 ms, a sixth of the plugin's cost over a mock transport). A recording
served once now leaves only its call event behind (which the report needs)."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import httpx2
import pytest
from conftest import cache_session
from llm_server import LLMServer

from pytest_promptcache.clients import install, uninstall
from pytest_promptcache.session import CacheSession
from pytest_promptcache.store.served_cache import RACY_NS

CALLS = 200
TEST = "test_app.py::test_many"


def ask_all(cache: CacheSession, url: str) -> None:
    install(cache)
    try:
        cache.begin_test(TEST)
        with httpx2.Client() as client:
            for i in range(CALLS):
                body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": f"question {i}"}]}
                reply = client.post(f"{url}/v1/chat/completions", json=body)
                assert reply.status_code == 200
        assert len(cache.context.calls) == CALLS
        cache.end_test()
    finally:
        uninstall(cache)


def tracked() -> int:
    gc.collect()  # also lets go of the tuples and dicts that hold only strings, bytes and numbers
    return len(gc.get_objects())


@pytest.mark.slow
def test_a_recording_served_once_leaves_only_its_call_event(llm_server: LLMServer, tmp_path: Path) -> None:
    recorder = cache_session("record", tmp_path)
    ask_all(recorder, llm_server.url)
    recorder.close()
    time.sleep(RACY_NS / 1e9 + 0.2)  # the recordings' times old enough to be trusted to change
    # The first replay reads the files and keeps, in the state directory, their served forms and what
    # the test was served; the second preloads those before the test, as a suite's next run does.
    first = cache_session("replay", tmp_path)
    ask_all(first, llm_server.url)
    first.close()
    second = cache_session("replay", tmp_path)
    assert second.preload([TEST]) == CALLS
    before = tracked()
    ask_all(second, llm_server.url)
    grown = tracked() - before
    second.close()
    # Each call's event, and a few objects a session makes once (its client, the test's context).
    assert grown < CALLS + 50, f"{grown} more objects tracked after {CALLS} first serves"
