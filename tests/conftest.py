"""Shared fixtures: a real loopback LLM server, and pytester runs of suites as a user would run them."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Imported here so pytester's in-process runs find them in sys.modules instead of importing them again
# for every run: the SDKs cost about a second each, and httpx maps the exceptions of the httpcore it
# imported first, so a fresh httpcore per run would leak unmapped httpcore errors to the clients.
import anthropic  # noqa: F401
import httpcore  # noqa: F401
import httpcore2  # noqa: F401
import openai  # noqa: F401
import pytest
from llm_server import LLMServer

# The same for the plugin's models and the call path of every client library: an in-process run drops
# the modules it imported. A run after it then met a TokenUsage of the first run's class ("Input should
# be ... an instance of TokenUsage") when a module ran on its own (tests/test_more_clients.py); and a test
# module importing ``pytest_promptcache.clients`` kept that module, with its cache of each library's
# handler, while the handler's own module, first imported by a run, was dropped: the next run's engine
# answered with a Replay of another class than the kept handler checks for ("'Replay' object has no
# attribute 'delay_before_send'", tests/test_bedrock.py before test_async_safety.py). Kept here, every
# run shares one of each.
import pytest_promptcache.clients.aiohttp_send
import pytest_promptcache.clients.httpx_send
import pytest_promptcache.clients.urllib3_send
import pytest_promptcache.models  # noqa: F401
from pytest_promptcache.session import CacheSession
from pytest_promptcache.settings import build_settings

# Suites under tests/suites are run by pytester inside our tests, never collected directly.
collect_ignore = ["suites"]

SUITES = Path(__file__).parent / "suites"
# The first line of every replay miss's message.
MISS = "promptcache: no recording for this request (mode: replay)"

# Credentials the inner suites send. They look real enough for every scrubbing layer to matter.
FAKE_SECRETS = {
    "OPENAI_API_KEY": "sk-proj-TESTKEYabcdefghijklmnopqrstuvwxyz0123456789",
    "ANTHROPIC_API_KEY": "sk-ant-api03-TESTKEYabcdefghijklmnopqrstuvwxyz0123",
    "GEMINI_API_KEY": "AIzaSyTESTKEYabcdefghijklmnopqrstuvwx12",
}


def cache_session(mode: str, root: Path) -> CacheSession:
    """A session of ``mode`` in-process, as the plugin makes one: recordings in ``root/cassettes``, its
    state in ``root/state``, no environment (nothing to scrub, no keys). Install it to intercept."""
    settings = build_settings(
        rootdir=root,
        cli_mode=mode,
        cli_dir=str(root / "cassettes"),
        env={},
        ini={"promptcache_state_dir": str(root / "state")},
    )
    return CacheSession(settings, env={})


def assert_each_failed_on_the_miss(result: pytest.RunResult, tests: int, changed: str) -> None:
    """Each of ``tests`` failures names the miss and shows the ``changed`` text of its request."""
    sections = re.split(r"_{3,} (test_\w+) _{3,}", result.stdout.str())
    failures = dict(zip(sections[1::2], sections[2::2], strict=True))
    assert len(failures) == tests
    for name, text in failures.items():
        assert MISS in text, name
        assert changed in text, name


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server


class Suite:
    """A user's project in a pytester directory, run through the installed plugin."""

    def __init__(self, pytester: pytest.Pytester, server: LLMServer) -> None:
        self.pytester = pytester
        self.server = server
        self.path = pytester.path
        self.cassettes = pytester.path / "cassettes"

    def run(self, *args: str, subprocess: bool = False) -> pytest.RunResult:
        seen = self.path / "seen.jsonl"
        seen.unlink(missing_ok=True)
        # pytest-asyncio (a dev dependency) warns in every run of a project that does not set this.
        args = ("-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function", *args)
        if subprocess:
            return self.pytester.runpytest_subprocess(*args)
        return self.pytester.runpytest_inprocess(*args)

    def seen(self) -> dict[str, Any]:
        lines = (self.path / "seen.jsonl").read_text().splitlines()
        return {entry["test"]: entry["seen"] for entry in map(json.loads, lines)}

    def recordings(self) -> dict[str, dict[str, Any]]:
        return {p.stem: json.loads(p.read_text()) for p in sorted(self.cassettes.glob("*.json"))}

    def cassette_text(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.cassettes.rglob("*")) if p.is_file())


@pytest.fixture
def suite(pytester: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> Suite:
    monkeypatch.setenv("LLM_URL", llm_server.url)
    monkeypatch.setenv("SEEN_FILE", str(pytester.path / "seen.jsonl"))
    for name, value in FAKE_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PROMPTCACHE_MODE", raising=False)
    return Suite(pytester, llm_server)


CLIENTS_CONFTEST = """
import os
import openai
import pytest

BASE = os.environ["LLM_URL"]

@pytest.fixture
def oai():
    return openai.OpenAI(base_url=BASE + "/v1")

@pytest.fixture
def oai0():
    return openai.OpenAI(base_url=BASE + "/v1", max_retries=0)

@pytest.fixture
def claude():
    # Imported here: it costs about two seconds, which a subprocess or xdist worker that never asks
    # for Claude need not pay (in-process runs find it already imported).
    import anthropic
    return anthropic.Anthropic(base_url=BASE)

def ask(client, text, model="gpt-4.1-mini", **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kw)
"""


@pytest.fixture
def clients(suite: Suite) -> Suite:
    """A suite with SDK client fixtures and ``ask(client, text)`` in its conftest."""
    suite.pytester.makeconftest(CLIENTS_CONFTEST)
    return suite


@pytest.fixture
def newcomer(suite: Suite) -> Suite:
    for source in (SUITES / "newcomer").glob("*.py"):
        shutil.copy(source, suite.path / source.name)
    return suite
