"""A unified diff bounded in size and time, for miss messages.

A prompt of 200,000 words is one line of pretty-printed JSON: its diff must still show the changed
word, in a line a person can read. So each line is cut to ``MAX_LINE_CHARS``: a changed line shows the
region where it differs from its counterpart, with some context, and elides the rest; the diff keeps
``max_lines`` lines. Lines are aligned by rapidfuzz in C after trimming the common beginning and end;
a differing middle too large to align (``EXACT_LINE_CELLS``) is shown as replaced, whole.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Literal, cast

from .similarity import common_prefix, common_suffix

MAX_LINE_CHARS = 240
# Characters of unchanged text shown on each side of a change inside a long line.
CONTEXT_CHARS = 60
# Lines of one side times the other aligned exactly: by difflib up to the first, by rapidfuzz (in C)
# up to the second; a larger differing middle is shown as replaced, whole.
SMALL_LINE_CELLS = 2_500
EXACT_LINE_CELLS = 4_000_000

Tag = Literal["replace", "delete", "insert", "equal"]
Opcode = tuple[Tag, int, int, int, int]


_MARK = 24  # room for one elision marker


def _elided(count: int) -> str:
    return f"[... {count:,} chars ...]"


def _window(line: str, lo: int, hi: int) -> str:
    """``line[lo:hi]`` as it is shown: with the line's start (its indentation and JSON key) when that
    is cut off, markers where text is left out, and about ``MAX_LINE_CHARS`` at most."""
    if len(line) <= MAX_LINE_CHARS:
        return line
    lo, hi = max(0, lo), min(len(line), hi)
    head = line[:24] + _elided(lo - 24) if lo > 2 * _MARK else ""
    if not head:
        lo = 0
    budget = MAX_LINE_CHARS - len(head) - (_MARK if hi < len(line) else 0)
    if hi - lo > budget:
        half = (budget - _MARK) // 2
        middle = line[lo : lo + half] + _elided(hi - lo - 2 * half) + line[hi - half : hi]
    else:
        middle = line[lo:hi]
    return head + middle + (_elided(len(line) - hi) if hi < len(line) else "")


def _whole(line: str) -> str:
    return _window(line, 0, len(line))


def _changed_pair(old: str, new: str) -> tuple[str, str]:
    """Two lines that differ: each shows where they differ, with context, not all of itself."""
    if len(old) <= MAX_LINE_CHARS and len(new) <= MAX_LINE_CHARS:
        return old, new
    prefix = common_prefix(old, new)
    suffix = common_suffix(old[prefix:], new[prefix:])
    return (
        _window(old, prefix - CONTEXT_CHARS, len(old) - suffix + CONTEXT_CHARS),
        _window(new, prefix - CONTEXT_CHARS, len(new) - suffix + CONTEXT_CHARS),
    )


def _merged(codes: list[Opcode]) -> list[Opcode]:
    """Adjacent insertions and deletions as one replacement: removed lines, then added ones."""
    out: list[Opcode] = []
    for code in codes:
        if code[0] != "equal" and out and out[-1][0] != "equal":
            _, i1, _, j1, _ = out[-1]
            out[-1] = ("replace", i1, code[2], j1, code[4])
        else:
            out.append(code if code[0] == "equal" else ("replace", *code[1:]))
    return out


def _aligned(a: Sequence[str], b: Sequence[str]) -> list[Opcode]:
    cells = len(a) * len(b)
    if cells <= SMALL_LINE_CELLS:
        # A few lines (the usual case: one message changed): difflib, without importing rapidfuzz.
        return difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    if cells > EXACT_LINE_CELLS:
        return [("replace", 0, len(a), 0, len(b))]
    from rapidfuzz.distance import Indel  # imported by the first large diff, not at start-up

    return [
        (cast(Tag, op.tag), op.src_start, op.src_end, op.dest_start, op.dest_end)
        for op in Indel.opcodes(a, b)
    ]


def line_opcodes(a: Sequence[str], b: Sequence[str]) -> list[Opcode]:
    prefix = common_prefix(a, b)
    suffix = common_suffix(a[prefix:], b[prefix:])
    ea, eb = len(a) - suffix, len(b) - suffix
    codes: list[Opcode] = [("equal", 0, prefix, 0, prefix)] if prefix else []
    for tag, i1, i2, j1, j2 in _aligned(a[prefix:ea], b[prefix:eb]):
        codes.append((tag, i1 + prefix, i2 + prefix, j1 + prefix, j2 + prefix))
    if suffix:
        codes.append(("equal", ea, len(a), eb, len(b)))
    return _merged([c for c in codes if c[1] != c[2] or c[3] != c[4]])


class _Aligned(difflib.SequenceMatcher[str]):
    """difflib's grouping of changes into hunks with context, over opcodes computed elsewhere."""

    def __init__(self, codes: list[Opcode]) -> None:
        super().__init__(None, [], [])
        self._codes = codes

    def get_opcodes(self) -> list[Opcode]:
        return self._codes


def _range(start: int, length: int) -> str:
    if length == 1:
        return str(start + 1)
    return f"{start + 1 if length else start},{length}"


def unified(
    a: Sequence[str], b: Sequence[str], fromfile: str, tofile: str, *, context: int = 2, max_lines: int = 80
) -> list[str]:
    """The unified diff of ``a`` and ``b`` (lines), at most ``max_lines`` lines (then a count of the
    lines left out), each at most about ``MAX_LINE_CHARS`` long; empty when they are equal."""
    groups = [g for g in _Aligned(line_opcodes(a, b)).get_grouped_opcodes(context) if _changes(g)]
    if not groups:
        return []
    total = 2 + sum(1 + sum(_size(code) for code in group) for group in groups)
    out = [f"--- {fromfile}", f"+++ {tofile}"]
    for group in groups:
        if len(out) >= max_lines:
            break
        first, last = group[0], group[-1]
        out.append(f"@@ -{_range(first[1], last[2] - first[1])} +{_range(first[3], last[4] - first[3])} @@")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out.extend(" " + _whole(line) for line in a[i1:i2])
                continue
            # Lines past what can be shown are never looked at: a hunk may be 100,000 lines.
            removed, added = a[i1 : min(i2, i1 + max_lines)], b[j1 : min(j2, j1 + max_lines)]
            paired = [_changed_pair(old, new) for old, new in zip(removed, added, strict=False)]
            out.extend("-" + old for old, _ in paired)
            out.extend("-" + _whole(line) for line in removed[len(paired) :])
            out.extend("+" + new for _, new in paired)
            out.extend("+" + _whole(line) for line in added[len(paired) :])
    if total > max_lines:
        out = [*out[:max_lines], f"... ({total - max_lines} more diff lines)"]
    return out


def _changes(group: list[tuple[str, int, int, int, int]]) -> bool:
    return any(tag != "equal" for tag, *_ in group)


def _size(code: tuple[str, int, int, int, int]) -> int:
    tag, i1, i2, j1, j2 = code
    return i2 - i1 if tag == "equal" else (i2 - i1) + (j2 - j1)
