"""An async suite as real projects write it: pytest-asyncio tests, clients from fixtures, and a
blocking-call detector (blockbuster) around every test, scanning every module. Any blocking call the
plugin made on the event loop (reading a recording, a lock, a state file, saving) would fail the test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import anthropic
import httpcore  # noqa: F401  (clients import these lazily, reading package metadata: their own
import httpcore2  # noqa: F401  blocking call, which a real suite's imports have made long before)
import openai
import pytest
from blockbuster import BlockBuster, blockbuster_ctx

BASE = os.environ["LLM_URL"]


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx() as detector:
        yield detector


@pytest.fixture
def aoai() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=BASE + "/v1", max_retries=0)


@pytest.fixture
def aclaude() -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=BASE, max_retries=0)
