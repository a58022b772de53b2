"""Make docs/report.png, the README's picture of the HTML report: a small suite recorded against the
tests' loopback LLM server, a prompt grown on a "branch", the report compared with main's, opened in
Debian's chromium.

    python docs/screenshot.py    # needs the dev extras and /usr/bin/chromium
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import CLIENTS_CONFTEST, FAKE_SECRETS  # noqa: E402
from llm_server import LLMServer  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from test_html_report import CHROMIUM, LAUNCH_ARGS  # noqa: E402

SUITE = """
import pytest
from conftest import ask

POLICY = " ".join(["you are the support agent of a shop: answer about orders refunds and delivery"] * 120)

@pytest.mark.parametrize("order", range(12))
def test_support_answers(oai0, order):
    question = {{"role": "user", "content": f"where is order {{order}}"}}
    oai0.chat.completions.create(
        model="gpt-4.1-mini", messages=[{{"role": "system", "content": POLICY}}, question]
    )

def test_summary(oai0):
    ask(oai0, "summarise the ticket" + {extra!r})

def test_streamed_reply(oai0):
    list(ask(oai0, "stream a reply without usage", stream=True))

@pytest.mark.parametrize("n", range(3))
def test_triage_with_claude(claude, n):
    claude.messages.create(
        model="claude-sonnet-4-5", max_tokens=64,
        system=f"Request received 2026-11-30T10:0{{n}}:00Z. " + POLICY,
        messages=[{{"role": "user", "content": f"triage ticket {{n}}"}}],
    )

def test_cached_claude(claude):
    claude.messages.create(
        model="claude-haiku-4-5", max_tokens=64,
        system=[{{"type": "text", "text": "policy", "cache_control": {{"type": "ephemeral"}}}}],
        messages=[{{"role": "user", "content": "cached"}}],
    )

def test_token_count(claude):
    claude.messages.count_tokens(model="claude-sonnet-4-5", messages=[{{"role": "user", "content": "hi"}}])
"""


def main() -> None:
    with LLMServer() as server, tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "conftest.py").write_text(CLIENTS_CONFTEST)
        env = {**os.environ, **FAKE_SECRETS, "LLM_URL": server.url, "NO_COLOR": "1"}
        env.pop("PROMPTCACHE_MODE", None)

        def run(extra: str, *args: str) -> None:
            (project / "test_app.py").write_text(SUITE.format(extra=extra))
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--promptcache=record"]
            subprocess.run([*command, *args], cwd=project, env=env, check=True)

        run("", "--promptcache-report=main.json")
        grown = " and every earlier message" * 1500
        run(grown, "--promptcache-compare=main.json", "--promptcache-report-html=r.html")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto((project / "r.html").as_uri())
            page.screenshot(path=str(ROOT / "docs" / "report.png"), full_page=True)
            browser.close()


if __name__ == "__main__":
    main()
