"""What the caching advisor finds (``advice``), as the session report and ``promptcache advise`` carry it:
apart from the advisor, so a report that holds no advice loads none of its machinery."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

ADVICE_SCHEMA_VERSION: Literal[1] = 1


class Finding(BaseModel):
    model_config = ConfigDict(defer_build=True)

    provider: str
    model: str
    prefix: list[str]  # the parts it spans, in order: "tools", "system", "messages[0] (system)"
    preview: str  # how its last part begins
    tokens: int  # the prefix's tokens (estimated, scaled to reported usage)
    added_tokens: int  # beyond the finding it extends (``extends``); all of them otherwise
    extends: list[str] | None = None  # the prefix of the shorter finding (same model) this one lengthens
    uses: int  # calls that send it
    already_cached_uses: int  # of those, calls the provider already served it to from cache
    tests: list[str]
    test_count: int
    breakpoint: str
    min_tokens: int
    saving_usd: float | None  # per run that sends all of them within the cache's lifetime; None: unpriced


class VolatilePrefix(BaseModel):
    model_config = ConfigDict(defer_build=True)

    provider: str
    model: str
    part: str
    offset_tokens: int  # where the changing text starts
    examples: list[str]  # the changing text in two of the prompts
    cacheable_tokens: int  # what follows it, identical in all of them
    prompts: int  # distinct prompts that differ only there
    uses: int
    tests: list[str]
    saving_usd: float | None  # if the changing text moved after the rest


class Advice(BaseModel):
    model_config = ConfigDict(defer_build=True)

    schema_version: Literal[1] = ADVICE_SCHEMA_VERSION
    recordings: int = 0  # distinct requests looked at
    unreadable: int = 0
    truncated: bool = False  # more recordings than the advisor reads
    findings: list[Finding] = []
    volatile: list[VolatilePrefix] = []
    saving_usd: float = 0.0  # findings and volatile prefixes together, where priced

    @property
    def empty(self) -> bool:
        return not self.findings and not self.volatile
