"""Usage for responses that carry none, and calls that cost nothing.

A stream without ``include_usage`` (langchain's ``.stream()``, most OpenAI-compatible providers) says
nothing of its tokens; leaving it out of the totals under-reports a suite. Its tokens are counted here
from the recorded request and the streamed text with tiktoken's o200k_base (``tokens.py``): exact
tokenization for OpenAI's current models, an approximation for others. The result is marked
``source="estimated"`` and every report totals it apart.

Endpoints that bill no tokens (Anthropic's ``count_tokens``, on Vertex too, Gemini's ``:countTokens``,
OpenAI's ``/moderations`` and ``/responses/input_tokens``, any ``GET``: retrievals and downloads) are
calls at zero cost, not calls without usage, unless a POST's response itself reports tokens used
(another provider's ``/moderations``): ``usage.measure`` prices that as it says.
"""

from __future__ import annotations

from typing import Any

from .models import RecordedResponse, TokenUsage
from .prompts import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, response_text, segments
from .tokens import count

FREE_SUFFIXES = ("/count_tokens", "count-tokens:rawPredict", ":countTokens", "/moderations", "/input_tokens")
# Formats whose messages the provider frames with tokens of its own.
_CHAT_FAMILIES = frozenset(
    {"openai-chat", "openai-responses", "anthropic", "bedrock-converse", "bedrock-invoke", "gemini"}
)

FREE = TokenUsage(source="free")


def is_free(method: str, path: str) -> bool:
    return method.upper() == "GET" or is_free_endpoint(path)


def is_free_endpoint(path: str) -> bool:
    """Counting and moderation: endpoints the provider does not bill, whatever the method."""
    return path.endswith(FREE_SUFFIXES)


def estimate(body: Any, family: str | None, response: RecordedResponse) -> TokenUsage | None:
    """Tokens of a successful response without usage, counted; None when there is no text to count."""
    parts = segments(body, family)
    answer = response_text(response)
    if not parts and not answer:
        return None
    input_tokens = sum(count(part.text) for part in parts)
    if family in _CHAT_FAMILIES and parts:
        input_tokens += TOKENS_PER_MESSAGE * len(parts) + TOKENS_PER_REPLY
    return TokenUsage(input_tokens=input_tokens, output_tokens=count(answer), source="estimated")
