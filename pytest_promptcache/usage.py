"""Tokens from responses and streams, and what they cost.

Token convention (genai-prices'): ``input_tokens`` is the whole input, cache reads and writes included;
``output_tokens`` includes reasoning tokens. Extraction never depends on pricing: a model genai-prices
does not know still has its tokens counted.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from . import usage_cohere_ollama
from .estimate import FREE, estimate, is_free, is_free_endpoint
from .eventstream import event_type
from .models import Measured, RecordedResponse, TokenUsage
from .prices import DATE_SUFFIX, ModelPrice, PriceError, money, parse_prices

__all__ = [
    "Measured",
    "ModelPrice",
    "PriceBook",
    "PriceError",
    "api_family",
    "extract",
    "is_free",
    "measure",
    "parse_prices",
]


def api_family(path: str) -> str | None:
    """Which wire format a path speaks: how to read its usage and whose prices apply."""
    if "/model/" in path:
        if path.endswith(("/converse", "/converse-stream")):
            return "bedrock-converse"
        if path.endswith(("/invoke", "/invoke-with-response-stream")):
            return "bedrock-invoke"
    if path.endswith("/messages") or (
        "/publishers/anthropic/" in path and path.endswith((":rawPredict", ":streamRawPredict"))
    ):
        return "anthropic"
    if path.endswith((":generateContent", ":streamGenerateContent", ":embedContent", ":batchEmbedContents")):
        return "gemini"
    if path.endswith(("/v2/chat", "/v2/embed")):
        return "cohere"
    if path.endswith(("/api/chat", "/api/generate", "/api/embed")):
        return "ollama"
    if path.endswith("/responses"):
        return "openai-responses"
    if path.endswith("/embeddings"):
        return "openai-embeddings"
    if path.endswith(("/chat/completions", "/completions")):
        return "openai-chat"
    return None


BEDROCK_FAMILIES = frozenset({"bedrock-converse", "bedrock-invoke"})
PROVIDER_OF_FAMILY = {
    "bedrock-converse": "aws",
    "bedrock-invoke": "aws",
    "anthropic": "anthropic",
    "gemini": "google",
    "openai-responses": "openai",
    "openai-embeddings": "openai",
    "openai-chat": "openai",
    "cohere": "cohere",
}
# Models the user runs themselves (Ollama): genai-prices has no provider for them, and a model name
# alike one it prices elsewhere ("deepseek-r1:8b", DeepSeek's API) would be a wrong price.
OWN_MODEL_FAMILIES = frozenset({"ollama"})


def _int(mapping: Any, *path: str) -> int:
    value: Any = mapping
    for part in path:
        if not isinstance(value, dict):
            return 0
        value = value.get(part)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _openai_usage(usage: Any) -> TokenUsage | None:
    if not isinstance(usage, dict):
        return None
    if "prompt_tokens" in usage:  # chat, completions, embeddings
        return TokenUsage(
            input_tokens=_int(usage, "prompt_tokens"),
            cached_input_tokens=_int(usage, "prompt_tokens_details", "cached_tokens"),
            output_tokens=_int(usage, "completion_tokens"),
            reasoning_tokens=_int(usage, "completion_tokens_details", "reasoning_tokens"),
        )
    if "input_tokens" in usage:  # responses
        return TokenUsage(
            input_tokens=_int(usage, "input_tokens"),
            cached_input_tokens=_int(usage, "input_tokens_details", "cached_tokens"),
            output_tokens=_int(usage, "output_tokens"),
            reasoning_tokens=_int(usage, "output_tokens_details", "reasoning_tokens"),
        )
    return None


def _anthropic_usage(usage: Mapping[str, Any]) -> TokenUsage:
    cache_read = _int(usage, "cache_read_input_tokens")
    cache_write = _int(usage, "cache_creation_input_tokens")
    # Anthropic's input_tokens excludes cached input; the convention here counts the whole input.
    return TokenUsage(
        input_tokens=_int(usage, "input_tokens") + cache_read + cache_write,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=_int(usage, "output_tokens"),
    )


def _gemini_usage(meta: Any) -> TokenUsage | None:
    if not isinstance(meta, dict):
        return None
    thoughts = _int(meta, "thoughtsTokenCount")
    return TokenUsage(
        input_tokens=_int(meta, "promptTokenCount") + _int(meta, "toolUsePromptTokenCount"),
        cached_input_tokens=_int(meta, "cachedContentTokenCount"),
        # Gemini reports thinking apart from the answer; both are billed as output.
        output_tokens=_int(meta, "candidatesTokenCount") + thoughts,
        reasoning_tokens=thoughts,
    )


def _event_payloads(response: RecordedResponse) -> Iterable[dict[str, Any]]:
    for ev in response.events or ():
        if isinstance(ev.data, dict):
            yield ev.data


def _converse_usage(usage: Any) -> TokenUsage | None:
    if not isinstance(usage, dict):
        return None
    cache_read = _int(usage, "cacheReadInputTokens")
    cache_write = _int(usage, "cacheWriteInputTokens")
    # Like Anthropic's, Bedrock's inputTokens leaves the cached input out.
    return TokenUsage(
        input_tokens=_int(usage, "inputTokens") + cache_read + cache_write,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=_int(usage, "outputTokens"),
    )


def _bedrock(response: RecordedResponse, family: str) -> tuple[TokenUsage | None, str | None]:
    """Converse: ``usage`` in the body, or in the stream's ``metadata`` event. Invoke: the model's own
    body (Anthropic's shape, also inside invoke-with-response-stream's chunks), else Bedrock's counts."""
    messages = response.event_stream
    body = response.body if isinstance(response.body, dict) else {}
    if family == "bedrock-converse":
        if messages is None:
            return _converse_usage(body.get("usage")), None
        found = [m.payload for m in messages if event_type(m) == "metadata" and isinstance(m.payload, dict)]
        return (_converse_usage(found[-1].get("usage")) if found else None), None
    if messages is None:
        raw_model = body.get("model")
        model = raw_model if isinstance(raw_model, str) else None
        anthropic = body.get("usage")
        if isinstance(anthropic, dict):
            return _anthropic_usage(anthropic), model
        headers = response.headers
        if not headers.get("x-amzn-bedrock-input-token-count", "").isdigit():
            return None, model
        counts = {k: int(v) for k, v in headers.items() if k.startswith("x-amzn-bedrock-") and v.isdigit()}
        return _counts_usage(
            counts, "x-amzn-bedrock-input-token-count", "x-amzn-bedrock-output-token-count"
        ), model
    chunks = [m.decoded for m in messages if isinstance(m.decoded, dict)]
    usage, model = _anthropic_stream(chunks)
    if usage is None:
        metrics = [c.get("amazon-bedrock-invocationMetrics") for c in chunks]
        found = [m for m in metrics if isinstance(m, dict)]
        if found:
            usage = _counts_usage(found[-1], "inputTokenCount", "outputTokenCount")
    return usage, model


def _counts_usage(counts: Mapping[str, Any], input_key: str, output_key: str) -> TokenUsage:
    """Bedrock's own counts, for any model: ``inputTokenCount`` in the last chunk of a stream, or the
    ``x-amzn-bedrock-input-token-count`` header of an invoke response."""
    return TokenUsage(input_tokens=_int(counts, input_key), output_tokens=_int(counts, output_key))


def _anthropic_stream(payloads: Iterable[dict[str, Any]]) -> tuple[TokenUsage | None, str | None]:
    fields: dict[str, Any] = {}
    model: str | None = None
    for data in payloads:
        if data.get("type") == "message_start" and isinstance(data.get("message"), dict):
            message = data["message"]
            model = message.get("model") if isinstance(message.get("model"), str) else model
            fields.update(message.get("usage") or {})
        elif data.get("type") == "message_delta" and isinstance(data.get("usage"), dict):
            # message_delta carries cumulative counts; they replace message_start's.
            fields.update({k: v for k, v in data["usage"].items() if v is not None})
    return (_anthropic_usage(fields) if fields else None), model


def extract(response: RecordedResponse, family: str | None) -> tuple[TokenUsage | None, str | None]:
    """Usage and the model the provider says it used, from a JSON body or a stream's events."""
    if family in BEDROCK_FAMILIES:
        return _bedrock(response, family)
    if family == "cohere":
        return usage_cohere_ollama.cohere(response), None
    if family == "ollama":
        return usage_cohere_ollama.ollama(response)
    if response.is_stream:
        return _from_stream(response, family)
    body = response.body
    if not isinstance(body, dict):
        return None, None
    raw_model = body.get("model")
    model = raw_model if isinstance(raw_model, str) else None
    if family == "anthropic":
        usage = body.get("usage")
        return (_anthropic_usage(usage) if isinstance(usage, dict) else None), model
    if family == "gemini":
        version = body.get("modelVersion")
        return _gemini_usage(body.get("usageMetadata")), version if isinstance(version, str) else None
    return _openai_usage(body.get("usage")), model


def _from_stream(response: RecordedResponse, family: str | None) -> tuple[TokenUsage | None, str | None]:
    usage: TokenUsage | None = None
    model: str | None = None
    if family == "anthropic":
        return _anthropic_stream(_event_payloads(response))
    for data in _event_payloads(response):
        if family == "gemini":
            if "usageMetadata" in data:
                usage = _gemini_usage(data["usageMetadata"])
            if isinstance(data.get("modelVersion"), str):
                model = data["modelVersion"]
        elif family == "openai-responses":
            inner = data.get("response")
            if data.get("type") in ("response.completed", "response.incomplete") and isinstance(inner, dict):
                usage = _openai_usage(inner.get("usage")) or usage
                model = inner.get("model") if isinstance(inner.get("model"), str) else model
        else:
            if isinstance(data.get("model"), str):
                model = data["model"]
            # Only the final chunk of a stream with include_usage carries usage; others have null.
            usage = _openai_usage(data.get("usage")) or usage
    return usage, model


def measure(
    response: RecordedResponse,
    path: str,
    model: str | None,
    url: str,
    at: datetime,
    prices: PriceBook,
    *,
    body: Any = None,
    method: str = "POST",
) -> Measured:
    """Usage and USD of one response to a request with JSON ``body``, priced at ``at``. Without usage
    in the response, its tokens are estimated from ``body`` and the response's text."""
    if response.status >= 400:
        return Measured()
    if method.upper() == "GET":  # a retrieval: what it returns may report the usage of another call
        return Measured(FREE, 0.0, 0.0)
    family = api_family(path)
    usage, response_model = extract(response, family)
    if usage is None:
        # A counting or moderation endpoint is free unless the response itself reports tokens used
        # (another provider's /moderations, priced as it says).
        if is_free_endpoint(path):
            return Measured(FREE, 0.0, 0.0)
        usage = estimate(body, family, response)
        if usage is None:
            return Measured()
    # Bedrock's model id in the path names the region and the offer ("global.", "us."), which prices
    # differ by; the model's own body only names the model.
    models = (model, response_model) if family in BEDROCK_FAMILIES else (response_model, model)
    where = url.split("?", 1)[0]
    cost = prices.cost(usage, models, family, where, at)
    if cost is None:
        return Measured(usage)
    saved = Decimal(0)
    if usage.cached_input_tokens or usage.cache_write_tokens:
        plain = TokenUsage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
        uncached = prices.cost(plain, models, family, where, at)
        saved = Decimal(0) if uncached is None else uncached - cost
    return Measured(usage, money(cost), money(saved))


class PriceBook:
    """genai-prices, offline, behind the user's own prices. A price is asked for once per call."""

    def __init__(self, overrides: Mapping[str, ModelPrice] | None = None) -> None:
        self.overrides = dict(overrides or {})

    @functools.cached_property
    def identity(self) -> str:
        """Names the prices this book gives, so that a price kept between sessions (the served-form
        cache) is used only where the same would be given again: the user's own prices, and
        genai-prices' data by its file's size and time (an upgrade or reinstall changes them; reading
        the package's version from its metadata costs ~2 ms more, at every session's start)."""
        spec = importlib.util.find_spec("genai_prices")
        data = "none"
        if spec is not None and spec.origin is not None:
            try:
                info = os.stat(os.path.join(os.path.dirname(spec.origin), "data.py"))
            except OSError:
                data = spec.origin
            else:
                data = f"{spec.origin}:{info.st_size}:{info.st_mtime_ns}"
        own = repr(sorted(self.overrides.items()))
        return hashlib.sha256(f"{data}\n{own}".encode()).hexdigest()[:32]

    def has_override(self, models: Iterable[str | None]) -> bool:
        return any(m and (m in self.overrides or DATE_SUFFIX.sub("", m) in self.overrides) for m in models)

    def cost(
        self, usage: TokenUsage, models: Iterable[str | None], family: str | None, url: str, at: datetime
    ) -> Decimal | None:
        """USD for ``usage`` of the first of ``models`` that has a price, at time ``at``; None if none has."""
        candidates = [m for m in dict.fromkeys(models) if m]
        for model in candidates:
            if model in self.overrides:
                return self.overrides[model].cost(usage)
            base = DATE_SUFFIX.sub("", model)
            if base in self.overrides:
                return self.overrides[base].cost(usage)
        for model in candidates:
            price = _genai_price(usage, model, family, url, at)
            if price is not None:
                return price
        return None


def _genai_price(usage: TokenUsage, model: str, family: str | None, url: str, at: datetime) -> Decimal | None:
    import genai_prices

    gp_usage = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
    )
    # The host says most (groq, together, ...); the wire format says whose API a proxy or a test server
    # imitates; the model name alone is the last resort.
    attempts: list[dict[str, Any]] = [{"provider_api_url": url}]
    if family in PROVIDER_OF_FAMILY:
        attempts.append({"provider_id": PROVIDER_OF_FAMILY[family]})
    if family not in OWN_MODEL_FAMILIES:
        attempts.append({})
    for kwargs in attempts:
        try:
            result = genai_prices.calc_price(gp_usage, model, genai_request_timestamp=at, **kwargs)
        except LookupError:
            continue
        return result.total_price
    return None
