"""Call accounting: outcomes summed per session, model and test; prices of live and replayed calls,
recordings of schema 1 and 2, and the user's overrides."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pytest_promptcache.ledger import NO_MODEL, NO_TEST, CallEvent, CallRecord, Ledger, Outcome
from pytest_promptcache.models import CanonicalRequest, RecordedResponse, Recording, RecordingMeta, TokenUsage
from pytest_promptcache.pricing import recording_price
from pytest_promptcache.settings import Mode
from pytest_promptcache.sums import Bucket, summarize
from pytest_promptcache.testcalls import TestCalls
from pytest_promptcache.usage import Measured, PriceBook, parse_prices

URL = "http://127.0.0.1:8765/v1/chat/completions"
RECORDED_AT = datetime(2025, 6, 1, tzinfo=UTC)


def call(
    outcome: Outcome,
    *,
    model: str | None = "m",
    test: str | None = "t.py::a",
    status: int | None = 200,
    usage: TokenUsage | None = None,
    cost: float | None = None,
    **extra: Any,
) -> CallRecord:
    return CallRecord(
        test=test, outcome=outcome, url=URL, model=model, status=status, usage=usage, cost_usd=cost, **extra
    )


USAGE = TokenUsage(input_tokens=100, cached_input_tokens=40, cache_write_tokens=10, output_tokens=20)


# -- CallRecord -------------------------------------------------------------------------------------------


def test_used_key_is_the_recording_served_or_saved() -> None:
    assert call(Outcome.REPLAYED, key="k").used_key == "k"
    assert call(Outcome.REPLAYED, key="k", served_key="similar").used_key == "similar"
    assert call(Outcome.RECORDED, key="k").used_key == "k"
    for outcome in (Outcome.LIVE, Outcome.MISS, Outcome.ERROR, Outcome.BLOCKED, Outcome.SHARED_FAILURE):
        assert call(outcome, key="k").used_key is None


def test_what_each_test_was_served_in_order_once_each() -> None:
    ledger = Ledger(PriceBook())

    def event(outcome: Outcome, test: str | None, key: str | None, **extra: Any) -> None:
        made = CallEvent(test=test, mode=Mode.REPLAY, outcome=outcome, url=URL, model="m", key=key, **extra)
        ledger.add(made)

    event(Outcome.REPLAYED, "t.py::a", "k2")
    event(Outcome.REPLAYED, "t.py::b", "k1")
    event(Outcome.REPLAYED, "t.py::a", "k1")
    event(Outcome.REPLAYED, "t.py::a", "k2")  # again: once
    event(Outcome.REPLAYED, "t.py::a", "asked", served_key="similar")  # the recording actually served
    event(Outcome.MISS, "t.py::a", "missing")
    event(Outcome.RECORDED, "t.py::a", "recorded")
    event(Outcome.REPLAYED, None, "outside-a-test")
    assert ledger.served_by_test() == {"t.py::a": ["k2", "k1", "similar"], "t.py::b": ["k1"]}


@pytest.mark.parametrize(
    ("outcome", "status", "live", "succeeded"),
    [
        (Outcome.REPLAYED, 200, False, True),
        (Outcome.REPLAYED, 404, False, False),
        (Outcome.RECORDED, None, True, True),
        (Outcome.LIVE, 200, True, True),
        (Outcome.ERROR, 500, True, False),
        (Outcome.MISS, 404, False, False),
        (Outcome.BLOCKED, None, False, False),
        (Outcome.SHARED_FAILURE, 500, False, False),
    ],
)
def test_live_and_succeeded(outcome: Outcome, status: int | None, live: bool, succeeded: bool) -> None:
    record = call(outcome, status=status)
    assert (record.live, record.succeeded) == (live, succeeded)


def test_an_event_becomes_the_same_record() -> None:
    event = CallEvent(
        test="t.py::a",
        mode=Mode.REPLAY,
        outcome=Outcome.REPLAYED,
        url=URL,
        model="m",
        key="k",
        status=200,
        served_key="s",
        similarity=0.93,
        stale=True,
        recorded_at=RECORDED_AT,
        usage=USAGE,
        cost_usd=0.5,
    )
    assert event.record() == call(
        Outcome.REPLAYED,
        key="k",
        usage=USAGE,
        cost=0.5,
        served_key="s",
        similarity=0.93,
        stale=True,
        recorded_at=RECORDED_AT,
    )


# -- Bucket and summarize ---------------------------------------------------------------------------------


def test_bucket_counts_outcomes() -> None:
    bucket = Bucket()
    for outcome in Outcome:
        bucket.add(call(outcome, status=500 if outcome is Outcome.ERROR else 200))
    assert (bucket.calls, bucket.replayed, bucket.live, bucket.recorded, bucket.errors, bucket.misses) == (
        8,
        1,
        3,
        1,
        1,
        3,  # miss, blocked and a shared failure: neither served nor sent
    )
    assert bucket.refused == 1  # a connection the socket guard refused


def test_bucket_sums_tokens_and_dollars_of_successful_calls() -> None:
    bucket = Bucket()
    bucket.add(call(Outcome.REPLAYED, usage=USAGE, cost=0.25))
    bucket.add(call(Outcome.RECORDED, usage=USAGE, cost=0.5))
    bucket.add(call(Outcome.LIVE, usage=USAGE, cost=None))  # nobody could price it
    bucket.add(call(Outcome.LIVE, usage=None))  # the response carried no usage
    bucket.add(call(Outcome.ERROR, status=500, usage=USAGE, cost=1.0))  # a failed call's figures don't count
    assert (
        bucket.input_tokens,
        bucket.cached_input_tokens,
        bucket.cache_write_tokens,
        bucket.output_tokens,
    ) == (
        300,
        120,
        30,
        60,
    )
    assert (bucket.spent_usd, bucket.saved_usd, bucket.cost_usd) == (0.5, 0.25, 0.75)
    assert (bucket.unpriced_calls, bucket.calls_without_usage) == (1, 1)


def test_bucket_sums_dollars_exactly() -> None:
    bucket = Bucket()
    for _ in range(1000):
        bucket.add(call(Outcome.REPLAYED, usage=USAGE, cost=0.000001))
    for _ in range(3):
        bucket.add(call(Outcome.LIVE, usage=USAGE, cost=0.1))
    assert bucket.saved_usd == 0.001  # a float sum would be 0.0010000000000000002
    assert bucket.spent_usd == 0.3


def test_summarize_by_model_and_test_sorted_with_placeholders() -> None:
    calls = [
        call(Outcome.REPLAYED, model="zeta", test="t.py::b", usage=USAGE, cost=0.1),
        call(Outcome.REPLAYED, model=None, test=None, usage=USAGE, cost=0.2),
        call(Outcome.LIVE, model="alpha", test="t.py::b", usage=USAGE, cost=0.3),
        call(Outcome.MISS, model="alpha", test="t.py::a", status=404),
    ]
    buckets = summarize(calls)
    assert buckets.totals.calls == 4
    assert list(buckets.by_model) == sorted(["zeta", NO_MODEL, "alpha"])
    assert list(buckets.by_test) == sorted(["t.py::b", NO_TEST, "t.py::a"])
    assert (buckets.by_model["alpha"].live, buckets.by_model["alpha"].misses) == (1, 1)
    assert buckets.by_test["t.py::b"].cost_usd == pytest.approx(0.4)
    assert buckets.by_model[NO_MODEL].saved_usd == 0.2


def test_summarize_nothing() -> None:
    buckets = summarize([])
    assert (buckets.totals, buckets.by_model, buckets.by_test) == (Bucket(), {}, {})


# -- Ledger -----------------------------------------------------------------------------------------------


def event(outcome: Outcome, cost: float | None, test: str = "t.py::a") -> CallEvent:
    return CallEvent(
        test=test, mode=Mode.RECORD, outcome=outcome, url=URL, model="m", usage=USAGE, cost_usd=cost
    )


def test_the_ledger_reports_live_costs_as_they_happen() -> None:
    reported: list[float] = []
    ledger = Ledger(PriceBook(), on_live_cost=reported.append)
    ledger.add(event(Outcome.RECORDED, 0.5))
    ledger.add(event(Outcome.REPLAYED, 0.25))  # saved, not spent
    ledger.add(event(Outcome.ERROR, 0.125))
    ledger.add(event(Outcome.LIVE, None))
    assert reported == [0.5, 0.125]
    assert [r.outcome for r in ledger.records()] == [
        Outcome.RECORDED,
        Outcome.REPLAYED,
        Outcome.ERROR,
        Outcome.LIVE,
    ]


def test_a_ledger_without_a_listener_still_records() -> None:
    ledger = Ledger(PriceBook())
    ledger.add(event(Outcome.RECORDED, 0.5))
    assert len(ledger.records()) == 1


def test_live_price_uses_the_users_prices() -> None:
    ledger = Ledger(PriceBook(parse_prices(["house input=1 output=2"])))
    response = json_response(
        {"model": "house", "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 0}}
    )
    assert ledger.live_price(response, "/v1/chat/completions", "house", URL) == Measured(
        TokenUsage(input_tokens=1_000_000), 1.0, 0.0
    )


def test_test_calls_sum_a_tests_own_calls() -> None:
    events = [event(Outcome.RECORDED, 0.1), event(Outcome.REPLAYED, 0.2), event(Outcome.MISS, None)]
    calls = TestCalls(lambda: events)
    assert [c.outcome for c in calls.calls] == [Outcome.RECORDED, Outcome.REPLAYED, Outcome.MISS]
    assert (calls.input_tokens, calls.output_tokens, calls.total_tokens) == (300, 60, 360)
    assert calls.cost_usd == 0.3
    assert TestCalls(list).cost_usd == 0.0


# -- prices of recordings ---------------------------------------------------------------------------------


def json_response(body: Any) -> RecordedResponse:
    return RecordedResponse(status=200, headers={"content-type": "application/json"}, body=body)


def recording(schema: int, model: str = "gpt-4.1-mini", **meta: Any) -> Recording:
    body = {"model": model, "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}}
    return Recording(
        schema_version=schema,  # type: ignore[arg-type]
        key=f"{schema}{model}".ljust(64, "0"),
        request=CanonicalRequest(
            method="POST", host="127.0.0.1:8765", path="/v1/chat/completions", body={"model": model}
        ),
        response=json_response(body),
        meta=RecordingMeta(recorded_at=RECORDED_AT, url=URL, latency_ms=12.0, plugin_version="0.1.0", **meta),
    )


MEASURED = TokenUsage(input_tokens=1_000_000, output_tokens=1_000_000)


def test_schema_2_carries_its_price() -> None:
    carried = TokenUsage(input_tokens=7, output_tokens=3)
    assert recording_price(recording(2, usage=carried, cost_usd=0.123), PriceBook()) == Measured(
        carried, 0.123, 0.0
    )
    # A file that carries no usage (made by hand or by code, not by a recording run, which writes what
    # it found) is measured from its response, like a schema 1 file.
    assert recording_price(recording(2), PriceBook()) == Measured(MEASURED, 2.0, 0.0)


def test_schema_1_is_measured_at_its_recording_time() -> None:
    assert recording_price(recording(1), PriceBook()) == Measured(
        MEASURED, 2.0, 0.0
    )  # 0.40 in + 1.60 out per million


def test_an_override_reprices_even_a_schema_2_recording() -> None:
    prices = PriceBook(parse_prices(["gpt-4.1-mini input=1 output=1"]))
    carried = recording(2, usage=TokenUsage(input_tokens=1), cost_usd=0.5)
    assert recording_price(carried, prices) == Measured(MEASURED, 2.0, 0.0)
    assert recording_price(recording(1), prices) == Measured(MEASURED, 2.0, 0.0)


def test_an_override_of_another_model_changes_nothing() -> None:
    prices = PriceBook(parse_prices(["other input=9 output=9"]))
    assert recording_price(recording(2, usage=MEASURED, cost_usd=0.5), prices) == Measured(MEASURED, 0.5, 0.0)


def test_a_replayed_recording_is_priced_once() -> None:
    prices = PriceBook(parse_prices(["gpt-4.1-mini input=1 output=1"]))
    ledger = Ledger(prices)
    rec = recording(1)
    assert ledger.replay_price(rec) == Measured(MEASURED, 2.0, 0.0)
    # A different price from now on shows whether the recording is priced again.
    prices.overrides.update(parse_prices(["gpt-4.1-mini input=5 output=5"]))
    assert ledger.replay_price(rec) == Measured(MEASURED, 2.0, 0.0)
    assert Ledger(prices).replay_price(rec) == Measured(MEASURED, 10.0, 0.0)
