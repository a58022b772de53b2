"""Parallel and concurrent recording: xdist, single flight, crash safety, pacing and retries."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import Suite

from pytest_promptcache.store.files import read_recording

SLOW = "gpt-4.1-mini+fault-slow"


def parallel_suite() -> str:
    """60 tests over 20 prompts (3 tests each, spread over groups so different workers take them), one
    test firing 8 identical requests from threads and one firing 8 with asyncio.gather."""
    lines = [
        "import asyncio, os, threading",
        "import openai, pytest",
        "from conftest import ask",
        f"SLOW = {SLOW!r}",
    ]
    for prompt in range(20):
        for copy in range(3):
            lines += [
                f"@pytest.mark.xdist_group('g{copy}')",
                f"def test_p{prompt}_c{copy}(oai0):",
                f"    assert ask(oai0, 'prompt {prompt}', model=SLOW).choices[0].message.content",
            ]
    lines += [
        "def test_threads(oai0):",
        "    ids = []",
        "    def call():",
        "        ids.append(ask(oai0, 'from eight threads', model=SLOW).id)",
        "    threads = [threading.Thread(target=call) for _ in range(8)]",
        "    [t.start() for t in threads]",
        "    [t.join() for t in threads]",
        "    assert len(ids) == 8 and len(set(ids)) == 1",
        "def test_gather():",
        "    async def go():",
        "        client = openai.AsyncOpenAI(base_url=os.environ['LLM_URL'] + '/v1', max_retries=0)",
        "        msgs = [{'role': 'user', 'content': 'from eight tasks'}]",
        "        return await asyncio.gather(*[client.chat.completions.create(model=SLOW, messages=msgs)",
        "                                      for _ in range(8)])",
        "    replies = asyncio.run(go())",
        "    assert len({r.id for r in replies}) == 1",
    ]
    return "\n".join(lines) + "\n"


def report(suite: Suite, name: str = "r.json") -> dict[str, Any]:
    return json.loads((suite.path / name).read_text())  # type: ignore[no-any-return]


@pytest.mark.slow  # pytest -n in subprocesses: seconds per run to start the workers and their SDK
def test_xdist_records_each_distinct_request_once_and_replays_with_the_server_down(clients: Suite) -> None:
    clients.pytester.makepyfile(test_parallel=parallel_suite())
    recorded = clients.run(
        "-n",
        "4",
        "--dist",
        "loadgroup",
        "--promptcache=record",
        "--promptcache-report=r.json",
        subprocess=True,
    )
    recorded.assert_outcomes(passed=62)
    assert clients.server.count("/chat/completions") == 22
    totals = report(clients)["totals"]
    assert (totals["calls"], totals["live"], totals["recorded"], totals["replayed"]) == (76, 22, 22, 54)
    recorded.stdout.fnmatch_lines(["mode record: 76 LLM calls: 54 replayed, 22 live (22 recorded)"])

    clients.server.stop()
    replayed = clients.run("-n", "4", "--promptcache-report=r.json", subprocess=True)
    replayed.assert_outcomes(passed=62)
    totals = report(clients)["totals"]
    assert (totals["calls"], totals["replayed"], totals["live"]) == (76, 76, 0)


@pytest.mark.slow  # pytest -n in subprocesses: seconds per run to start the workers and their SDK
def test_xdist_report_equals_the_serial_report(clients: Suite) -> None:
    clients.pytester.makepyfile(test_parallel=parallel_suite().replace("fault-slow", "x"))
    clients.run("--promptcache=record").assert_outcomes(passed=62)
    clients.run("-n", "3", "--promptcache-report=parallel.json", subprocess=True).assert_outcomes(passed=62)
    clients.run("-p", "no:xdist", "--promptcache-report=serial.json").assert_outcomes(passed=62)
    assert report(clients, "parallel.json") == report(clients, "serial.json")
    assert report(clients, "serial.json")["totals"]["replayed"] == 76


def test_leader_failure_reaches_waiters_in_its_process_and_nothing_is_recorded(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import threading, openai
        from conftest import ask

        def test_same_failure(oai0):
            errors = []
            def call():
                try:
                    ask(oai0, "doomed", model="fault-500+fault-slow")
                except openai.InternalServerError as exc:
                    errors.append(exc.status_code)
            threads = [threading.Thread(target=call) for _ in range(6)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            assert errors == [500] * 6
        """
    )
    result = clients.run("--promptcache=record", "--promptcache-report=r.json")
    result.assert_outcomes(passed=1)
    assert clients.server.count() == 1
    assert clients.recordings() == {}
    totals = report(clients)["totals"]
    assert (totals["calls"], totals["live"], totals["errors"], totals["misses"]) == (6, 1, 1, 5)


def test_two_identical_streams_open_in_one_thread_do_not_deadlock(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_interleaved(oai0):
            first = ask(oai0, "same stream", stream=True)
            second = ask(oai0, "same stream", stream=True)
            a = [c for c in first]
            b = [c for c in second]
            assert len(a) == len(b) > 2
        """
    )
    result = clients.run("--promptcache=record", "-p", "no:faulthandler", "-o", "faulthandler_timeout=20")
    result.assert_outcomes(passed=1)
    assert clients.server.count() == 2
    assert len(clients.recordings()) == 1
    clients.run().assert_outcomes(passed=1)


@pytest.mark.slow  # pytest -n in subprocesses: seconds per run to start the workers and their SDK
def test_killed_workers_leave_valid_files_and_no_stale_lock(clients: Suite) -> None:
    """SIGKILL a recording xdist run at random moments, many times; every file stays valid and the next
    run is not blocked by anything the dead processes held."""
    clients.pytester.makepyfile(
        test_many="from conftest import ask\n"
        + "\n".join(
            f"def test_{i}(oai0):\n    list(ask(oai0, 'kill me {i % 25}', stream=True, n={1 + i % 2}))\n"
            for i in range(50)
        )
    )
    clients.server.chunk_delay = 0.002
    rng = random.Random(7)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(5):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "-n",
                "2",
                "-p",
                "no:cacheprovider",
                "--promptcache=rewrite",
                "-q",
            ],
            cwd=clients.path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Kill while the workers record: once requests arrive, after a random share of the run.
        before, deadline = clients.server.count(), time.monotonic() + 60
        while clients.server.count() == before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.6))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for path in clients.cassettes.glob("*.json"):
            read_recording(path)  # raises on a partial or corrupt file
    assert clients.recordings(), "no run got as far as recording anything; kill later"
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "--promptcache=record", "-q"],
        cwd=clients.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout[-2000:]
    assert not list(clients.cassettes.glob(".*.tmp")), "temp files of killed writers were not swept"
    assert len(clients.recordings()) == 50


def test_memory_tier_reads_a_file_once_and_is_bounded(clients: Suite) -> None:
    clients.pytester.makeini("[pytest]\npromptcache_memory_size = 1\n")
    clients.pytester.makepyfile(
        """
        import pathlib
        from conftest import ask

        def test_record(oai0):
            ask(oai0, "one"); ask(oai0, "two")

        def test_served_from_memory_after_the_file_is_gone(oai0):
            first = ask(oai0, "one").id
            for path in pathlib.Path("cassettes").glob("*.json"):
                path.unlink()
            assert ask(oai0, "one").id == first   # still in memory: the file was read once

        def test_memory_is_bounded(oai0):
            ask(oai0, "two")                      # evicts "one" (size 1); its file is gone: a miss
        """
    )
    clients.run("--promptcache=record", "-k", "test_record").assert_outcomes(passed=1, deselected=2)
    result = clients.run("-k", "not test_record")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*_ test_memory_is_bounded _*", "promptcache: no recording for this request*"]
    )


def test_retries_turn_a_transient_429_into_a_recording(clients: Suite) -> None:
    clients.pytester.makeini("[pytest]\npromptcache_record_retries = 2\n")
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_flaky(oai0):
            assert ask(oai0, "flaky", model="fault-flaky").choices[0].message.content == "echo: flaky"
        """
    )
    result = clients.run("--promptcache=record")
    result.assert_outcomes(passed=1)
    assert clients.server.count() == 2
    assert len(clients.recordings()) == 1


def test_pacing_spaces_live_requests_per_host(clients: Suite) -> None:
    clients.pytester.makeini("[pytest]\npromptcache_record_rpm = 300\n")  # one request every 0.2 s
    clients.pytester.makepyfile(
        """
        import json, pathlib, time
        import pytest
        from conftest import ask

        @pytest.fixture
        def waits(monkeypatch):
            # A virtual clock under the pacing schedule (time.time) and its waits (time.sleep): the waits
            # come out exact, and the test does not spend them.
            now = [time.time()]
            waits = []
            def sleep(seconds):
                waits.append(seconds)
                now[0] += seconds
            monkeypatch.setattr(time, "time", lambda: now[0])
            monkeypatch.setattr(time, "sleep", sleep)
            yield waits
            pathlib.Path("waits.json").write_text(json.dumps(waits))

        def test_five(oai0, waits):
            for i in range(5):
                ask(oai0, f"paced {i}")
        """
    )
    clients.run("--promptcache=record").assert_outcomes(passed=1)
    assert clients.server.count() == 5
    waits = json.loads((clients.path / "waits.json").read_text())
    assert waits == pytest.approx([0.2] * 4, abs=1e-3)  # the first request goes at once
    # Replay is never paced: recordings are served at once.
    clients.server.reset()
    clients.run().assert_outcomes(passed=1)
    assert clients.server.count() == 0
    assert json.loads((clients.path / "waits.json").read_text()) == []


@pytest.mark.parametrize("mode", ["record", "rewrite"])
def test_rewrite_and_record_pay_for_each_request_once_per_session(clients: Suite, mode: str) -> None:
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_a(oai0):
            ask(oai0, "shared prompt")

        def test_b(oai0):
            ask(oai0, "shared prompt")
        """
    )
    clients.run(f"--promptcache={mode}").assert_outcomes(passed=2)
    assert clients.server.count() == 1
