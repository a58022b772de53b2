"""The caching advisor: which prompt prefixes the recorded calls send again and again, what the
provider's prompt cache would save on them, and where to mark them.

Each recording is cut into the parts a provider's cache sees in order (``prompts.segments``: tools,
system prompt, messages). Calls of one provider and model that begin with the same parts share that
prefix; a prefix at least the provider's minimum long (``caching.min_cacheable``) and sent by two or
more calls is a finding, reported at its longest: the prefix that exactly its calls share. A finding
nested in a shorter one is priced on the tokens it adds, so findings add up.

Tokens of a prefix are counted with the tokenizer and scaled by the call's reported input tokens over
the tokenizer's count of the whole request, so a provider's own tokenizer (and framing) is what counts.

A prefix broken by volatile text near its front (a timestamp or an id early in a long system prompt)
shares nothing: prompts of one part that differ only in a short span, before the minimum, with a long
identical rest, are flagged with the span.
"""

from __future__ import annotations

import hashlib
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from .caching import (
    CACHEABLE_FAMILIES,
    CachePrices,
    breakpoint_hint,
    cache_prices,
    min_cacheable,
    provider_of,
)
from .findings import Advice, Finding, VolatilePrefix
from .limits import DEFAULT_MAX_RECORDING_SIZE
from .models import Recording, TokenUsage
from .prices import money
from .pricing import recording_price
from .prompts import TOKENS_PER_MESSAGE, Segment, segments
from .store.files import SUFFIX, CorruptRecording, read_recording, recording_keys
from .tokens import count
from .usage import PriceBook, api_family, extract
from .volatile import find_volatile

# What a finding lists, at most: a suite of thousands of tests sharing one prompt names a few.
MAX_TESTS = 10
MAX_FINDINGS = 50
PREVIEW_CHARS = 80
# Leading parts of a request the advisor follows: a conversation of thousands of messages costs no more.
MAX_PARTS = 64
# Recordings one advice reads, at most (the most used first): bounded time and memory at session end.
MAX_RECORDINGS = 5000


@dataclass
class Use:
    """One distinct request (a recording) and how often it was sent."""

    key: str
    family: str
    model: str
    url: str
    parts: Sequence[Segment]
    tests: Sequence[str]
    weight: int = 1
    input_tokens: int | None = None  # as the provider reported, when it did
    cached_tokens: int = 0


@dataclass
class _Node:
    depth: int
    first: Use  # its parts are the first ``depth`` parts of every use's, so of this one's
    uses: list[Use] = field(default_factory=list)

    @property
    def parts(self) -> Sequence[Segment]:
        return self.first.parts[: self.depth]

    @property
    def weight(self) -> int:
        return sum(u.weight for u in self.uses)


class _Counter:
    """Token counts of parts, once per distinct part, scaled per use to its reported usage."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._cumulative: dict[int, tuple[list[int], float]] = {}

    def part(self, part: Segment) -> int:
        digest = hashlib.sha256(part.ident.encode()).hexdigest()
        found = self._counts.get(digest)
        if found is None:
            found = self._counts[digest] = count(part.text) + TOKENS_PER_MESSAGE
        return found

    def _sums(self, use: Use) -> tuple[list[int], float]:
        """Counts of the use's first 0, 1, 2, ... parts, and its scale: computed once per use."""
        found = self._cumulative.get(id(use))
        if found is None:
            sums = [0]
            for part in use.parts:
                sums.append(sums[-1] + self.part(part))
            total = sums[-1]
            scale = 1.0
            if use.input_tokens and total:
                # A provider's tokenizer differs from o200k_base by tens of percent, not by factors: a
                # ratio outside this range means usage that does not describe this text.
                scale = min(max(use.input_tokens / total, 0.25), 4.0)
            found = self._cumulative[id(use)] = (sums, scale)
        return found

    def scale(self, use: Use) -> float:
        return self._sums(use)[1]

    def prefix(self, use: Use, depth: int) -> int:
        sums, scale = self._sums(use)
        return round(sums[depth] * scale)


def _digest(previous: str, part: Segment) -> str:
    return hashlib.sha256((previous + "\0" + part.ident).encode()).hexdigest()


def _natural(name: str) -> list[tuple[int, str]]:
    # test_x[2] before test_x[10], as a person counts.
    return [(int(part), "") if part.isdigit() else (0, part) for part in re.split(r"(\d+)", name)]


def _tests(uses: Iterable[Use]) -> list[str]:
    return sorted({t for u in uses for t in u.tests}, key=_natural)


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 3] + "..."


def advise(uses: Iterable[Use], prices: PriceBook, at: datetime, *, recordings: int = 0) -> Advice:
    groups: dict[tuple[str, str, str], list[Use]] = {}
    for use in uses:
        if use.family in CACHEABLE_FAMILIES and use.parts:
            groups.setdefault((provider_of(use.family), use.family, use.model), []).append(use)
    counter = _Counter()
    findings: list[Finding] = []
    volatile: list[VolatilePrefix] = []
    for (provider, family, model), members in sorted(groups.items()):
        url = members[0].url.split("?", 1)[0]
        unit = cache_prices(prices, family, model, url, at)
        minimum = min_cacheable(family, model)
        findings += _findings(provider, family, model, members, counter, unit, minimum)
        volatile += _volatile(provider, model, members, counter, unit, minimum)
    findings.sort(key=lambda f: (-(f.saving_usd or 0), -f.tokens * f.uses))
    volatile.sort(key=lambda v: (-(v.saving_usd or 0), -v.cacheable_tokens * v.uses))
    savings = [f.saving_usd for f in findings] + [v.saving_usd for v in volatile]
    total = sum((Decimal(str(x)) for x in savings if x), Decimal(0))
    return Advice(
        recordings=recordings,
        findings=findings[:MAX_FINDINGS],
        volatile=volatile[:MAX_FINDINGS],
        saving_usd=money(total),
    )


def _findings(
    provider: str,
    family: str,
    model: str,
    members: list[Use],
    counter: _Counter,
    unit: CachePrices | None,
    minimum: int,
) -> list[Finding]:
    nodes: dict[str, _Node] = {}
    children: dict[str, set[str]] = {}
    for use in members:
        digest = ""
        for depth, part in enumerate(use.parts[:MAX_PARTS], 1):
            parent, digest = digest, _digest(digest, part)
            node = nodes.get(digest)
            if node is None:
                node = nodes[digest] = _Node(depth, use)
                children.setdefault(parent, set()).add(digest)
            node.uses.append(use)
    kept: dict[str, tuple[_Node, int]] = {}  # digest -> node, its tokens
    for digest, node in nodes.items():
        if node.weight < 2 or any(nodes[c].weight == node.weight for c in children.get(digest, ())):
            continue  # sent once, or a longer prefix is shared by exactly the same calls
        tokens = round(statistics.median(counter.prefix(u, node.depth) for u in node.uses))
        if tokens >= minimum:
            kept[digest] = (node, tokens)
    out: list[Finding] = []
    order = sorted(kept.items(), key=lambda item: item[1][0].depth)
    index: dict[str, int] = {}
    for digest, (node, tokens) in order:
        # The nearest shorter finding along this prefix: this one only adds what follows it.
        ancestor, chain = None, ""
        for part in node.parts[:-1]:
            chain = _digest(chain, part)
            if chain in index:
                ancestor = chain
        base = 0 if ancestor is None else out[index[ancestor]].tokens
        added = max(tokens - base, 0)
        full = round(0.9 * tokens)
        already = sum(u.weight for u in node.uses if u.cached_tokens >= full)
        tests = _tests(node.uses)
        last = node.parts[-1]
        finding = Finding(
            provider=provider,
            model=model,
            prefix=[p.label for p in node.parts],
            preview=_preview(last.text),
            tokens=tokens,
            added_tokens=added,
            extends=None if ancestor is None else out[index[ancestor]].prefix,
            uses=node.weight,
            already_cached_uses=already,
            tests=tests[:MAX_TESTS],
            test_count=len(tests),
            breakpoint=breakpoint_hint(family, last.label),
            min_tokens=minimum,
            saving_usd=_saving(unit, added, node.weight, already),
        )
        index[digest] = len(out)
        out.append(finding)
    return out


def _saving(unit: CachePrices | None, tokens: int, uses: int, already: int = 0) -> float | None:
    if unit is None:
        return None
    return money(max(unit.saving(tokens, uses, already), Decimal(0)))


def _volatile(
    provider: str, model: str, members: list[Use], counter: _Counter, unit: CachePrices | None, minimum: int
) -> list[VolatilePrefix]:
    out: list[VolatilePrefix] = []
    for span in find_volatile(members, minimum, count):
        scale = statistics.median(counter.scale(u) for u in span.uses)
        cacheable = round(span.rest_tokens * scale)
        weight = sum(u.weight for u in span.uses)
        tests = _tests(span.uses)
        out.append(
            VolatilePrefix(
                provider=provider,
                model=model,
                part=span.label,
                offset_tokens=round(span.offset_tokens * scale),
                examples=span.examples,
                cacheable_tokens=cacheable,
                prompts=span.prompts,
                uses=weight,
                tests=tests[:MAX_TESTS],
                saving_usd=_saving(unit, cacheable, weight),
            )
        )
    return out


def use_of(
    recording: Recording, usage: TokenUsage | None, tests: Iterable[str], weight: int = 1
) -> Use | None:
    """A recording as the advisor sees it; None for a failed call or one no cache applies to."""
    request, response = recording.request, recording.response
    family = api_family(request.path)
    if family not in CACHEABLE_FAMILIES or response.status >= 400:
        return None
    model = request.model or extract(response, family)[1]
    parts = segments(request.body, family)
    if model is None or not parts:
        return None
    reported = usage if usage is not None and usage.source is None else None
    return Use(
        key=recording.key,
        family=family,
        model=model,
        url=recording.meta.url,
        parts=parts,
        tests=sorted(set(tests)),
        weight=weight,
        input_tokens=reported.input_tokens if reported else None,
        cached_tokens=reported.cached_input_tokens if reported else 0,
    )


def advise_directory(
    directory: Path,
    prices: PriceBook,
    at: datetime,
    *,
    sent: Mapping[str, tuple[int, Iterable[str]]] | None = None,
    max_size: int = DEFAULT_MAX_RECORDING_SIZE,
    limit: int = MAX_RECORDINGS,
) -> Advice:
    """Advice from the recordings in ``directory``: each once, by the test that recorded it, or, given
    ``sent`` (key -> how often a run sent it, and by which tests), as that run sent them. At most
    ``limit`` recordings are read (the most sent first), each through the store's bounded read."""
    if sent is None:
        keys = sorted(recording_keys(directory))
        plan: list[tuple[str, int, tuple[str, ...]]] = [(k, 1, ()) for k in keys]
    else:
        plan = [(k, n, tuple(t)) for k, (n, t) in sorted(sent.items(), key=lambda kv: (-kv[1][0], kv[0]))]
    uses: list[Use] = []
    unreadable = 0
    for key, weight, tests in plan[:limit]:
        try:
            recording = read_recording(directory / f"{key}{SUFFIX}", max_size)
        except (CorruptRecording, OSError):
            unreadable += 1
            continue
        named = tests or ((recording.meta.test,) if recording.meta.test else ())
        use = use_of(recording, recording_price(recording, prices).usage, named, weight)
        if use is not None:
            uses.append(use)
    advice = advise(uses, prices, at, recordings=min(len(plan), limit) - unreadable)
    return advice.model_copy(update={"unreadable": unreadable, "truncated": len(plan) > limit})


__all__ = ["Advice", "Finding", "Use", "VolatilePrefix", "advise", "advise_directory", "use_of"]
