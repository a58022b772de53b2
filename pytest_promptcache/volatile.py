"""Prompts that would share a cacheable prefix but for a short changing span near their front.

A timestamp, a request id or a user's name early in a long system prompt makes every call's prefix
different, so the provider caches nothing. Such prompts share a long identical end: they are grouped
by it, and a group whose members differ only in one short span, which starts before the provider's
minimum cacheable length and is followed by at least that many identical tokens, is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .prompts import Segment

# Parts looked at: the leading ones, where system prompts and shared context sit.
LEADING_PARTS = 4
# A changing span longer than this is a different prompt, not a volatile value in the same one.
MAX_SPAN_CHARS = 120
# Prompts compared per group, at most: a suite with a fresh id in every prompt flags the group anyway.
MAX_PROMPTS = 200
SIGNATURE_CHARS = 256
EXAMPLE_CHARS = 40


class HasParts(Protocol):
    @property
    def parts(self) -> Sequence[Segment]: ...
    @property
    def weight(self) -> int: ...


U = TypeVar("U", bound=HasParts)


@dataclass
class VolatileSpan(Generic[U]):
    label: str
    offset_tokens: int  # tokenizer count of what precedes the changing span
    rest_tokens: int  # tokenizer count of the identical rest after it
    examples: list[str]
    prompts: int
    uses: list[U]


def _widen(text: str, start: int, end: int) -> tuple[int, int]:
    """The span grown to whole words: 10:00:01 against 10:00:02 differs in one digit, but reads as a time."""
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return start, end


def _example(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 3] + "..."


def _common(a: str, b: str) -> int:
    """Length of the common prefix: a binary search over slice comparisons, which run in C."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _differ(ref: str, other: str) -> tuple[int, int] | None:
    """Where ``other`` departs from ``ref`` and where their common end starts (in ``ref``)."""
    head = _common(ref, other)
    if head == len(ref) == len(other):
        return None
    limit = min(len(ref), len(other)) - head
    tail = _common(ref[::-1][:limit], other[::-1][:limit])
    return head, len(ref) - tail


def find_volatile(uses: Sequence[U], minimum: int, count: Callable[[str], int]) -> list[VolatileSpan[U]]:
    # Cheap filter first: a part shorter than 2 characters per token cannot reach the minimum.
    groups: dict[tuple[str, str], dict[str, list[U]]] = {}
    for use in uses:
        for part in use.parts[:LEADING_PARTS]:
            if len(part.text) >= 2 * minimum:
                signature = (part.label, part.text[-SIGNATURE_CHARS:])
                groups.setdefault(signature, {}).setdefault(part.text, []).append(use)
    found: list[VolatileSpan[U]] = []
    for (label, _), texts in groups.items():
        if len(texts) < 2:
            continue
        ordered = sorted(texts.items(), key=lambda kv: (-sum(u.weight for u in kv[1]), kv[0]))
        ref, ref_uses = ordered[0]
        start, end = len(ref), 0
        examples: list[str] = []
        matched: list[U] = list(ref_uses)
        prompts = 1
        for text, members in ordered[1:MAX_PROMPTS]:
            where = _differ(ref, text)
            if where is None:
                continue
            head, tail_start = where
            a, b = _widen(ref, head, max(tail_start, head))
            if b - a > MAX_SPAN_CHARS:
                continue
            if not examples:
                examples = [_example(ref[a:b]), _example(text[a : a + (b - a) + len(text) - len(ref)])]
            start, end = min(start, a), max(end, b)
            matched += members
            prompts += 1
        if prompts < 2:
            continue
        offset = count(ref[:start])
        rest = count(ref[end:])
        if offset < minimum <= rest:
            found.append(VolatileSpan(label, offset, rest, examples, prompts, matched))
    return found
