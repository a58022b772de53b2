"""What each provider's prompt cache needs and charges: the rules the caching advisor applies.

Checked against the providers' documentation in late 2026:

- OpenAI caches automatically every prompt prefix of 1,024 tokens or more; cached input is billed at the
  model's cache-read price, writing costs nothing extra.
- Anthropic caches up to a ``cache_control`` breakpoint (or, with a top-level ``cache_control``, up to
  the last cacheable block). Minimum: 4,096 tokens for Opus 4.5/4.6 and Haiku 4.5, 2,048 for Sonnet 4.6
  and Haiku 3/3.5, 1,024 for the other models. A cache write costs 1.25 times the input price (5
  minutes), a read 0.1 times.
- Gemini 2.5 and later cache implicitly (1,024 tokens for Flash, 4,096 for Pro), or explicitly through
  ``cachedContents``.
- Bedrock caches at ``cachePoint`` blocks (converse) or ``cache_control`` (Anthropic models through
  invoke), with the model's own minimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from .models import TokenUsage
from .usage import PROVIDER_OF_FAMILY, PriceBook

# Longest first: the first pattern a model id contains decides.
_ANTHROPIC_MINIMUMS: tuple[tuple[str, int], ...] = (
    ("opus-4-6", 4096),
    ("opus-4-5", 4096),
    ("haiku-4-5", 4096),
    ("sonnet-4-6", 2048),
    ("3-5-haiku", 2048),
    ("3-haiku", 2048),
    ("haiku-3", 2048),
)
# Caches that need no opt-in and charge nothing to write.
AUTOMATIC = frozenset({"openai-chat", "openai-responses", "gemini"})
CACHEABLE_FAMILIES = frozenset(
    {"openai-chat", "openai-responses", "anthropic", "gemini", "bedrock-converse", "bedrock-invoke"}
)


def min_cacheable(family: str, model: str) -> int:
    """The shortest prefix, in tokens, the provider caches for ``model``."""
    name = model.lower()
    if family == "gemini":
        return 4096 if "pro" in name else 1024
    if family in ("anthropic", "bedrock-converse", "bedrock-invoke") and "claude" in name:
        return next((tokens for pattern, tokens in _ANTHROPIC_MINIMUMS if pattern in name), 1024)
    return 1024


def breakpoint_hint(family: str, part_label: str) -> str:
    """Where to mark the end of a cacheable prefix whose last part is ``part_label``."""
    label = part_label.split(" ", 1)[0]  # "messages[2] (user)" -> "messages[2]"
    if family in ("openai-chat", "openai-responses"):
        return (
            f"automatic for 1,024+ tokens: keep everything up to {label} first and byte-identical, "
            "and give these calls one prompt_cache_key"
        )
    if family == "gemini":
        return (
            f"implicit on Gemini 2.5+: keep everything up to {label} first and identical; for a sure "
            "discount, create an explicit cache (cachedContents) of it and pass cached_content"
        )
    if family == "bedrock-converse":
        if label == "tools":
            return 'a {"cachePoint": {"type": "default"}} after the last tool in toolConfig.tools'
        if label == "system":
            return 'a {"cachePoint": {"type": "default"}} block at the end of system'
        return f'a {{"cachePoint": {{"type": "default"}}}} block at the end of {label}.content'
    if label == "tools":
        return 'cache_control: {"type": "ephemeral"} on the last tool definition'
    if label in ("system", "instructions"):
        return 'cache_control: {"type": "ephemeral"} on the last system block (system as a list of blocks)'
    return f'cache_control: {{"type": "ephemeral"}} on the last content block of {label}'


@dataclass(frozen=True)
class CachePrices:
    """USD per token for one model: uncached input, a cache read, a cache write."""

    input: Decimal
    read: Decimal
    write: Decimal

    def saving(self, tokens: int, uses: int, already_cached_uses: int = 0) -> Decimal:
        """What caching a ``tokens`` prefix saves over ``uses`` calls within the cache's lifetime: every
        use after the first reads it instead of paying full input, the first writes it. Uses that the
        provider already served from its cache saved their share already (and wrote it)."""
        if uses < 2 or tokens <= 0:
            return Decimal(0)
        reads = uses - 1 - min(already_cached_uses, uses - 1)
        premium = Decimal(0) if already_cached_uses else tokens * (self.write - self.input)
        return tokens * reads * (self.input - self.read) - premium


def cache_prices(prices: PriceBook, family: str, model: str, url: str, at: datetime) -> CachePrices | None:
    """The model's prices per token (the user's own first, then genai-prices), or None if unpriced."""
    unit = 1_000_000

    def cost(usage: TokenUsage) -> Decimal | None:
        return prices.cost(usage, (model,), family, url, at)

    plain = cost(TokenUsage(input_tokens=unit))
    read = cost(TokenUsage(input_tokens=unit, cached_input_tokens=unit))
    if plain is None or read is None:
        return None
    write = plain
    if family not in AUTOMATIC:
        written = cost(TokenUsage(input_tokens=unit, cache_write_tokens=unit))
        write = plain if written is None else written
    return CachePrices(plain / unit, read / unit, write / unit)


def provider_of(family: str) -> str:
    return PROVIDER_OF_FAMILY.get(family, family)
