"""Record pacing: requests per minute through the shared schedule, token debt, and retry delays
(Retry-After in seconds or as an HTTP date, capped; otherwise exponential backoff with full jitter)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from pytest_promptcache.coordination.pacing import MAX_RETRY_WAIT, Pacing, retry_delay
from pytest_promptcache.coordination.state import SharedState


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SharedState:
    # The schedule runs on time.time; a frozen clock makes the delays exact.
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    return SharedState(tmp_path, None)


# -- requests and tokens per minute -----------------------------------------------------------------------


def test_without_a_limit_nothing_waits_and_nothing_is_written(tmp_path: Path) -> None:
    pacing = Pacing(SharedState(tmp_path / "state", None))
    assert [pacing.slot("api.openai.com").wait for _ in range(3)] == [0.0, 0.0, 0.0]
    pacing.charge("api.openai.com", 10_000)
    assert not (tmp_path / "state").exists()


def test_requests_per_minute_space_the_requests_of_a_host(state: SharedState) -> None:
    pacing = Pacing(state, rpm=120)
    assert [pacing.slot("api.openai.com").wait for _ in range(3)] == [0.0, 0.5, 1.0]
    assert pacing.slot("api.anthropic.com").wait == 0.0


def test_tokens_per_minute_delay_the_next_request_by_what_a_call_used(state: SharedState) -> None:
    pacing = Pacing(state, rpm=60, tpm=6000)
    assert pacing.slot("api.openai.com").wait == 0.0  # the next slot is 1 s away
    pacing.charge("api.openai.com", 300)  # 300 of 6000 per minute: 3 s more
    assert pacing.slot("api.openai.com").wait == 4.0
    pacing.charge("api.openai.com", 0)
    assert pacing.slot("api.openai.com").wait == 5.0


def test_a_token_limit_alone_paces_by_tokens(state: SharedState) -> None:
    pacing = Pacing(state, tpm=600)
    pacing.charge("h", 20)  # 2 s of the host's minute
    assert pacing.slot("h").wait == 0.0  # no request limit: sending is not scheduled, only charged
    assert Pacing(state, rpm=60, tpm=600).slot("h").wait == 2.0


# -- retries ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "attempt", "retries", "retried"),
    [
        (429, 0, 2, True),
        (500, 1, 2, True),
        (503, 0, 1, True),
        (429, 2, 2, False),  # out of attempts
        (429, 0, 0, False),  # retries off (the default)
        (400, 0, 2, False),
        (404, 0, 2, False),
        (200, 0, 2, False),
    ],
)
def test_which_responses_are_retried(
    tmp_path: Path, status: int, attempt: int, retries: int, retried: bool
) -> None:
    pacing = Pacing(SharedState(tmp_path, None), retries=retries)
    delay = pacing.retry_delay(status, [("retry-after", "7")], attempt)
    assert delay == (7.0 if retried else None)


@pytest.mark.parametrize(
    ("value", "delay"),
    [("3", 3.0), ("0", 0.0), ("1.5", 1.5), (" 2 ", 2.0), ("-4", 0.0), ("100000", MAX_RETRY_WAIT)],
)
def test_retry_after_in_seconds(value: str, delay: float) -> None:
    assert retry_delay([("content-type", "application/json"), ("Retry-After", value)], 5) == delay


def test_retry_after_as_an_http_date() -> None:
    past = format_datetime(datetime.now(UTC) - timedelta(minutes=5), usegmt=True)
    assert retry_delay([("retry-after", past)], 0) == 0.0
    far = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    assert retry_delay([("retry-after", far)], 0) == MAX_RETRY_WAIT
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    # An HTTP date has whole seconds, and reading it takes a moment: between the cap and nothing.
    assert 0.0 < retry_delay([("retry-after", soon)], 0) < MAX_RETRY_WAIT


@pytest.mark.parametrize("attempt", [0, 1, 3, 6, 7, 12])
def test_without_retry_after_backoff_is_jittered_below_a_doubling_cap(attempt: int) -> None:
    random.seed(attempt)
    delays = [retry_delay([], attempt) for _ in range(200)]
    cap = min(MAX_RETRY_WAIT, 2.0**attempt)
    assert all(0.0 <= d <= cap for d in delays)
    assert max(delays) > cap / 2  # spread over the range, not pinned to a corner
    assert min(delays) < cap / 2


@pytest.mark.parametrize("value", ["soon", "", "Someday, 99 Foo 2026"])
def test_an_unreadable_retry_after_falls_back_to_backoff(value: str) -> None:
    random.seed(1)
    delays = [retry_delay([("retry-after", value)], 2) for _ in range(100)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 1


def test_a_retry_after_that_is_not_a_number_falls_back_to_backoff() -> None:
    assert 0.0 <= retry_delay([("retry-after", "nan")], 2) <= 4.0
