"""A suite that calls LLMs through litellm (sync), google-genai (sync), Cohere's and Ollama's SDKs, all
against the loopback server at LLM_URL.

Each test writes what its code saw (ids, texts, chunks, usage) through ``seen`` to SEEN_FILE, so the
outer test can compare a record run with replay runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cohere
import ollama
import pytest
from google import genai
from google.genai import types

BASE = os.environ["LLM_URL"]


@pytest.fixture
def seen(request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    items: list[Any] = []
    yield items
    with Path(os.environ["SEEN_FILE"]).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"test": request.node.nodeid, "seen": items}) + "\n")


@pytest.fixture
def co() -> cohere.ClientV2:
    return cohere.ClientV2(api_key=os.environ["CO_API_KEY"], base_url=BASE)


@pytest.fixture
def llama() -> ollama.Client:
    return ollama.Client(host=BASE)


@pytest.fixture
def gemini() -> Iterator[genai.Client]:
    client = genai.Client(api_key=os.environ["GEMINI_API_KEY"], http_options=types.HttpOptions(base_url=BASE))
    yield client
    client.close()
