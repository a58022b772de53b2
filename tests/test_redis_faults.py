"""Redis failing in every way a CI service can: not there at start, stopped mid-run, back again,
hanging, refusing the password. The session goes on with the local tiers, says so once, and no test
fails because of Redis."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
from typing import Any

import pytest
from conftest import Suite
from redis_server import RedisServer, module_redis, own_redis, redis_server

__all__ = ["module_redis", "own_redis", "redis_server"]

UNAVAILABLE = "promptcache: the shared tier redis://127.0.0.1:*/0 is unavailable (*); this session goes on*"

# Six tests; the third stops (or freezes) Redis halfway through the run.
MIDRUN = """
import os, signal
import redis
from conftest import ask

def test_0(oai0): assert ask(oai0, "before 0").choices
def test_1(oai0): assert ask(oai0, "before 1").choices

def test_2_redis_goes_away(oai0):
    assert ask(oai0, "before 2").choices
    action = os.environ["REDIS_ACTION"]
    if action == "shutdown":
        redis.Redis(port=int(os.environ["REDIS_PORT"]), retry=None).shutdown(nosave=True)
    else:
        os.kill(int(os.environ["REDIS_PID"]), signal.SIGSTOP)

def test_3(oai0): assert ask(oai0, "after 3").choices
def test_4(oai0): assert ask(oai0, "after 4").choices
def test_5(oai0): assert ask(oai0, "before 0").choices
"""


def report(suite: Suite) -> dict[str, Any]:
    return json.loads((suite.path / "r.json").read_text())  # type: ignore[no-any-return]


def test_redis_unreachable_at_start_one_warning_and_the_local_tiers_serve(
    clients: Suite, monkeypatch: pytest.MonkeyPatch, own_redis: RedisServer
) -> None:
    clients.pytester.makepyfile(
        "from conftest import ask\n"
        + "".join(f"def test_{i}(oai0):\n    assert ask(oai0, 'local {i}').choices\n" for i in range(3))
    )
    own_redis.stop()  # a port nobody listens on
    monkeypatch.setenv("PROMPTCACHE_SHARED", own_redis.url)
    recorded = clients.run("--promptcache=record", "--promptcache-report=r.json")
    recorded.assert_outcomes(passed=3)
    assert len(clients.recordings()) == 3
    recorded.stdout.fnmatch_lines([UNAVAILABLE])
    assert recorded.stdout.str().count("is unavailable") == 1
    assert len(report(clients)["shared"]["notices"]) == 1

    clients.server.stop()
    replayed = clients.run("--promptcache-report=r.json")
    replayed.assert_outcomes(passed=3)
    assert report(clients)["shared"]["hits_by_tier"] == {"memory": 0, "cassettes": 3, "shared": 0}
    replayed.stdout.fnmatch_lines([UNAVAILABLE])


@pytest.mark.parametrize(
    "action",
    ["shutdown", pytest.param("freeze", marks=pytest.mark.slow)],  # slow: each operation times out
)
def test_redis_lost_mid_run_the_session_finishes_on_the_local_tiers(
    clients: Suite, monkeypatch: pytest.MonkeyPatch, own_redis: RedisServer, action: str
) -> None:
    """Record mode: the first half records into Redis and the files; Redis stops (or hangs: every
    operation then times out) in the third test; the rest records into the files alone."""
    clients.pytester.makeini("[pytest]\npromptcache_shared_timeout = 0.5\n")
    clients.pytester.makepyfile(test_midrun=MIDRUN)
    monkeypatch.setenv("PROMPTCACHE_SHARED", own_redis.url)
    monkeypatch.setenv("REDIS_PORT", str(own_redis.port))
    monkeypatch.setenv("REDIS_ACTION", action)
    assert own_redis._proc is not None
    monkeypatch.setenv("REDIS_PID", str(own_redis._proc.pid))
    try:
        result = clients.run("--promptcache=record", "--promptcache-report=r.json")
    finally:
        if action == "freeze":
            os.kill(own_redis._proc.pid, signal.SIGCONT)
    result.assert_outcomes(passed=6)
    assert clients.server.count() == 5  # five distinct prompts, each recorded once
    assert len(clients.recordings()) == 5  # nothing recorded is lost
    result.stdout.fnmatch_lines([UNAVAILABLE])
    assert result.stdout.str().count("is unavailable") == 1
    notices = report(clients)["shared"]["notices"]
    assert len(notices) == 1
    assert ("TimeoutError" in notices[0]) == (action == "freeze")

    if action == "shutdown":
        # Back again: the next session uses Redis, and it holds what was recorded before it went away.
        own_redis.start()
    clients.server.stop()
    replayed = clients.run("--promptcache-report=r.json")
    replayed.assert_outcomes(passed=6)


@pytest.mark.slow  # several pytest sessions in a row
def test_redis_back_mid_run_the_session_stays_local(
    clients: Suite, monkeypatch: pytest.MonkeyPatch, own_redis: RedisServer
) -> None:
    """Half shared, half not would be a session nobody can reason about: once gone, Redis stays gone
    for the session, even if it comes back."""
    clients.pytester.makepyfile(
        """
        import os, shlex, subprocess
        import redis
        from conftest import ask

        def test_0(oai0):
            assert ask(oai0, "first").choices
            redis.Redis(port=int(os.environ["REDIS_PORT"]), retry=None).shutdown(nosave=True)

        def test_1(oai0):
            assert ask(oai0, "second").choices
            subprocess.run(shlex.split(os.environ["RESTART"]), check=True)

        def test_2(oai0):
            assert ask(oai0, "third").choices
        """
    )
    monkeypatch.setenv("PROMPTCACHE_SHARED", own_redis.url)
    monkeypatch.setenv("REDIS_PORT", str(own_redis.port))
    restart = [own_redis.executable, "--port", str(own_redis.port), "--bind", "127.0.0.1", "--save", "''"]
    monkeypatch.setenv("RESTART", " ".join([*restart, "--appendonly", "no", "--daemonize", "yes"]))
    result = clients.run("--promptcache=record", "--promptcache-report=r.json")
    try:
        result.assert_outcomes(passed=3)
        assert len(clients.recordings()) == 3
        assert own_redis.client().ping()  # it is back,
        assert own_redis.keys("promptcache:rec:*") == []  # and nothing was written to it after it left
        assert result.stdout.str().count("is unavailable") == 1
    finally:
        own_redis.shutdown()


@pytest.mark.slow  # several pytest sessions in a row
def test_a_wrong_password_is_one_warning_and_never_printed(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "s3cret-Pa55word"
    reports = ("--promptcache-report=r.json", "--promptcache-report-md=r.md")

    def output(result: pytest.RunResult) -> str:
        files = (clients.path / "r.json").read_text() + (clients.path / "r.md").read_text()
        return result.stdout.str() + result.stderr.str() + files + clients.cassette_text()

    with RedisServer(password=password) as server:
        clients.pytester.makepyfile(
            "from conftest import ask\ndef test_a(oai0):\n    assert ask(oai0, 'pw').choices\n"
        )
        monkeypatch.setenv("PROMPTCACHE_SHARED", server.url.replace(password, "wrong-Pa55word"))
        wrong = clients.run("--promptcache=record", *reports)
        wrong.assert_outcomes(passed=1)
        wrong.stdout.fnmatch_lines(
            ["promptcache: the shared tier redis://:***@127.0.0.1:*/0 is unavailable*"]
        )
        assert "Pa55word" not in output(wrong)

        monkeypatch.setenv("PROMPTCACHE_SHARED", server.url)
        shutil.rmtree(clients.cassettes)
        right = clients.run("--promptcache=record", "-v", *reports)
        right.assert_outcomes(passed=1)
        assert len(server.keys("promptcache:rec:*")) == 1
        assert "Pa55word" not in output(right)
        assert json.loads((clients.path / "r.json").read_text())["shared"]["url"].startswith("redis://:***@")


def _prompt(recording: dict[str, Any]) -> str:
    return str(recording["request"]["body"]["messages"][0]["content"])


@pytest.mark.slow  # several pytest sessions in a row
def test_bad_entries_in_redis_are_ignored_like_bad_files(
    clients: Suite, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    """Redis content is untrusted: garbage, a pickle, another key's recording, an oversized value or a
    value of the wrong type at a recording's key is never served; replay misses, record re-records."""
    clients.pytester.makeini("[pytest]\npromptcache_max_recording_size = 64KiB\n")
    prompts = ["garbage", "pickle", "other key", "oversized", "wrong type"]
    clients.pytester.makepyfile(
        "from conftest import ask\n"
        + "".join(
            f"def test_{i}(oai0):\n    assert ask(oai0, {p!r}).choices\n" for i, p in enumerate(prompts)
        )
    )
    monkeypatch.setenv("PROMPTCACHE_SHARED", redis_server.url)
    clients.run("--promptcache=record").assert_outcomes(passed=5)
    by_prompt = {_prompt(rec): key for key, rec in clients.recordings().items()}
    keys = [by_prompt[p] for p in prompts]
    shutil.rmtree(clients.cassettes)
    client = redis_server.client()
    client.set(f"promptcache:rec:{keys[0]}", b"\x00\xff not json")
    client.set(f"promptcache:rec:{keys[1]}", pickle.dumps({"schema_version": 2}))
    client.set(f"promptcache:rec:{keys[2]}", client.get(f"promptcache:rec:{keys[3]}") or b"")
    client.set(f"promptcache:rec:{keys[3]}", b"{" + b" " * 70_000 + b"}")
    client.delete(f"promptcache:rec:{keys[4]}")
    client.hset(f"promptcache:rec:{keys[4]}", "a", "b")

    clients.server.reset()
    replayed = clients.run("--promptcache-report=r.json")
    replayed.assert_outcomes(failed=5)
    assert clients.server.count() == 0
    misses = [line for line in replayed.stdout.lines if line.startswith("promptcache: no recording for this")]
    assert len(misses) == 5
    notices = report(clients)["shared"]["notices"]
    reasons = ["not UTF-8 text", "not UTF-8 text", "not the key in its Redis key", "larger than", "refused"]
    assert len(notices) == len(reasons)
    for notice, key, reason in zip(notices, keys, reasons, strict=True):
        assert f"ignored the shared tier's entry promptcache:rec:{key}: " in notice
        assert reason in notice

    clients.run("--promptcache=record").assert_outcomes(passed=5)
    assert clients.server.count() == 5
    for key in keys:  # replaced by good recordings
        assert json.loads(client.get(f"promptcache:rec:{key}") or b"")["key"] == key


@pytest.mark.slow  # pytest -n 2 in a subprocess
def test_under_xdist_the_workers_warnings_are_one(
    clients: Suite, monkeypatch: pytest.MonkeyPatch, own_redis: RedisServer
) -> None:
    clients.pytester.makepyfile(
        "from conftest import ask\n"
        + "".join(f"def test_{i}(oai0):\n    assert ask(oai0, 'xdist {i}').choices\n" for i in range(4))
    )
    own_redis.stop()
    monkeypatch.setenv("PROMPTCACHE_SHARED", own_redis.url)
    result = clients.run("-n", "2", "--promptcache=record", "--promptcache-report=r.json", subprocess=True)
    result.assert_outcomes(passed=4)
    assert result.stdout.str().count("is unavailable") == 1
    assert len(report(clients)["shared"]["notices"]) == 1
    assert len(clients.recordings()) == 4
