"""The cold path end to end: the call path imported before the first call (when the suite has already paid
for pydantic, and only then), and recordings served from their files as written, in every form."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Suite

from pytest_promptcache.store.served_cache import RACY_NS

PRELOADED = """
import sys

def test_preloaded(oai0):
    # Collected and about to run: the engine is imported, the first call will not pay for it.
    assert "pytest_promptcache.engine" in sys.modules
    assert "pytest_promptcache.clients.httpx_send" in sys.modules
"""


@pytest.mark.slow
def test_the_call_path_is_imported_before_the_first_call_once_an_sdk_is(clients: Suite) -> None:
    clients.pytester.makepyfile(PRELOADED)
    result = clients.run(subprocess=True)
    result.assert_outcomes(passed=1)


def preload_in_a_fresh_interpreter(imports: str) -> list[str]:
    code = f"{imports}\nimport pytest_promptcache.clients as c\nprint(__import__('json').dumps(c.preload()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_preload_imports_the_path_of_each_imported_library_and_only_after_pydantic() -> None:
    assert preload_in_a_fresh_interpreter("import httpx2") == []  # no pydantic yet: maybe no LLM call
    assert preload_in_a_fresh_interpreter("import pydantic") == []  # no client library: nothing to call
    assert preload_in_a_fresh_interpreter("import pydantic, httpx, urllib3") == [
        "pytest_promptcache.clients.httpx_send",
        "pytest_promptcache.clients.urllib3_send",
    ]


CALLS = """
import json, os
from conftest import ask

def test_calls(oai0):
    out = {}
    out["json"] = ask(oai0, "cold one").choices[0].message.content
    stream = ask(oai0, "cold two", stream=True)
    out["stream"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    out["again"] = ask(oai0, "cold one").choices[0].message.content
    with open(os.environ["OUT_FILE"], "a") as fh:
        fh.write(json.dumps(out) + "\\n")
"""


def answers(clients: Suite, *args: str) -> dict[str, str]:
    result = clients.run(*args)
    result.assert_outcomes(passed=1)
    lines = (clients.path / "out.jsonl").read_text().splitlines()
    answer: dict[str, str] = json.loads(lines[-1])
    return answer


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda data: data, id="as written"),
        pytest.param(
            lambda data: {**data, "schema_version": 1, "meta": {**data["meta"], "usage": None}},
            id="schema 1, no usage",
        ),
        pytest.param(
            lambda data: {**data, "meta": {**data["meta"], "recorded_at": "2026-01-15 10:30:05+00:00"}},
            id="a date pydantic reads and the fast reading does not",
        ),
    ],
)
def test_recordings_replay_what_was_recorded_whatever_their_form(
    clients: Suite, monkeypatch: pytest.MonkeyPatch, rewrite: Callable[[Any], Any]
) -> None:
    monkeypatch.setenv("OUT_FILE", str(clients.path / "out.jsonl"))
    clients.pytester.makepyfile(CALLS)
    live = answers(clients, "--promptcache=record")
    assert clients.server.count() == 2
    for path in clients.cassettes.glob("*.json"):
        data = json.loads(path.read_text())
        assert data["schema_version"] == 2
        path.write_text(json.dumps(rewrite(data), indent=1))
    assert answers(clients) == live
    assert clients.server.count() == 2  # replayed, not called
    assert live["json"] == live["again"]
    assert live["stream"]


@pytest.mark.slow
def test_later_sessions_serve_from_the_state_directory_and_never_a_stale_answer(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUT_FILE", str(clients.path / "out.jsonl"))
    clients.pytester.makepyfile(CALLS)
    state = clients.path / "state"
    option = ("-o", f"promptcache_state_dir={state}")
    live = answers(clients, "--promptcache=record", *option)
    time.sleep(RACY_NS / 1e9 + 0.2)  # the recordings' times old enough to be trusted to change
    assert answers(clients, *option) == live
    [pack] = (state / "served").glob("*.pack")
    written = pack.stat().st_mtime_ns
    assert answers(clients, *option) == live  # served from the kept forms
    assert pack.stat().st_mtime_ns == written  # nothing new to keep: not written again
    # Edited in place (the same inode, maybe the same mtime): the edit is what the next session serves.
    for path in clients.cassettes.glob("*.json"):
        data = json.loads(path.read_text())
        body = data["response"].get("body")
        if body is not None:
            body["choices"][0]["message"]["content"] = "edited by hand"
            with open(path, "r+") as fh:
                fh.truncate(0)
                fh.write(json.dumps(data, indent=1))
    edited = answers(clients, *option)
    assert edited == {**live, "json": "edited by hand", "again": "edited by hand"}
    assert clients.server.count() == 2  # replayed, never called


ASYNC_CALLS = """
import asyncio, json, os
import httpx2

def test_async_calls(monkeypatch):
    # Every hop of the plugin's off the event loop, counted: a call served on the loop makes none.
    hops = []
    real = asyncio.to_thread
    async def counted(func, *args, **kwargs):
        hops.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)
    monkeypatch.setattr(asyncio, "to_thread", counted)

    async def main():
        answers = []
        async with httpx2.AsyncClient(base_url=os.environ["LLM_URL"]) as client:
            for text in ("async one", "async two", "async one"):
                body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": text}]}
                auth = {"authorization": "Bearer sk-proj-ASYNCabcdefghijklmnopqrstuvwxyz0123"}
                response = await client.post("/v1/chat/completions", json=body, headers=auth)
                answers.append(response.json()["choices"][0]["message"]["content"])
        return answers

    answers = asyncio.run(main())
    with open(os.environ["OUT_FILE"], "a") as fh:
        fh.write(json.dumps({"answers": answers, "hops": hops}) + "\\n")
"""


@pytest.mark.slow
def test_what_a_test_served_last_time_is_served_on_the_event_loop_from_its_first_call(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recording's first serve needs the disk, so an async client's goes through a worker thread;
    once a session has kept what each test served, the next one loads it before the first test, and
    the same test's calls are all served on the event loop."""
    monkeypatch.setenv("OUT_FILE", str(suite.path / "out.jsonl"))
    suite.pytester.makepyfile(ASYNC_CALLS)
    option = ("-o", f"promptcache_state_dir={suite.path / 'state'}")

    def run(*args: str) -> dict[str, Any]:
        suite.run(*args, *option).assert_outcomes(passed=1)
        last: dict[str, Any] = json.loads((suite.path / "out.jsonl").read_text().splitlines()[-1])
        return last

    live = run("--promptcache=record")
    time.sleep(RACY_NS / 1e9 + 0.2)  # the recordings' times old enough to be trusted to change
    first = run()
    assert first["answers"] == live["answers"]
    assert first["hops"]  # read from the files, off the loop
    again = run()
    assert again == {"answers": live["answers"], "hops": []}
    assert suite.server.count() == 2  # replayed, never called
