"""An async app built on aiohttp, as its suite would test it: raw aiohttp, litellm's async path (its
httpx transport over aiohttp) and google-genai's async client, with a blocking-call detector
(blockbuster, every module scanned) around every test.

Each test writes what its code saw (ids, texts, chunks) through ``seen`` to SEEN_FILE, so the outer
test can compare a record run with replay runs. With AIOHTTP_SUITE_CHANGE set, every prompt changes
and every test swallows whatever its call raises: only the plugin can then fail it.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpcore  # noqa: F401  (imported lazily by the SDKs, reading package metadata: a blocking call
import httpcore2  # noqa: F401  a real suite's imports have made long before its first test)
import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from google import genai
from google.genai import types
from suite_support import BASE

LITELLM_BLOCKS = [
    # It builds its HTTP client on the event loop: looks for its CA bundle on disk, loads it.
    ("litellm/llms/openai/common_utils.py", "_get_async_http_client"),
]


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx() as detector:
        # litellm's own blocking calls, allowed only where litellm makes them: the plugin's stay checked.
        for where, function in LITELLM_BLOCKS:
            for blocking in detector.functions.values():
                blocking.can_block_in(where, function)
        yield detector


@pytest.fixture
def seen(request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    items: list[Any] = []
    yield items
    with Path(os.environ["SEEN_FILE"]).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"test": request.node.nodeid, "seen": items}) + "\n")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield session


@pytest.fixture
async def gemini() -> AsyncIterator[genai.Client]:
    client = genai.Client(api_key=os.environ["GEMINI_API_KEY"], http_options=types.HttpOptions(base_url=BASE))
    # google-genai's async client goes through aiohttp whenever aiohttp is installed: the path under test.
    assert client._api_client._use_aiohttp()
    yield client
    await client.aio.aclose()
