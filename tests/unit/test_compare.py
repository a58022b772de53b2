"""The cost against a baseline report: reading any report version, what changed per test and model,
and how it reads in the terminal, Markdown and HTML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.report.compare import (
    BaselineError,
    amount_text,
    compare,
    comparison_lines,
    load_baseline,
)
from pytest_promptcache.report.html import html
from pytest_promptcache.report.markdown import markdown
from pytest_promptcache.report.model import Report
from pytest_promptcache.sums import Bucket, Estimated


def bucket(spent: float = 0.0, saved: float = 0.0, tokens: int = 0, estimated: float = 0.0) -> Bucket:
    est = Estimated(calls=1, spent_usd=estimated) if estimated else Estimated()
    return Bucket(calls=1, spent_usd=spent, saved_usd=saved, input_tokens=tokens, estimated=est)


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "base.json"
    path.write_text(json.dumps(data))
    return path


# A report as version 1 wrote it: no estimates, no free calls, no advice.
V1 = {
    "schema_version": 1,
    "mode": "replay",
    "totals": {"calls": 2, "saved_usd": 0.3, "input_tokens": 100},
    "by_model": {"gpt-4.1-mini": {"calls": 2, "saved_usd": 0.3, "input_tokens": 100}},
    "by_test": {
        "t.py::test_a": {"calls": 1, "saved_usd": 0.1, "input_tokens": 40},
        "t.py::test_gone": {"calls": 1, "saved_usd": 0.2, "input_tokens": 60},
    },
    "unused_recordings": [],
}


def test_a_version_1_report_is_a_baseline(tmp_path: Path) -> None:
    baseline = load_baseline(write(tmp_path, V1))
    totals = {
        "t.py::test_a": bucket(saved=0.4, tokens=3040),
        "t.py::test_new": bucket(saved=0.05, estimated=0.01),
    }
    after = bucket(saved=0.45, tokens=3040, estimated=0.01)
    c = compare(after, {"gpt-4.1-mini": after}, totals, baseline, "base.json")
    assert (c.before_usd, c.after_usd) == (0.3, 0.46)
    assert c.delta_usd == pytest.approx(0.16)
    assert c.delta_pct == pytest.approx(53.3)
    grown, gone, new = c.by_test  # the largest change first
    assert (grown.name, grown.status, grown.input_tokens_delta) == ("t.py::test_a", "changed", 3000)
    assert grown.delta_usd == pytest.approx(0.3)
    assert (new.status, new.delta_pct) == ("added", None)
    assert (gone.status, gone.delta_usd) == ("removed", -0.2)
    lines = list(comparison_lines(c, limit=2))
    assert lines[0] == "cost against base.json (replay): $0.30 -> $0.46 per run, +$0.16 (+53.3%)"
    assert lines[1] == "  +$0.30 (+300.0%) t.py::test_a: input +3,000 tokens"
    assert lines[2] == "  -$0.20 (-100.0%) t.py::test_gone: gone, input -60 tokens, -1 call"
    assert lines[3] == "  ... and 1 more test changed (the JSON report lists them)"
    assert lines[4].startswith("  by model: gpt-4.1-mini +$0.16")
    # A cost that grew from almost nothing reads as a factor, not a five-digit percentage.
    assert amount_text(grown.model_copy(update={"delta_pct": 124900.0})) == "+$0.30 (1,250x)"


def test_the_comparison_in_markdown_and_html(tmp_path: Path) -> None:
    baseline = load_baseline(write(tmp_path, V1))
    after = {"t.py::test_a": bucket(saved=0.1, tokens=40), "t.py::test_gone": bucket(saved=0.2, tokens=60)}
    report = Report(mode="replay", totals=bucket(saved=0.3, tokens=100), by_model={}, by_test=after)
    report.comparison = compare(report.totals, {}, after, baseline, "main|report.json")
    assert report.comparison.by_test == []
    assert report.comparison.unchanged_tests == 2
    md = markdown(report)
    assert "#### Cost against `main\\|report.json`" in md
    assert "$0.30 → $0.30 per run: **+$0.00**" in md
    page = html(report)
    assert "Cost against main|report.json" in page


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("not json", "is not a promptcache report (the file: Invalid JSON"),
        (
            '{"schema_version": 9, "totals": {}}',
            "has report schema_version 9, which this version does not know",
        ),
        ('{"schema_version": 2, "totals": {"calls": "many"}}', "is not a promptcache report (totals.calls: "),
    ],
)
def test_what_is_not_a_baseline_says_what_to_give(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "base.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=r"^the baseline .*base\.json ") as raised:
        load_baseline(path)
    assert says in str(raised.value)


def test_a_baseline_that_is_a_directory_or_missing(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match=r"cannot read the baseline .*: it is a directory"):
        load_baseline(tmp_path)
    with pytest.raises(BaselineError, match=r"cannot read the baseline .*missing\.json: No such file"):
        load_baseline(tmp_path / "missing.json")
