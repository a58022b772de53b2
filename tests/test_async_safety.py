"""No blocking call on the event loop, in any mode: an async suite under blockbuster (every module
scanned) records, replays, misses and rewrites through the plugin without a single BlockingError."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import SUITES, Suite

ASYNC_TESTS = 5
CALLS = 13  # 1 chat + 1 stream + 1 anthropic stream + 2 raw + 8 gathered
# The two raw clients send the same request, and the gathered calls are one: five distinct requests.
DISTINCT = 5


@pytest.fixture
def async_app(suite: Suite) -> Suite:
    for source in (SUITES / "async_app").iterdir():
        if source.is_file():
            shutil.copy(source, suite.path / source.name)
    return suite


def run(app: Suite, *args: str) -> pytest.RunResult:
    result = app.run("--promptcache-report=r.json", *args)
    assert "BlockingError" not in result.stdout.str() + result.stderr.str()
    return result


def totals(app: Suite) -> dict[str, int]:
    return json.loads((app.path / "r.json").read_text())["totals"]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_record_and_replay_never_block_the_event_loop(
    async_app: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As under xdist: the session's spend and rewrites live in shared state files, read and written
    # on every live call; pacing reads and writes the host's schedule; the budget is checked each time.
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "async-safety")
    async_app.pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "promptcache_record_rpm = 60000\n"
    )
    run(async_app, "--promptcache=record", "--promptcache-budget=5").assert_outcomes(passed=ASYNC_TESTS)
    assert async_app.server.count() == DISTINCT
    assert totals(async_app)["recorded"] == DISTINCT

    async_app.server.stop()
    run(async_app).assert_outcomes(passed=ASYNC_TESTS)
    assert totals(async_app)["replayed"] == CALLS


@pytest.mark.slow
def test_a_miss_in_an_async_test_fails_with_the_miss_not_a_blocking_error(
    async_app: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(async_app, "--promptcache=record").assert_outcomes(passed=ASYNC_TESTS)
    monkeypatch.setenv("ASYNC_PROMPT", "summarise the returns policy")
    result = run(async_app, "-k", "test_chat")
    result.assert_outcomes(failed=1, deselected=ASYNC_TESTS - 1)
    result.stdout.fnmatch_lines(["*promptcache: no recording for this request (mode: replay)*"])


@pytest.mark.slow
def test_rewrite_and_off_never_block_the_event_loop(
    async_app: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(async_app, "--promptcache=record").assert_outcomes(passed=ASYNC_TESTS)
    sent = async_app.server.count()
    run(async_app, "--promptcache=rewrite").assert_outcomes(passed=ASYNC_TESTS)
    assert totals(async_app)["recorded"] == DISTINCT
    monkeypatch.setenv("PROMPTCACHE_MODE_UNDER_TEST", "off")
    run(async_app, "--promptcache=off").assert_outcomes(passed=ASYNC_TESTS)
    # Off has no recordings and no single flight: every call goes out.
    assert totals(async_app)["live"] == CALLS
    assert async_app.server.count() == sent + DISTINCT + CALLS
