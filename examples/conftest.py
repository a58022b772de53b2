"""Clients for the demo. They point at DEMO_LLM_URL, where the recordings were made (the fake provider
in tests/llm_server.py). In replay no request leaves the machine and no key is needed."""

from __future__ import annotations

import os

import anthropic
import openai
import pytest

BASE = os.environ.get("DEMO_LLM_URL", "http://127.0.0.1:8765")
# The SDKs refuse to start without a key; replay never sends one anywhere.
NO_KEY = "replay-needs-no-key"


@pytest.fixture
def oai() -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{BASE}/v1", api_key=os.environ.get("OPENAI_API_KEY") or NO_KEY)


@pytest.fixture
def claude() -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=BASE, api_key=os.environ.get("ANTHROPIC_API_KEY") or NO_KEY)
