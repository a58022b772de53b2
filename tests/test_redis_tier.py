"""The shared tier end to end: two checkouts of one project (two cassette directories, two state
directories) that only a real Redis connects."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CLIENTS_CONFTEST, SUITES, Suite
from redis_server import RedisServer, checkout, module_redis, redis_server

from pytest_promptcache.settings import build_settings

__all__ = ["module_redis", "redis_server"]

DOCS = Path(__file__).resolve().parents[1] / "docs" / "ci"

APP = """
from conftest import ask

def test_summary(oai0):
    assert ask(oai0, "summarise the refund").choices[0].message.content == "echo: summarise the refund"

def test_stream(oai0):
    text = "".join(c.choices[0].delta.content or "" for c in ask(oai0, "stream it", stream=True) if c.choices)
    assert text == "echo: stream it"

def test_triage(oai0):
    assert ask(oai0, "triage the billing question").choices[0].message.content
"""


class Fleet:
    """Checkouts of one project in one pytester directory, each run as its own pytest session."""

    def __init__(
        self, suite: Suite, redis: RedisServer, monkeypatch: pytest.MonkeyPatch, ini: str = ""
    ) -> None:
        self.suite = suite
        self.redis = redis
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("PROMPTCACHE_SHARED", redis.url)
        self.checkouts: dict[str, Path] = {}
        for name in ("a", "b"):
            path = checkout(suite.path, name, ini)
            (path / "conftest.py").write_text(CLIENTS_CONFTEST)
            (path / "test_app.py").write_text(APP)
            self.checkouts[name] = path

    def run(self, name: str, *args: str) -> pytest.RunResult:
        path = self.checkouts[name]
        self.monkeypatch.setenv("PROMPTCACHE_MACHINE", f"machine-{name}")
        return self.suite.pytester.runpytest_inprocess(
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "-c",
            str(path / "pytest.ini"),
            "--rootdir",
            str(path),
            f"--promptcache-report={path / 'report.json'}",
            str(path),
            *args,
        )

    def report(self, name: str) -> dict[str, Any]:
        return json.loads((self.checkouts[name] / "report.json").read_text())  # type: ignore[no-any-return]

    def files(self, name: str) -> dict[str, str]:
        cassettes = self.checkouts[name] / "cassettes"
        return {p.stem: p.read_text() for p in sorted(cassettes.glob("*.json"))}


@pytest.fixture
def fleet(clients: Suite, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    return Fleet(clients, redis_server, monkeypatch)


@pytest.mark.slow
def test_a_recording_made_in_one_checkout_replays_in_another_and_lands_there_in_record_mode(
    fleet: Fleet,
) -> None:
    fleet.run("a", "--promptcache=record").assert_outcomes(passed=3)
    assert fleet.suite.server.count() == 3
    recorded = fleet.files("a")
    assert len(recorded) == 3
    assert fleet.redis.keys("promptcache:rec:*") == sorted(f"promptcache:rec:{k}" for k in recorded)
    # The values are the files' JSON documents, byte for byte.
    for key, text in recorded.items():
        assert fleet.redis.client().get(f"promptcache:rec:{key}") == text.encode()

    fleet.suite.server.stop()  # from here on, a live call could not succeed
    replayed = fleet.run("b")
    replayed.assert_outcomes(passed=3)
    assert fleet.files("b") == {}  # replay writes nothing
    shared = fleet.report("b")["shared"]
    assert shared["hits_by_tier"] == {"memory": 0, "cassettes": 0, "shared": 3}
    assert [s["key"] for s in shared["not_in_cassettes"]] == sorted(recorded)
    assert shared["recorded_by_machine"] == {"machine-a": sorted(recorded)}
    assert fleet.report("b")["totals"]["live"] == 0
    replayed.stdout.fnmatch_lines(
        [
            "shared tier redis://127.0.0.1:*/0 (machine machine-b): replayed from 0 memory, 0 cassettes, "
            "3 shared",
            "recordings used, by the machine that made them: machine-a: 3",
            "3 recordings served from the shared tier, not in cassettes/: run pytest --promptcache=record*",
        ]
    )

    copied = fleet.run("b", "--promptcache=record")
    copied.assert_outcomes(passed=3)
    assert fleet.files("b") == recorded  # the same documents, ready to commit
    assert [s["key"] for s in fleet.report("b")["shared"]["copied_to_cassettes"]] == sorted(recorded)
    copied.stdout.fnmatch_lines(["3 recordings copied from the shared tier into cassettes/: commit them"])

    fleet.redis.client().flushall()
    fleet.run("b").assert_outcomes(passed=3)  # from its own cassettes now
    assert fleet.report("b")["shared"]["hits_by_tier"] == {"memory": 0, "cassettes": 3, "shared": 0}


@pytest.mark.slow  # two pytest sessions
def test_lookups_go_memory_then_cassettes_then_redis(fleet: Fleet) -> None:
    fleet.run("a", "--promptcache=record").assert_outcomes(passed=3)
    # Checkout a has every recording on disk: Redis is not asked (an emptied Redis changes nothing).
    fleet.redis.client().flushall()
    (fleet.checkouts["a"] / "test_again.py").write_text(APP.replace("def test_", "def test_again_"))
    fleet.run("a").assert_outcomes(passed=6)
    assert fleet.report("a")["shared"]["hits_by_tier"] == {"memory": 3, "cassettes": 3, "shared": 0}
    assert fleet.redis.keys() == []


def test_without_the_option_nothing_reaches_redis_and_the_report_has_no_shared_part(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMPTCACHE_SHARED")
    fleet.run("a", "--promptcache=record").assert_outcomes(passed=3)
    assert fleet.redis.keys() == []
    assert fleet.report("a")["shared"] is None


@pytest.mark.slow  # two sessions of an async suite under blockbuster
def test_async_record_and_replay_through_redis_never_block_the_event_loop(
    suite: Suite, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis is a socket: every lookup, lock, pacing slot, spend and save through it runs off the loop
    (the async app's tests run under blockbuster, scanning every module)."""
    for source in (SUITES / "async_app").iterdir():
        if source.is_file():
            shutil.copy(source, suite.path / source.name)
    suite.pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "promptcache_record_rpm = 60000\npromptcache_record_tpm = 10000000\n"
    )
    monkeypatch.setenv("PROMPTCACHE_SHARED", redis_server.url)
    monkeypatch.setenv("PROMPTCACHE_RUN_ID", "async-run")
    recorded = suite.run("--promptcache=record", "--promptcache-budget=5", "--promptcache-report=r.json")
    recorded.assert_outcomes(passed=5)
    assert "BlockingError" not in recorded.stdout.str()
    assert redis_server.keys("promptcache:run:async-run:spend")
    shutil.rmtree(suite.cassettes)  # from here on, Redis is the only place the recordings are

    suite.server.stop()
    replayed = suite.run("--promptcache-report=r.json")
    replayed.assert_outcomes(passed=5)
    assert "BlockingError" not in replayed.stdout.str()
    shared = json.loads((suite.path / "r.json").read_text())["shared"]
    # Five distinct recordings, all from Redis (identical calls gathered at once may each fetch it).
    assert len(shared["not_in_cassettes"]) == 5
    assert shared["hits_by_tier"]["cassettes"] == 0
    assert shared["hits_by_tier"]["shared"] + shared["hits_by_tier"]["memory"] == 13


def test_the_ci_fleet_example_is_a_workflow_that_shares_one_redis() -> None:
    """docs/ci/fleet.yml, which the README shows: a Redis service container, shards that share it as
    separate machines would (own state directory and machine name, one run id), and a URL that the
    plugin accepts."""
    workflow = yaml.safe_load((DOCS / "fleet.yml").read_text())
    job = workflow["jobs"]["record"]
    redis = job["services"]["redis"]
    assert redis["image"].startswith("redis:")
    assert "6379:6379" in redis["ports"]
    assert "--health-cmd" in redis["options"]
    env = job["env"]
    assert env["PROMPTCACHE_RUN_ID"].startswith("${{ github.run_id }}")
    # As GitHub expands them: run ids and attempts are numbers, secrets are text.
    expanded = {name: re.sub(r"\$\{\{[^}]*\}\}", "12345", value) for name, value in env.items()}
    settings = build_settings(rootdir=Path("."), cli_mode=None, cli_dir=None, env=expanded, ini={})
    assert settings.shared is not None
    assert settings.shared.display == "redis://localhost:6379/0"
    assert settings.shared.run_id == "12345-12345"
    script = next(step["run"] for step in job["steps"] if "--promptcache=record" in step.get("run", ""))
    for needed in (
        'PROMPTCACHE_MACHINE="shard-$group"',
        "promptcache_state_dir=.promptcache-state-$group",
        "wait",
    ):
        assert needed in script
    assert any("promptcache verify" in step.get("run", "") for step in job["steps"])
    assert "pytest-promptcache[redis]" in next(
        s["run"] for s in job["steps"] if "pip install" in s.get("run", "")
    )
    readme = (DOCS.parents[1] / "README.md").read_text()
    assert "## CI fleets" in readme
    assert "docs/ci/fleet.yml" in readme


@pytest.mark.slow  # a TLS server of its own, and two pytest sessions
def test_rediss_with_a_password_works_and_shows_neither(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "tls-Secret-9"
    with RedisServer(password=password, tls=True) as server:
        monkeypatch.setenv("PROMPTCACHE_SHARED", server.url)
        recorded = fleet.run("a", "--promptcache=record")
        recorded.assert_outcomes(passed=3)
        assert len(server.keys("promptcache:rec:*")) == 3
        fleet.suite.server.stop()
        replayed = fleet.run("b", "-v")
        replayed.assert_outcomes(passed=3)
        shared = fleet.report("b")["shared"]
        assert shared["hits_by_tier"]["shared"] == 3
        assert shared["url"] == f"rediss://:***@127.0.0.1:{server.port}/0"
        for text in (recorded.stdout.str(), replayed.stdout.str(), json.dumps(fleet.report("b"))):
            assert password not in text
