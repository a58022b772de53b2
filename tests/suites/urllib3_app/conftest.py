"""Fixtures of a suite whose LLM calls go through urllib3: requests, raw urllib3 and boto3's
``bedrock-runtime`` client, all pointed at the fake provider in LLM_URL.

Each test writes what it saw through the ``seen`` fixture to SEEN_FILE, so the outer test can compare
what a record run and a replay run showed the code under test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

BASE = os.environ["LLM_URL"]


@pytest.fixture
def bedrock() -> Any:
    # Default retries on purpose: a miss must still fail fast with botocore retrying.
    return boto3.client("bedrock-runtime", endpoint_url=BASE, region_name="us-east-1")


@pytest.fixture
def seen(request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    items: list[Any] = []
    yield items
    with Path(os.environ["SEEN_FILE"]).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"test": request.node.nodeid, "seen": items}) + "\n")
