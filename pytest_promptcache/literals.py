"""Whether a text holds a secret's literal, asked as cheaply as the text's length allows.

Scrubbing runs on every string of every request a test sends, and on whole streamed answers (10 MB is
not rare: an image's base64). A default secret pattern's match starts with a literal ("sk-", "AKIA"), so
a text holding none of its literals is not searched with the pattern at all.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping

# From this many characters on, whether a text holds a literal is asked of a compiled regex: sre's scan
# for a literal prefix is about twice as fast as str's own search (on a 10 MB streamed answer ~2.5 ms
# against ~5.5), and below it the regex call costs more than the search.
LONG_TEXT = 1024

Search = Callable[[str], "re.Match[str] | None"]
# Literals that start alike and the one search that finds any of them.
Group = tuple[frozenset[str], Search]


@functools.lru_cache(maxsize=1024)
def _literal_search(literal: str) -> Search:
    return re.compile(re.escape(literal)).search


def contains(value: str, literal: str) -> bool:
    if len(value) < LONG_TEXT:
        return literal in value
    return _literal_search(literal)(value) is not None


class Literals:
    """The literals of a set of patterns, and how each is looked for."""

    def __init__(self, literals: Iterable[str]) -> None:
        literals = set(literals)
        # Each literal after the shorter literals inside it ("sk-" before "sk-ant-"): a text found not to
        # hold "sk-" is not searched again for "sk-ant-".
        self.parts = {
            lit: (*sorted((o for o in literals if o != lit and o in lit), key=len), lit) for lit in literals
        }
        # On a long text, literals that start alike are first searched for together ("AIza", "AKIA" and
        # "ASIA" as "A(?:Iza|KIA|SIA)"): one scan, about as fast as one literal's, finds none of them.
        self.groups = _groups(literals)

    def gate(self) -> Gate:
        """A gate for one text (and what replacing secrets in it makes of it)."""
        return Gate(self.parts, self.groups)


def _groups(literals: Iterable[str]) -> dict[str, Group]:
    by_start: dict[str, list[str]] = {}
    for literal in sorted(literals):
        by_start.setdefault(literal[:1], []).append(literal)
    groups: dict[str, Group] = {}
    for members in by_start.values():
        if len(members) > 1:
            # The whole shared start, so that sre scans for it as one literal.
            common = members[0]
            for member in members[1:]:
                while not member.startswith(common):
                    common = common[:-1]
            rests = "|".join(re.escape(m[len(common) :]) for m in members)
            group = (frozenset(members), re.compile(f"{re.escape(common)}(?:{rests})").search)
            groups.update(dict.fromkeys(members, group))
    return groups


class Gate:
    """Whether a text may hold a match of a pattern, by the literals its matches hold; each literal
    searched for once per text, a shorter one inside it first. Only absence is remembered: replacing a
    match with "<redacted>" cannot make a literal appear (it holds none, and none holds "<" or ">"),
    but can make one disappear."""

    __slots__ = ("_absent", "_groups", "_lowered", "_parts", "_searched")

    def __init__(self, parts: Mapping[str, tuple[str, ...]], groups: Mapping[str, Group]) -> None:
        self._parts = parts
        self._groups = groups
        self._absent: set[str] = set()
        self._searched: set[frozenset[str]] = set()
        self._lowered: str | None = None

    def open(self, value: str, literals: tuple[str, ...] | None, caseless: str | None) -> bool:
        """``literals``: one of which every match holds (None: unknown, a user's pattern); ``caseless``:
        a word every match holds in some mix of cases."""
        if literals is not None:
            return any(self._holds(value, literal) for literal in literals)
        if caseless is not None:
            if self._lowered is None:
                self._lowered = value.lower()
            return contains(self._lowered, caseless)
        return True

    def _holds(self, value: str, literal: str) -> bool:
        absent = self._absent
        for part in self._parts[literal]:
            if part in absent:
                return False
            group = self._groups.get(part)
            if group is not None and len(value) >= LONG_TEXT and group[0] not in self._searched:
                self._searched.add(group[0])
                if group[1](value) is None:
                    absent.update(group[0])
                    return False
            if not contains(value, part):
                absent.add(part)
                return False
        return True
