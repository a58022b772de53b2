"""A suite written for pytest-recording, as LLM projects write them: a ``vcr_config`` that filters
credentials, a serializer of its own registered in ``pytest_recording_configure``, clients pointed at
the provider the cassettes were recorded against.

The cassettes under ``cassettes/`` are real vcrpy output: recorded with pytest-recording against the
loopback server of ``tests/llm_server.py`` listening on port 38457 (nothing listens there when the
suite replays):

    python tests/llm_server.py --port 38457 &
    cd tests/suites/vcr_suite && pytest -p no:promptcache --record-mode=once
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from vcr_sample import BASE, serializer


def pytest_recording_configure(config: pytest.Config, vcr: Any) -> None:
    vcr.register_serializer("yaml", serializer)


@pytest.fixture
def vcr_config() -> dict[str, Any]:
    return {
        "filter_headers": ["authorization", "x-api-key", "anthropic-beta", ("user-agent", "redacted")],
        "decode_compressed_response": True,
    }


@pytest.fixture
def oai() -> openai.OpenAI:
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
