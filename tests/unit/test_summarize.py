"""Session-end sums: ``summarize`` tallies in plain attributes and must give exactly what adding each
call to a ``Bucket`` gives."""

from __future__ import annotations

import itertools

from pytest_promptcache.ledger import NO_MODEL, NO_TEST, CallRecord, Outcome
from pytest_promptcache.models import TokenUsage
from pytest_promptcache.sums import Bucket, _Tally, summarize

USAGE = TokenUsage(input_tokens=100, cached_input_tokens=40, cache_write_tokens=10, output_tokens=20)
ESTIMATED = TokenUsage(input_tokens=30, output_tokens=7, source="estimated")
FREE = TokenUsage(source="free")
# Every kind of usage a call may have: none, reported, estimated, free.
USAGES = [None, USAGE, USAGE, ESTIMATED, USAGE, FREE, USAGE]


def calls() -> list[CallRecord]:
    out = []
    # Off the 1e-10 grid too (a hand-edited recording), but for exact ties at the 11th place.
    costs = itertools.cycle([None, 0.1, 1e-7, 0.0000123, 3.3333333333, 1.23456789012345e-05])
    for i, outcome in enumerate(itertools.islice(itertools.cycle(Outcome), 200)):
        out.append(
            CallRecord(
                test=[None, "t.py::a", "t.py::b"][i % 3],
                outcome=outcome,
                url="https://api.example/v1/chat/completions",
                model=[None, "m1", "m2", "m3"][i % 4],
                key=f"k{i}",
                status=500 if outcome is Outcome.ERROR else 200,
                usage=USAGES[i % 7],
                cost_usd=next(costs),
                cache_saved_usd=[None, 0.25, -0.0001][i % 3],
            )
        )
    return out


def test_the_tally_has_the_buckets_fields() -> None:
    assert set(_Tally.__slots__) == set(Bucket.model_fields)


def test_summarize_sums_as_buckets_do() -> None:
    records = calls()
    expected_total = Bucket()
    by_model: dict[str, Bucket] = {}
    by_test: dict[str, Bucket] = {}
    for record in records:
        expected_total.add(record)
        by_model.setdefault(record.model or NO_MODEL, Bucket()).add(record)
        by_test.setdefault(record.test or NO_TEST, Bucket()).add(record)
    buckets = summarize(records)
    assert buckets.totals == expected_total
    assert buckets.totals.calls == 200
    assert buckets.totals.saved_usd > 0
    assert buckets.totals.spent_usd > 0
    assert buckets.totals.free_calls > 0
    assert buckets.totals.cache_saved_usd != 0
    assert buckets.totals.estimated.calls > 0
    assert buckets.totals.estimated.saved_usd > 0
    assert list(buckets.by_model.values()) == [b for _, b in sorted(by_model.items())]
    assert list(buckets.by_test.values()) == [b for _, b in sorted(by_test.items())]
    assert list(buckets.by_test) == sorted(by_test)
