"""More clients end to end: litellm ``completion`` (sync, stream and not), google-genai's sync client
(stream and not), and Cohere's and Ollama's own SDKs record against the loopback server, replay offline
with what live gave, never reach the server in replay, fail on a changed prompt, and report tokens and
dollars (Cohere's as billed)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from conftest import SUITES, Suite

TESTS = 11
MISS = "promptcache: no recording for this request (mode: replay)"
COHERE_KEY = "cohere-TESTKEY-0123456789abcdefghijklmnop"


@pytest.fixture(scope="module", autouse=True)
def sdks_imported() -> Iterator[None]:
    """litellm takes seconds to import: once per module, so the in-process runs find it loaded. Its
    price map would be fetched from the network at import without this variable."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        for name in ("litellm", "google.genai", "cohere", "ollama"):
            importlib.import_module(name)
        yield


@pytest.fixture
def app(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> Suite:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("CO_API_KEY", COHERE_KEY)
    for source in (SUITES / "more_clients").iterdir():
        if source.is_file():
            shutil.copy(source, suite.path / source.name)
    return suite


def run(app: Suite, *args: str) -> pytest.RunResult:
    return app.run("--promptcache-report=report.json", *args)


def report(app: Suite) -> dict[str, Any]:
    return json.loads((app.path / "report.json").read_text())  # type: ignore[no-any-return]


def test_record_then_replay_gives_what_live_gave_and_never_reaches_the_server(app: Suite) -> None:
    run(app, "--promptcache=record").assert_outcomes(passed=TESTS)
    live = app.seen()
    assert app.server.count() == TESTS
    assert len(app.recordings()) == TESTS
    recorded = report(app)["totals"]
    assert (recorded["calls"], recorded["live"], recorded["recorded"]) == (TESTS, TESTS, TESTS)
    assert COHERE_KEY not in app.cassette_text()

    run(app).assert_outcomes(passed=TESTS)
    assert app.server.count() == TESTS  # reachable, and asked nothing
    replayed = report(app)["totals"]
    assert (replayed["calls"], replayed["replayed"], replayed["live"]) == (TESTS, TESTS, 0)
    assert app.seen() == live

    app.server.stop()
    run(app).assert_outcomes(passed=TESTS)
    assert app.seen() == live
    offline = report(app)["totals"]
    assert recorded["input_tokens"] > 0
    assert recorded["output_tokens"] > 0
    for field in ("input_tokens", "output_tokens", "calls_without_usage", "unpriced_calls"):
        assert offline[field] == recorded[field], field
    assert offline["saved_usd"] == pytest.approx(recorded["spent_usd"], rel=1e-9)
