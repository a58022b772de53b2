"""More clients end to end: litellm ``completion`` (sync, stream and not), google-genai's sync client
(stream and not), and Cohere's and Ollama's own SDKs record against the loopback server, replay offline
with what live gave, never reach the server in replay, fail on a changed prompt, and report tokens and
dollars (Cohere's as billed)."""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from conftest import SUITES, Suite, assert_each_failed_on_the_miss

from pytest_promptcache.prices import usd

TESTS = 11
COHERE_KEY = "cohere-TESTKEY-0123456789abcdefghijklmnop"


@pytest.fixture(scope="module")
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


@pytest.mark.slow  # three pytester runs of eleven tests through five SDKs (litellm alone imports for seconds)
@pytest.mark.usefixtures("sdks_imported")
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


@pytest.mark.slow  # two pytester runs of eleven tests through five SDKs
@pytest.mark.usefixtures("sdks_imported")
def test_a_changed_prompt_fails_every_client_with_the_miss_even_when_the_test_catches_it(
    app: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(app, "--promptcache=record").assert_outcomes(passed=TESTS)
    sent = app.server.count()
    monkeypatch.setenv("MORE_CLIENTS_CHANGE", " (changed)")
    result = run(app)
    # Every test swallows what its client raised; each fails all the same, on the miss.
    result.assert_outcomes(failed=TESTS)
    assert app.server.count() == sent
    assert_each_failed_on_the_miss(result, TESTS, "(changed)")
    assert report(app)["totals"]["misses"] == TESTS


@pytest.mark.slow
def test_cohere_calls_are_reported_in_tokens_and_dollars_as_billed(app: Suite) -> None:
    run(app, "--promptcache=record", "test_cohere.py").assert_outcomes(passed=3)
    billed = {r.path: r.sent_usage for r in app.server.requests}
    chat_billed = billed["/v2/chat"]["billed_units"]  # the streamed chat's; the other's is the same
    assert billed["/v2/chat"]["tokens"]["input_tokens"] > chat_billed["input_tokens"]
    recorded = report(app)["by_model"]
    chat = recorded["command-a-03-2025"]
    assert (chat["calls"], chat["input_tokens"], chat["output_tokens"]) == (
        2,
        2 * chat_billed["input_tokens"],
        2 * chat_billed["output_tokens"],
    )
    embed = recorded["embed-v4.0"]
    assert embed["input_tokens"] == billed["/v2/embed"]["input_tokens"]
    at = datetime.fromtimestamp(app.server.requests[0].received_at, UTC)
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=chat["input_tokens"], output_tokens=chat["output_tokens"]),
        "command-a-03-2025",
        provider_id="cohere",
        genai_request_timestamp=at,
    ).total_price
    assert expected > 0
    assert abs(Decimal(str(chat["spent_usd"])) - expected) <= expected / 100
    assert embed["spent_usd"] > 0

    app.server.stop()
    result = run(app, "-v", "test_cohere.py")
    result.assert_outcomes(passed=3)
    replayed = report(app)
    assert replayed["totals"]["replayed"] == 3
    assert replayed["unpriced_models"] == []
    saved = replayed["by_model"]["command-a-03-2025"]["saved_usd"]
    assert saved == pytest.approx(chat["spent_usd"], rel=1e-9)
    tokens_in, tokens_out = chat["input_tokens"], chat["output_tokens"]
    result.stdout.fnmatch_lines(
        [
            f"command-a-03-2025 * 2 * {tokens_in} * 0 * {tokens_out} * $0.00 * {usd(saved)}",
            "embed-v4.0 * 1 *",
        ]
    )
