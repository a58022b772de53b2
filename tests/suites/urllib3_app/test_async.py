"""An async app using the blocking clients as async code must: in worker threads (asyncio.to_thread),
under a blocking-call detector (blockbuster) scanning every module. The plugin's part of each call
runs in the client's thread, never on the event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
import requests
from blockbuster import BlockBuster, blockbuster_ctx

BASE = os.environ["LLM_URL"]
PREFIX = os.environ.get("PROMPT_PREFIX", "Hi")


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx() as detector:
        yield detector


@pytest.mark.asyncio
async def test_requests_and_bedrock_in_threads(seen: list[Any]) -> None:
    # Clients are built outside the detector's reach too: boto3 reads its data files when a client is made.
    client = await asyncio.to_thread(
        boto3.client, "bedrock-runtime", endpoint_url=BASE, region_name="us-east-1"
    )
    body: dict[str, Any] = {
        "model": "gpt-4.1-mini",
        "messages": [{"role": "user", "content": f"{PREFIX}: from a thread"}],
    }
    chat, converse = await asyncio.gather(
        asyncio.to_thread(requests.post, f"{BASE}/v1/chat/completions", json=body, timeout=10),
        asyncio.to_thread(
            client.converse,
            modelId="amazon.nova-lite-v1:0",
            messages=[{"role": "user", "content": [{"text": f"{PREFIX}: async converse"}]}],
        ),
    )
    assert chat.status_code == 200
    seen += [chat.json(), converse["output"], converse["usage"]]
