"""The main promise, end to end: record against a live server, stop it, replay offline."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import FAKE_SECRETS, Suite

from pytest_promptcache.models import SCHEMA_VERSION


@pytest.mark.slow
def test_newcomer_suite_records_once_then_replays_offline_identically(newcomer: Suite) -> None:
    recorded = newcomer.run("--promptcache=record")
    recorded.assert_outcomes(passed=19)
    seen_live = newcomer.seen()

    # One live call per distinct request: "Same twice" was served from its fresh recording.
    sent = Counter((r.path, r.body) for r in newcomer.server.requests)
    assert set(sent.values()) == {1}, sent
    assert len(sent) == 19
    assert len(newcomer.recordings()) == 19
    recorded.stdout.fnmatch_lines(["*1 replayed, 19 live (19 recorded)*"])

    newcomer.server.stop()
    replayed = newcomer.run()
    replayed.assert_outcomes(passed=19)
    replayed.stdout.fnmatch_lines(["*mode replay: 20 LLM calls: 20 replayed*"])
    # Ids, texts, stream chunks, embeddings, tool calls: exactly what the live run showed.
    assert newcomer.seen() == seen_live


@pytest.mark.slow
def test_recordings_are_readable_json_without_secrets(newcomer: Suite) -> None:
    newcomer.run("--promptcache=record").assert_outcomes(passed=19)
    text = newcomer.cassette_text()
    for value in FAKE_SECRETS.values():
        assert value not in text
    for needle in ("session=", "set-cookie", "authorization", "x-api-key", "x-goog-api-key", "x-stainless"):
        assert needle not in text.lower(), needle
    assert {p.suffix for p in newcomer.cassettes.iterdir()} == {".json"}
    for key, data in newcomer.recordings().items():
        assert data["key"] == key
        assert data["schema_version"] == SCHEMA_VERSION
        assert data["meta"]["test"].startswith("test_app.py::")
    gemini = [d for d in newcomer.recordings().values() if d["request"]["path"].endswith(":generateContent")]
    assert gemini[0]["request"]["query"] == []
    assert "key=<redacted>" in gemini[0]["meta"]["url"]


def test_stream_recordings_keep_each_event_in_order(newcomer: Suite) -> None:
    newcomer.run("--promptcache=record", "-k", "stream_with_usage").assert_outcomes(passed=1, deselected=18)
    (data,) = newcomer.recordings().values()
    events = data["response"]["events"]
    assert events[-1] == {"text": "[DONE]"}
    assert events[-2]["data"]["usage"]["completion_tokens"] > 0
    assert "events" in data["response"]
    # One line per event in the file keeps a pull-request diff readable.
    lines = next(newcomer.cassettes.glob("*.json")).read_text().splitlines()
    assert sum(1 for line in lines if line.strip().startswith('{"data"')) == len(events) - 1


def test_gzip_bodies_are_stored_decoded_and_replayed_plain(newcomer: Suite) -> None:
    newcomer.run("--promptcache=record", "-k", "gzip").assert_outcomes(passed=1, deselected=18)
    (data,) = newcomer.recordings().values()
    assert data["response"]["body"]["choices"][0]["message"]["content"] == "echo: Compressed please"
    assert "content-encoding" not in data["response"]["headers"]
    live = newcomer.seen()
    newcomer.server.stop()
    newcomer.run("-k", "gzip").assert_outcomes(passed=1, deselected=18)
    assert newcomer.seen() == live


@pytest.mark.slow  # a fresh interpreter that imports both SDKs: the default run's costliest test
def test_replay_in_a_subprocess_as_a_user_runs_it(newcomer: Suite) -> None:
    newcomer.run("--promptcache=record", "-k", "anthropic").assert_outcomes(passed=5, deselected=14)
    newcomer.server.stop()
    result = newcomer.run("-k", "anthropic", subprocess=True)
    result.assert_outcomes(passed=5, deselected=14)
    assert json.loads(json.dumps(newcomer.seen()))  # the subprocess saw the replayed answers
