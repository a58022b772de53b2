"""Usage in Cohere's v2 and Ollama's wire formats, apart from ``usage`` so the formats every suite
meets stay in one place and these two in another.

Cohere v2 reports ``billed_units`` (what the bill counts) and ``tokens`` (what the model read, prompt
template included): the bill is what dollars are about, so ``billed_units`` wins, ``tokens`` stands in
when a response has no bill. A chat carries it in ``usage`` (a stream: in the ``message-end`` event's
``delta``), an embedding in ``meta``.

Ollama reports ``prompt_eval_count`` and ``eval_count`` in its last object: the body, or a stream's
last line (newline-delimited JSON, stored as text).
"""

from __future__ import annotations

import json
from typing import Any

from .models import RecordedResponse, TokenUsage

# A stream's last line is all usage needs; longer than this it is no usage object.
MAX_LAST_LINE = 64 * 1024


def _count(mapping: Any, name: str) -> int | None:
    """A token count: an integer, or a float with no fraction (Cohere's schema says float)."""
    value = mapping.get(name) if isinstance(mapping, dict) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def _cohere_usage(usage: Any) -> TokenUsage | None:
    if not isinstance(usage, dict):
        return None
    counts: dict[str, int] = {}
    for source in (usage.get("tokens"), usage.get("billed_units")):
        for name in ("input_tokens", "output_tokens"):
            found = _count(source, name)
            if found is not None:
                counts[name] = found  # billed_units, read last, wins
    if not counts:
        return None
    return TokenUsage(
        input_tokens=counts.get("input_tokens", 0), output_tokens=counts.get("output_tokens", 0)
    )


def cohere(response: RecordedResponse) -> TokenUsage | None:
    if response.events is not None:
        usage: TokenUsage | None = None
        for event in response.events:
            data = event.data
            if isinstance(data, dict) and data.get("type") == "message-end":
                delta = data.get("delta")
                usage = _cohere_usage(delta.get("usage") if isinstance(delta, dict) else None) or usage
        return usage
    body = response.body
    if not isinstance(body, dict):
        return None
    return _cohere_usage(body.get("usage")) or _cohere_usage(body.get("meta"))


def _last_object(response: RecordedResponse) -> dict[str, Any] | None:
    if isinstance(response.body, dict):
        return response.body
    if response.text is None:
        return None
    last = response.text.rstrip()
    last = last[last.rfind("\n") + 1 :]
    if len(last) > MAX_LAST_LINE:
        return None
    try:
        found = json.loads(last)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def ollama(response: RecordedResponse) -> tuple[TokenUsage | None, str | None]:
    """Usage and the model named, from a body or the last line of a stream."""
    last = _last_object(response)
    if last is None:
        return None, None
    model = last.get("model") if isinstance(last.get("model"), str) else None
    prompt, generated = _count(last, "prompt_eval_count"), _count(last, "eval_count")
    if prompt is None and generated is None:
        return None, model
    # Ollama leaves prompt_eval_count out when its prompt cache held the whole prompt.
    return TokenUsage(input_tokens=prompt or 0, output_tokens=generated or 0), model
