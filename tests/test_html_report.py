"""The HTML report, opened in a real headless browser: Debian's chromium (``.ci/run`` installs it),
driven by playwright, never a browser playwright downloads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import Suite
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SUITE = """
from conftest import ask

def test_chat(oai0):
    ask(oai0, "a chat <b>with markup</b> & an ampersand")

def test_stream_without_usage(oai0):
    list(ask(oai0, "a stream that carries no usage", stream=True))

def test_cached(claude):
    claude.messages.create(
        model="claude-sonnet-4-5", max_tokens=64,
        system=[{"type": "text", "text": "policy", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "cached"}],
    )

def test_moderation(oai0):
    oai0.moderations.create(input="free")
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium), as .ci/run does"
        )
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield launched
        launched.close()


class _Tags(HTMLParser):
    """Every tag and attribute of the page, to check what it could load."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.mark.slow  # a recording run, a replay and a browser: seconds
def test_the_html_report_renders_the_totals_in_chromium(clients: Suite, browser: Browser) -> None:
    clients.pytester.makepyfile(test_app=SUITE)
    clients.run("--promptcache=record").assert_outcomes(passed=4)
    result = clients.run("--promptcache-report-html=out/report.html", "--promptcache-report=r.json")
    result.assert_outcomes(passed=4)
    page_path = clients.path / "out" / "report.html"
    report: dict[str, Any] = json.loads((clients.path / "r.json").read_text())
    totals = report["totals"]

    # Self-contained: no script, nothing fetched from anywhere.
    tags = _Tags()
    tags.feed(page_path.read_text())
    assert not [t for t, _ in tags.tags if t in ("script", "link", "img", "iframe", "object")]
    assert not [a for _, attrs in tags.tags for n, a in attrs.items() if n in ("src", "href") and a]

    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_path.as_uri())
    text = page.inner_text("body")
    assert errors == []
    assert requests == [page_path.as_uri()]

    assert "promptcache: LLM calls, tokens and cost" in text
    assert f"{totals['calls']}\nLLM calls: 4 replayed, 0 live, 0 missed" in text
    assert "saved by replay" in text
    assert "estimated: 1 call without usage" in text
    assert "1\ncalls to free endpoints, $0" in text
    assert "a chat <b>with markup</b>" not in page.content()  # escaped, never markup
    # The charts drew a bar for each model, with what it cost on hover.
    bars = page.locator("svg.chart rect title").all_text_contents()
    assert any(t.startswith("claude-sonnet-4-5: $") and "replayed" in t for t in bars)
    assert any(t.startswith("gpt-4.1-mini: ~$") and "estimated" in t for t in bars)
    widths = page.locator("svg.chart rect").evaluate_all("rects => rects.map(r => r.getBBox().width)")
    assert len(widths) >= len(bars) > 0
    assert all(w > 0 for w in widths)
    for model in report["by_model"]:
        assert model in text
    shot = clients.path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()


def test_an_html_path_that_cannot_be_written_is_one_line(clients: Suite) -> None:
    clients.pytester.makepyfile(test_app="def test_nothing():\n    pass\n")
    (clients.path / "taken").mkdir()
    result = clients.run("--promptcache-report-html=taken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        [
            "promptcache: could not write the HTML report to */taken: *; "
            "give --promptcache-report-html a writable file path"
        ]
    )
