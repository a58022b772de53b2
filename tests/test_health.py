"""Keeping cassettes healthy: expiry, unused recordings and pruning, matching rules, similar matching,
schema evolution."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Suite

DEMO_CASSETTES = Path(__file__).parent / "data" / "v1-cassettes"

TWO_TESTS = """
from conftest import ask

def test_a(oai0):
    ask(oai0, "alpha")

def test_b(oai0):
    ask(oai0, "beta")
"""


def age_recordings(suite: Suite, days: int) -> None:
    for path in suite.cassettes.glob("*.json"):
        data = json.loads(path.read_text())
        old = datetime.now(UTC) - timedelta(days=days)
        data["meta"]["recorded_at"] = old.isoformat().replace("+00:00", "Z")
        path.write_text(json.dumps(data, indent=2))


def report(suite: Suite, name: str = "r.json") -> dict[str, Any]:
    return json.loads((suite.path / name).read_text())  # type: ignore[no-any-return]


# -- expiry ---------------------------------------------------------------------------------------------


def test_stale_recording_warns_in_replay(clients: Suite) -> None:
    clients.pytester.makepyfile(TWO_TESTS)
    clients.run("--promptcache=record").assert_outcomes(passed=2)
    age_recordings(clients, 40)
    clients.server.stop()
    result = clients.run("--promptcache-max-age=30d", "--promptcache-report=r.json", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "2 stale recordings served (older than max-age): refresh them with --promptcache=rewrite, or "
            "promptcache_on_expiry = rerecord and --promptcache=record",
            "stale: * recorded *, used by test_*::test_a",
        ]
    )
    assert len(report(clients)["stale_recordings"]) == 2
    # Younger than max-age: nothing is stale.
    clients.run("--promptcache-max-age=6w").stdout.no_fnmatch_line("*stale recordings*")


def test_stale_recording_fails_with_fail(clients: Suite) -> None:
    clients.pytester.makepyfile(TWO_TESTS)
    clients.run("--promptcache=record").assert_outcomes(passed=2)
    age_recordings(clients, 40)
    clients.pytester.makeini("[pytest]\npromptcache_max_age = 30d\npromptcache_on_expiry = fail\n")
    result = clients.run()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "promptcache: the recording for this request is stale (mode: replay)",
            f"  recording: {clients.cassettes}/*.json",
            "  recorded:  * UTC, 40 days ago, by test_*::test_a",
            "  max-age:   30d (promptcache_on_expiry = fail)",
            "To refresh it, run with the API reachable and its key set:",
            "  pytest --promptcache=rewrite test_*::test_a",
        ]
    )
    assert clients.server.count() == 2  # only the first recording run went live


@pytest.mark.slow
def test_stale_recording_is_rerecorded_in_record_mode(clients: Suite) -> None:
    clients.pytester.makepyfile(TWO_TESTS)
    clients.run("--promptcache=record").assert_outcomes(passed=2)
    age_recordings(clients, 40)
    clients.pytester.makeini("[pytest]\npromptcache_max_age = 30d\npromptcache_on_expiry = rerecord\n")
    clients.run("--promptcache=record").assert_outcomes(passed=2)
    assert clients.server.count() == 4
    fresh = [datetime.fromisoformat(d["meta"]["recorded_at"]) for d in clients.recordings().values()]
    assert all(datetime.now(UTC) - when < timedelta(hours=1) for when in fresh)
    # In replay, rerecord only warns.
    age_recordings(clients, 40)
    result = clients.run()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["2 stale recordings served*"])


def test_bad_max_age_is_a_usage_error(clients: Suite) -> None:
    clients.pytester.makepyfile(TWO_TESTS)
    result = clients.run("--promptcache-max-age=30")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'30' is not an age; write a number and a unit: 12h, 30d or 2w"])


# -- unused recordings and pruning ---------------------------------------------------------------------


def test_full_run_lists_unused_recordings_and_prune_deletes_exactly_them(clients: Suite) -> None:
    clients.pytester.makepyfile(test_suite=TWO_TESTS)
    clients.run("--promptcache=record").assert_outcomes(passed=2)
    keys = {d["meta"]["test"].rsplit("::", 1)[1]: k for k, d in clients.recordings().items()}
    # The user removes test_b.
    clients.pytester.makepyfile(test_suite=TWO_TESTS.split("def test_b", maxsplit=1)[0])

    listed = clients.run("--promptcache-report=r.json")
    listed.assert_outcomes(passed=1)
    listed.stdout.fnmatch_lines(
        ["1 recording unused by this run of the whole suite: --promptcache-prune deletes it"]
    )
    data = report(clients)
    assert data["unused_recordings"] == [keys["test_b"]]
    assert data["unused_recordings_complete"] is True

    refused = clients.run("-k", "test_a", "--promptcache-prune", "--promptcache-report=partial.json")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stdout.fnmatch_lines(
        ["--promptcache-prune refused, nothing was deleted: -k 'test_a' selected a subset*"]
    )
    assert set(clients.recordings()) == set(keys.values())
    partial = report(clients, "partial.json")
    assert partial["unused_recordings"] == []
    assert partial["unused_recordings_complete"] is False

    pruned = clients.run("--promptcache-prune")
    assert pruned.ret == pytest.ExitCode.OK
    pruned.stdout.fnmatch_lines(
        ["pruned 1 unused recording (--promptcache-prune):", f"  deleted {keys['test_b']}.json"]
    )
    assert set(clients.recordings()) == {keys["test_a"]}


@pytest.mark.parametrize(
    ("args", "extra", "reason"),
    [
        (["test_suite.py::test_a"], "", "it ran only 'test_suite.py::test_a', not the whole suite"),
        (["test_suite.py"], "", "it ran only 'test_suite.py', not the whole suite"),
        (["-m", "slow"], "", "-m 'slow' selected a subset"),
        ([], "import pytest\n@pytest.mark.skip\ndef test_skipped():\n    pass\n", "1 test was skipped"),
        ([], "def test_failing():\n    assert False\n", "1 test failed or errored"),
        pytest.param(
            ["-n", "2"],
            "def test_failing():\n    assert False\n",
            "1 test failed or errored",
            marks=pytest.mark.slow,  # an xdist run in a subprocess
            id="xdist-failed",
        ),
        (["--promptcache=off"], "", "mode off uses no recordings"),
    ],
)
def test_prune_refuses_whenever_the_run_was_partial(
    clients: Suite, args: list[str], extra: str, reason: str
) -> None:
    clients.pytester.makepyfile(test_suite=TWO_TESTS)
    clients.run("--promptcache=record").assert_outcomes(passed=2)
    clients.pytester.makepyfile(test_suite=TWO_TESTS.split("def test_b", maxsplit=1)[0] + extra)
    before = clients.cassette_text()
    result = clients.run(*args, "--promptcache-prune", subprocess="-n" in args)
    result.stdout.fnmatch_lines([f"--promptcache-prune refused, nothing was deleted: *{reason}*"])
    assert clients.cassette_text() == before


# -- matching rules ------------------------------------------------------------------------------------

DATED = """
import datetime, os, uuid
from conftest import ask

def test_dated(oai0):
    today = os.environ.get("FAKE_TODAY") or datetime.date.today().isoformat()
    ask(oai0, f"Today is {today}. Request {uuid.uuid4()}: summarise the news.",
        metadata={"trace": str(uuid.uuid4())}, user="u-" + uuid.uuid4().hex[:6])
"""


def test_normalisers_let_todays_date_and_a_fresh_uuid_replay_another_day(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients.pytester.makepyfile(DATED)
    clients.pytester.makeini(
        "[pytest]\npromptcache_normalize =\n    iso-date\n    uuid\n"
        "promptcache_ignore_fields =\n    user\n    metadata.trace\n"
    )
    clients.run("--promptcache=record").assert_outcomes(passed=1)
    (data,) = clients.recordings().values()
    assert data["request"]["body"]["messages"][0]["content"] == (
        "Today is <DATE>. Request <UUID>: summarise the news."
    )
    assert "user" not in data["request"]["body"]
    assert data["request"]["body"]["metadata"] == {}
    clients.server.stop()
    monkeypatch.setenv("FAKE_TODAY", (datetime.now(UTC).date() + timedelta(days=1)).isoformat())
    clients.run().assert_outcomes(passed=1)

    # Without the normalisers the same test misses, and the diff shows the normalised recording.
    clients.pytester.makeini("[pytest]\npromptcache_ignore_fields =\n    user\n    metadata.trace\n")
    missed = clients.run()
    missed.assert_outcomes(failed=1)
    missed.stdout.fnmatch_lines(['-*"content": "Today is <DATE>. Request <UUID>: summarise the news.",'])


def test_marker_adds_rules_for_one_test(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import uuid, pytest
        from conftest import ask

        @pytest.mark.promptcache(normalize=[r"ticket-\\w+ => ticket-N"], ignore_fields=["messages[*].name"])
        def test_ticket(oai0):
            ask(oai0, f"close ticket-{uuid.uuid4().hex[:8]}")
        """
    )
    clients.run("--promptcache=record").assert_outcomes(passed=1)
    clients.server.stop()
    clients.run().assert_outcomes(passed=1)
    (data,) = clients.recordings().values()
    assert data["request"]["body"]["messages"][0]["content"] == "close ticket-N"


def test_canonical_request_hook_can_change_anything(clients: Suite) -> None:
    clients.pytester.makeconftest(
        clients.path.joinpath("conftest.py").read_text()
        + """
def pytest_promptcache_canonical_request(request, item):
    # This app puts a per-run nonce in the system prompt; the test's name decides what it becomes.
    for message in request["body"].get("messages", []):
        if message["role"] == "system":
            message["content"] = message["content"].split(" nonce=")[0] + f" nonce=<{item.name}>"
"""
    )
    clients.pytester.makepyfile(
        """
        import random
        def test_nonce(oai0):
            oai0.chat.completions.create(model="gpt-4.1-mini", messages=[
                {"role": "system", "content": f"Be brief. nonce={random.random()}"},
                {"role": "user", "content": "hi"}])
        """
    )
    clients.run("--promptcache=record").assert_outcomes(passed=1)
    clients.server.stop()
    clients.run().assert_outcomes(passed=1)
    (data,) = clients.recordings().values()
    assert data["request"]["body"]["messages"][0]["content"] == "Be brief. nonce=<test_nonce>"


# -- similar matching ----------------------------------------------------------------------------------

SIMILAR = """
import os
from conftest import ask

PROMPT = os.environ.get("PROMPT", "Summarise our refund policy for premium customers in two sentences.")

def test_summary(oai0):
    print("ANSWER", ask(oai0, PROMPT).choices[0].message.content)
"""


def test_similar_match_serves_a_near_identical_prompt_and_reports_it(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients.pytester.makepyfile(SIMILAR)
    clients.run("--promptcache=record").assert_outcomes(passed=1)
    (recorded_key,) = clients.recordings()
    clients.server.stop()

    monkeypatch.setenv("PROMPT", "Summarise our refund policy for premium customers in three sentences.")
    assert clients.run().ret == pytest.ExitCode.TESTS_FAILED  # exact matching is the default
    near = clients.run("--promptcache-match=similar:0.9", "--promptcache-report=r.json", "-s")
    near.assert_outcomes(passed=1)
    near.stdout.fnmatch_lines(
        [
            "*ANSWER echo: Summarise our refund policy for premium customers in two sentences.*",
            f"similar match: test_*::test_summary: served {recorded_key[:12]} for * (similarity 0.9*)",
        ]
    )
    (sub,) = report(clients)["similar_substitutions"]
    assert sub["served_key"] == recorded_key
    assert sub["requested_key"] != recorded_key
    assert 0.9 <= sub["similarity"] < 1
    assert report(clients)["totals"]["replayed"] == 1

    monkeypatch.setenv("PROMPT", "Write a haiku about the sea.")
    far = clients.run("--promptcache-match=similar:0.9")
    far.assert_outcomes(failed=1)
    far.stdout.fnmatch_lines(["promptcache: no recording for this request (mode: replay)"])


def test_similarity_behaves_on_long_texts() -> None:
    from pytest_promptcache.miss import similarity
    from pytest_promptcache.models import CanonicalRequest

    def req(text: str) -> CanonicalRequest:
        return CanonicalRequest(
            method="POST",
            host="h",
            path="/v1/chat/completions",
            body={"model": "m", "messages": [{"role": "user", "content": text}]},
        )

    words = [f"word{i % 97} item{i % 13}" for i in range(3000)]
    long_text = " ".join(words)
    one_word_changed = long_text.replace("word5 item5", "word5 itemX", 1)
    assert similarity(req(long_text), req(one_word_changed)) > 0.999
    assert similarity(req("Is the sky blue?"), req("Is the sky not blue?")) < 0.95
    assert similarity(req(long_text), req("completely different words here")) < 0.01


# -- schema evolution ----------------------------------------------------------------------------------


def test_recordings_of_schema_1_replay_and_migrate_upgrades_them(clients: Suite) -> None:
    """The demo's first recordings were written in schema 1; they replay as they are and migrate."""
    shutil.copytree(DEMO_CASSETTES, clients.cassettes)
    assert {json.loads(p.read_text())["schema_version"] for p in clients.cassettes.glob("*.json")} == {1}
    clients.pytester.makepyfile(
        """
        import os, openai
        def test_v1(oai0):
            client = openai.OpenAI(base_url="http://127.0.0.1:8765/v1", api_key="k", max_retries=0)
            system = "Classify the ticket as one of: billing, bug, other."
            r = client.chat.completions.create(model="gpt-4.1-mini", temperature=0, user="session-4711",
                messages=[{"role": "system", "content": system},
                          {"role": "user", "content": "I was charged twice on my billing statement"}])
            assert "billing" in r.choices[0].message.content
        """
    )
    clients.pytester.makeini("[pytest]\npromptcache_ignore_fields = user\n")
    before = clients.run("--promptcache-report=before.json")
    before.assert_outcomes(passed=1)
    migrated = subprocess.run(
        ["promptcache", "--dir", str(clients.cassettes), "migrate"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "7 recordings migrated to schema 2" in migrated.stdout
    assert {json.loads(p.read_text())["schema_version"] for p in clients.cassettes.glob("*.json")} == {2}
    clients.run("--promptcache-report=after.json").assert_outcomes(passed=1)
    assert report(clients, "before.json")["totals"] == report(clients, "after.json")["totals"]
