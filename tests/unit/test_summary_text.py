"""What a newcomer reads: counts that agree with their nouns, amounts in one format and lined up, a record
run that saved nothing said loudly, pruned recordings no longer called unused, the fixture's repr, and
typed ini values (0 and false are values) read as the settings mean them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.ledger import CallEvent, CallRecord, Outcome
from pytest_promptcache.models import TokenUsage
from pytest_promptcache.report.markdown import markdown
from pytest_promptcache.report.model import Report
from pytest_promptcache.report.terminal import terminal_lines
from pytest_promptcache.settings import Mode, SettingsError, build_settings
from pytest_promptcache.testcalls import TestCalls
from pytest_promptcache.words import plural, was

URL = "http://127.0.0.1:8765/v1/chat/completions"
CONNECT = "transport error: ConnectError('[Errno 111] Connection refused')"


def call(outcome: Outcome, **fields: Any) -> CallRecord:
    fields.setdefault("status", 200)
    return CallRecord(test=fields.pop("test", "t.py::a"), outcome=outcome, url=URL, model="m", **fields)


def lines(report: Report, verbose: bool = False) -> list[str]:
    return [text for text, _ in terminal_lines(report, verbose)]


def colour_of(report: Report, start: str) -> str | None:
    return next(colour for text, colour in terminal_lines(report, False) if text.startswith(start))


# -- words -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 calls"), (1, "1 call"), (2, "2 calls"), (1234, "1,234 calls")]
)
def test_plural_agrees_with_the_count(count: int, text: str) -> None:
    assert plural(count, "call") == text


def test_plural_takes_an_irregular_plural_and_was_agrees() -> None:
    assert plural(1, "entry", "entries") == "1 entry"
    assert plural(3, "entry", "entries") == "3 entries"
    assert (was(1), was(0), was(2)) == ("was", "were", "were")


def test_one_of_everything_is_singular_in_the_summary_and_the_markdown() -> None:
    usage = TokenUsage(input_tokens=3, output_tokens=2)
    calls = [
        call(Outcome.REPLAYED, key="a" * 64, usage=usage, cost_usd=None, stale=True),
        call(Outcome.BLOCKED, status=None),
    ]
    report = Report.build(
        "replay", calls, budget_usd=0.5, recorded_keys=["a" * 64, "b" * 64], incomplete_because=None
    )
    text = "\n".join(lines(report))
    assert "mode replay: 2 LLM calls: 1 replayed, 1 missed" in text
    assert "(1 call; tokens counted, no dollars)" in text
    assert "1 stale recording served" in text
    assert "1 recording unused by this run of the whole suite: --promptcache-prune deletes it" in text
    assert "budget of $0.50 reached: 1 live call refused" in text
    md = markdown(report)
    assert "**2 LLM calls**" in md
    assert "1 live call refused" in md
    assert " 1 calls" not in text + md


# -- a record run that saved nothing --------------------------------------------------------------------


def test_a_record_run_whose_live_calls_all_failed_saved_nothing_and_says_why() -> None:
    calls = [
        call(Outcome.ERROR, status=None, detail=CONNECT, test="t.py::a"),
        call(Outcome.ERROR, status=None, detail=CONNECT, test="t.py::b"),
        call(Outcome.ERROR, status=401, detail="HTTP 401", test="t.py::c"),
    ]
    report = Report.build("record", calls)
    assert report.nothing_saved
    assert [u.reason for u in report.not_saved] == [CONNECT, CONNECT, "HTTP 401"]
    text = lines(report)
    start = text.index(
        "nothing was saved: this record run made 3 live calls and recorded none of them, so they will miss "
        "in replay; the run fails"
    )
    assert text[start + 1 : start + 4] == [
        f"  2 calls: {CONNECT}",
        "  1 call: HTTP 401",
        "Check that the API is reachable and its key is set, then record again.",
    ]
    assert colour_of(report, "nothing was saved") == "red"


def test_one_call_that_was_not_saved_is_said_in_the_singular() -> None:
    # A failure without a status or detail still gets a reason rather than "HTTP None".
    report = Report.build("record", [call(Outcome.ERROR, status=None)])
    assert [u.reason for u in report.not_saved] == ["not saved"]
    text = lines(report)
    assert (
        "nothing was saved: this record run made 1 live call and recorded none of it, so it will miss in "
        "replay; the run fails"
    ) in text
    assert "  1 call: not saved" in text


def test_a_rewrite_run_that_saved_nothing_counts_too_and_replay_or_off_never_do() -> None:
    failed = [call(Outcome.ERROR, status=500, detail="HTTP 500")]
    assert Report.build("rewrite", failed).nothing_saved
    # Replay sends nothing live; mode off saves nothing by design.
    assert not Report.build("replay", [call(Outcome.MISS, status=404)]).nothing_saved
    off = Report.build("off", [call(Outcome.LIVE), *failed])
    assert not off.nothing_saved
    assert off.not_saved == []  # a failed call in mode off was never meant to be saved


def test_a_record_run_that_saved_some_names_the_rest_without_failing() -> None:
    calls = [call(Outcome.RECORDED, key="k"), call(Outcome.ERROR, status=500, detail="HTTP 500")]
    report = Report.build("record", calls)
    assert not report.nothing_saved
    text = lines(report)
    i = text.index("1 live call was not saved, so it will miss in replay:")
    assert text[i + 1] == "  1 call: HTTP 500"
    assert f"not saved: t.py::a: {URL}: HTTP 500" in lines(report, verbose=True)
    assert colour_of(report, "1 live call was not saved") == "yellow"


def test_many_reasons_are_cut_to_the_three_most_frequent() -> None:
    calls = [call(Outcome.ERROR, status=500 + n, detail=f"HTTP {500 + n}") for n in range(5)]
    calls.append(call(Outcome.ERROR, status=503, detail="HTTP 503"))
    text = lines(Report.build("record", calls))
    i = next(n for n, line in enumerate(text) if line.startswith("nothing was saved"))
    assert text[i + 1] == "  2 calls: HTTP 503"
    assert text[i + 4] == "  and 2 other reasons (-v lists every call)"


def test_an_abandoned_stream_in_record_mode_is_not_saved_but_a_saved_call_is_not_listed() -> None:
    abandoned = call(Outcome.LIVE, detail="not saved: the client closed the stream before its end")
    report = Report.build("record", [abandoned, call(Outcome.RECORDED, key="k")])
    assert [u.reason for u in report.not_saved] == [abandoned.detail]
    assert not report.nothing_saved


# -- pruning -------------------------------------------------------------------------------------------


def test_pruned_recordings_are_listed_as_deleted_not_as_unused() -> None:
    keys = ["a" * 64, "b" * 64]
    report = Report.build(
        "replay",
        [call(Outcome.REPLAYED, key="c" * 64)],
        recorded_keys=[*keys, "c" * 64],
        incomplete_because=None,
    )
    before = lines(report, verbose=True)
    assert "2 recordings unused by this run of the whole suite: --promptcache-prune deletes them" in before
    assert f"unused: {keys[0]}" in before
    pruned = report.model_copy(update={"pruned_recordings": keys})
    after = lines(pruned, verbose=True)
    assert "pruned 2 unused recordings (--promptcache-prune):" in after
    assert f"  deleted {keys[1]}.json" in after
    assert not [line for line in after if "unused by this run" in line or line.startswith("unused:")]
    nothing = report.model_copy(update={"pruned_recordings": []})
    assert "--promptcache-prune: no unused recordings to delete" in lines(nothing)


# -- amounts -------------------------------------------------------------------------------------------


def test_amounts_in_the_table_line_up_on_their_decimal_points() -> None:
    def replayed(model: str, cost: float) -> CallRecord:
        usage = TokenUsage(input_tokens=1, output_tokens=1)
        return CallRecord(
            test=f"t.py::{model}",
            outcome=Outcome.REPLAYED,
            url=URL,
            model=model,
            status=200,
            usage=usage,
            cost_usd=cost,
        )

    costs = {"big": 12.5, "small": 0.00000008, "mid": 0.000321}
    table = lines(Report.build("replay", [replayed(m, c) for m, c in costs.items()]), verbose=True)
    rows = [line for line in table if line.split()[:1] in (["big"], ["small"], ["mid"])]
    # The saved column is the last: the decimal point of its amount sits at the same column in every row.
    points = {row.index(".", row.rindex("$")) for row in rows}
    assert len(rows) == 3
    assert len(points) == 1, table
    assert [row.split()[-1] for row in rows] == ["$12.50", "$0.000321", "$0.00000008"]
    top = [line for line in table if line.endswith(("t.py::big", "t.py::mid", "t.py::small"))]
    assert len(top) == 3
    assert len({line.index(".") for line in top}) == 1, top


# -- the fixture ---------------------------------------------------------------------------------------


def test_the_fixture_repr_says_what_the_calls_were() -> None:
    usage = TokenUsage(input_tokens=1000, output_tokens=234)
    events = [
        CallEvent(
            test="t",
            mode=Mode.REPLAY,
            outcome=Outcome.REPLAYED,
            url=URL,
            model="m",
            usage=usage,
            cost_usd=0.0004,
        ),
        CallEvent(test="t", mode=Mode.REPLAY, outcome=Outcome.REPLAYED, url=URL, model="m", usage=None),
        CallEvent(test="t", mode=Mode.REPLAY, outcome=Outcome.MISS, url=URL, model="m", status=404),
    ]
    assert repr(TestCalls(lambda: events)) == (
        "<promptcache: 3 LLM calls (2 replayed, 1 miss), 1,234 tokens (1,000 in, 234 out), $0.0004>"
    )
    assert repr(TestCalls(lambda: [])) == "<promptcache: 0 LLM calls, 0 tokens (0 in, 0 out), $0.00>"


# -- typed ini values ----------------------------------------------------------------------------------


def settings(tmp_path: Path, **ini: Any) -> Any:
    return build_settings(rootdir=tmp_path, cli_mode=None, cli_dir=None, env={}, ini=ini)


def test_typed_ini_values_are_values_zero_and_false_included(tmp_path: Path) -> None:
    # pytest hands typed options over as numbers and booleans (and TOML as written).
    got = settings(
        tmp_path,
        promptcache_budget=0.0,
        promptcache_memory_size=10,
        promptcache_record_rpm=500,
        promptcache_record_retries=0,
        promptcache_flight_timeout=2.5,
        promptcache_guard=False,
        promptcache_placeholder_keys=True,
    )
    assert got.budget_usd == 0.0  # a budget of nothing, not "no budget"
    assert (got.memory_size, got.record_rpm, got.record_retries) == (10, 500, 0)
    assert got.limits.flight_timeout == 2.5
    assert got.guard is False
    assert got.placeholder_keys is True
    unset = settings(tmp_path, promptcache_budget=None, promptcache_guard=None, promptcache_memory_size=None)
    assert (unset.budget_usd, unset.guard, unset.memory_size) == (None, True, 4096)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("promptcache_memory_size", 0, "promptcache_memory_size: must be at least 1, got 0"),
        ("promptcache_record_rpm", 0, "promptcache_record_rpm: must be at least 1, got 0"),
        ("promptcache_flight_timeout", 0.0, "promptcache_flight_timeout: '0.0' is not a number of seconds"),
        ("promptcache_budget", -1.0, "the budget must be a finite amount of 0 or more"),
        # The command reads ini files itself: what pytest's types refuse reaches the settings as text.
        ("promptcache_guard", "maybe", "promptcache_guard: 'maybe' is neither on nor off"),
        ("promptcache_flight_timeout", "soon", "promptcache_flight_timeout: 'soon' is not a number"),
    ],
)
def test_a_typed_zero_that_means_nothing_is_refused_not_taken_as_unset(
    tmp_path: Path, name: str, value: object, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        settings(tmp_path, **{name: value})
