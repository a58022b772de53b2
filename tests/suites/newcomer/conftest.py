"""Fixtures of a newcomer's suite: real SDK clients pointed at the URL in LLM_URL.

Each test writes what it saw (ids, texts, chunks) through the ``seen`` fixture to SEEN_FILE, so the
outer test can compare what a record run and a replay run showed the code under test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

BASE = os.environ["LLM_URL"]


@pytest.fixture
def oai() -> openai.OpenAI:
    # Default retries on purpose: a miss must still fail fast with the SDK retrying.
    return openai.OpenAI(base_url=BASE + "/v1")


@pytest.fixture
def aoai() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=BASE + "/v1")


@pytest.fixture
def claude() -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=BASE)


@pytest.fixture
def aclaude() -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=BASE)


@pytest.fixture
def seen(request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    items: list[Any] = []
    yield items
    with Path(os.environ["SEEN_FILE"]).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"test": request.node.nodeid, "seen": items}) + "\n")
