"""The HTML page as text: self-contained, escaped, estimates marked, every section present when it has
something to say. (tests/test_html_report.py opens it in chromium.)"""

from __future__ import annotations

from html.parser import HTMLParser

from pytest_promptcache.findings import Advice, Finding, VolatilePrefix
from pytest_promptcache.report.compare import Change, Comparison
from pytest_promptcache.report.html import html
from pytest_promptcache.report.markdown import markdown
from pytest_promptcache.report.model import Report
from pytest_promptcache.report.terminal import terminal_lines
from pytest_promptcache.sums import Bucket, Estimated

NAME = "test_x.py::test_<script>alert(1)</script>"


class Parsed(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def report() -> Report:
    measured = Bucket(calls=3, replayed=2, live=1, input_tokens=1000, cached_input_tokens=400, spent_usd=0.5)
    measured.saved_usd = 0.25
    measured.cache_saved_usd = 0.01
    measured.free_calls = 1
    measured.estimated = Estimated(calls=1, input_tokens=10, output_tokens=5, spent_usd=0.002)
    finding = Finding(
        provider="anthropic",
        model="claude-sonnet-4-5",
        prefix=["system"],
        preview="You are <b>helpful</b>",
        tokens=2000,
        added_tokens=2000,
        uses=12,
        already_cached_uses=0,
        tests=[NAME],
        test_count=3,
        breakpoint='cache_control: {"type": "ephemeral"} on the last system block',
        min_tokens=1024,
        saving_usd=0.05,
    )
    volatile = VolatilePrefix(
        provider="openai",
        model="gpt-4.1-mini",
        part="messages[0] (system)",
        offset_tokens=3,
        examples=["10:00", "10:01"],
        cacheable_tokens=1500,
        prompts=4,
        uses=4,
        tests=[NAME],
        saving_usd=None,
    )
    change = Change(
        name=NAME,
        status="changed",
        before_usd=0.1,
        after_usd=0.2,
        delta_usd=0.1,
        delta_pct=100.0,
        input_tokens_delta=3000,
        output_tokens_delta=0,
        calls_delta=0,
    )
    comparison = Comparison(
        baseline="main.json",
        baseline_mode="replay",
        before_usd=0.65,
        after_usd=0.75,
        delta_usd=0.1,
        delta_pct=15.4,
        by_test=[change],
        by_model=[change.model_copy(update={"name": "claude-sonnet-4-5"})],
    )
    return Report(
        mode="record",
        totals=measured,
        by_model={"claude-sonnet-4-5": measured, "(no model)": Bucket(calls=1, free_calls=1)},
        by_test={NAME: measured},
        advice=Advice(recordings=3, findings=[finding], volatile=[volatile], saving_usd=0.05),
        comparison=comparison,
    )


def test_the_page_is_self_contained_and_escapes_everything() -> None:
    page = html(report())
    parsed = Parsed()
    parsed.feed(page)
    assert not {"script", "link", "img", "iframe"} & set(parsed.tags)
    assert "<script>alert" not in page
    assert "<b>helpful</b>" not in page
    text = "".join(parsed.text)
    assert NAME in text  # shown, as text
    for heading in ("Cost against main.json", "Cost per model", "Cost per test", "Live and replayed"):
        assert heading in text
    assert "Provider cache share" in text
    assert "40% cached, saved $0.01" in text
    assert "~$0.002" in text  # estimates marked
    assert "saves ~$0.05" in text
    assert "Moving the changing text after them saves unpriced" in text
    assert "+$0.10 (+100.0%)" in text
    assert "input +3,000 tokens" in text


def test_the_same_report_in_the_terminal_and_markdown() -> None:
    lines = [text for text, _ in terminal_lines(report(), verbose=True)]
    assert "cost against main.json (replay): $0.65 -> $0.75 per run, +$0.10 (+15.4%)" in lines
    assert any(line.startswith("1. anthropic claude-sonnet-4-5: system: 2,000 tokens") for line in lines)
    assert "1 call to free endpoints (count_tokens, moderations, GET): $0" in lines
    short = [text for text, _ in terminal_lines(report(), verbose=False)]
    assert (
        "caching advice: 2 prompt prefixes, ~$0.05 per run to save (-v or promptcache advise says where)"
        in short
    )
    md = markdown(report())
    assert "| +$0.10 (+100.0%) | test_x.py::test_<script>alert(1)</script> | input +3,000 tokens |" in md
    assert "#### Prompt caching" in md
    row = "| claude-sonnet-4-5 | 3 | 2 | 1 | 1,000 | 400 | 0 | $0.50 | $0.25 | 40% | $0.01 |"
    assert f"{row} ~$0.002 (1) |" in md
