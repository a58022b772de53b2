"""The caching advisor's findings as lines of text: the ``promptcache advise`` command and the
terminal report print the same."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Advice, Finding, VolatilePrefix
from ..prices import usd

PER_RUN = "per run that sends them all within the cache's lifetime"


def _saving(value: float | None) -> str:
    return "unpriced model: saving unknown" if value is None else f"saves ~{usd(value)}"


def _tests(names: list[str], total: int) -> str:
    more = f" (+{total - len(names)} more)" if total > len(names) else ""
    return ", ".join(names) + more


def finding_lines(number: int, f: Finding) -> Iterator[str]:
    extends = f", {f.added_tokens:,} beyond {' + '.join(f.extends)}" if f.extends is not None else ""
    yield (
        f"{number}. {f.provider} {f.model}: {' + '.join(f.prefix)}: {f.tokens:,} tokens{extends}, "
        f"sent by {f.uses} calls"
    )
    yield f'   begins "{f.preview}"'
    cached = f"; {f.already_cached_uses} calls already read it from cache" if f.already_cached_uses else ""
    yield f"   {_saving(f.saving_usd)} {PER_RUN}{cached}"
    yield f"   breakpoint: {f.breakpoint}"
    yield f"   tests: {_tests(f.tests, f.test_count)}"


def volatile_lines(number: int, v: VolatilePrefix) -> Iterator[str]:
    examples = " / ".join(f'"{e}"' for e in v.examples)
    yield (
        f"{number}. {v.provider} {v.model}: {v.part} changes at token ~{v.offset_tokens:,} ({examples}); "
        f"{v.cacheable_tokens:,} identical tokens follow, in {v.prompts} prompts sent by {v.uses} calls"
    )
    yield (
        f"   move the changing text after the rest (or out of {v.part}): {_saving(v.saving_usd)} {PER_RUN}"
    )
    yield f"   tests: {', '.join(v.tests)}"


def advice_lines(advice: Advice, limit: int | None = None) -> Iterator[str]:
    """Every finding (or the first ``limit`` of each kind), then the total."""
    if advice.empty:
        yield "no prompt prefix is sent twice at a cacheable length: nothing to cache"
        return
    if advice.findings:
        yield "repeated prompt prefixes a provider cache would serve:"
        for i, f in enumerate(advice.findings[:limit]):
            yield from finding_lines(i + 1, f)
        if limit is not None and len(advice.findings) > limit:
            yield f"   ... and {len(advice.findings) - limit} more (promptcache advise lists them all)"
    if advice.volatile:
        yield "prefixes broken by changing text near their front:"
        for i, v in enumerate(advice.volatile[:limit]):
            yield from volatile_lines(i + 1, v)
    yield f"caching could save ~{usd(advice.saving_usd)} {PER_RUN}"
