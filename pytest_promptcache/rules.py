"""Matching rules: which parts of a request are left out of its key, and which text is normalised.

- Ignored fields are JSON paths into the body: ``user``, ``metadata.user_id``, ``messages[*].id``,
  ``tools[0].function.description``, ``metadata.*`` (a leading ``$.`` is allowed).
- Normalisers replace volatile text (dates, ids) in every string of the body, in a non-JSON body and in
  query values, before hashing: a built-in name (``uuid``, ``iso-date``, ``iso-datetime``, ``unix-time``,
  ``hex-id``) or ``REGEX => REPLACEMENT``.
The canonical request keeps the normalised text, so a miss diff shows what was compared.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

BUILTIN_NORMALIZERS: dict[str, tuple[str, str]] = {
    # Longest first where they overlap: a datetime must not be half-eaten by the date rule.
    "iso-datetime": (
        r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?\b",
        "<DATETIME>",
    ),
    "iso-date": (r"\b\d{4}-\d{2}-\d{2}\b", "<DATE>"),
    "uuid": (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<UUID>"),
    "unix-time": (r"\b1[5-9]\d{8}(?:\.\d+)?\b", "<UNIX_TIME>"),
    # Not inside a word, but after "_" or "-" (a regex \b would not see those as boundaries): provider
    # and framework ids are "<prefix>_<hex>" (call_, msg_, tool_<prefix>_...).
    "hex-id": (r"(?<![0-9A-Za-z])[0-9a-f]{24,}(?![0-9A-Za-z])", "<HEX_ID>"),
}


class RuleError(ValueError):
    pass


@dataclass(frozen=True)
class Normalizer:
    source: str
    pattern: re.Pattern[str]
    replacement: str

    @classmethod
    def parse(cls, text: str) -> Normalizer:
        text = text.strip()
        if text in BUILTIN_NORMALIZERS:
            regex, replacement = BUILTIN_NORMALIZERS[text]
        elif "=>" in text:
            regex, _, replacement = text.partition("=>")
            regex, replacement = regex.strip(), replacement.strip()
        else:
            raise RuleError(
                f"normaliser {text!r} is neither a built-in ({', '.join(BUILTIN_NORMALIZERS)}) "
                "nor 'REGEX => REPLACEMENT'"
            )
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise RuleError(f"normaliser {text!r}: {regex!r} is not a regex: {exc}") from None
        return cls(source=text, pattern=pattern, replacement=replacement)

    def apply(self, value: str) -> str:
        return self.pattern.sub(self.replacement, value)


_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\*|\d+)\]")


def parse_path(text: str) -> tuple[str | int, ...]:
    """``messages[*].id`` → ('messages', '*', 'id'); indexes become ints."""
    raw = text.strip().removeprefix("$.").removeprefix("$")
    if not raw:
        raise RuleError(f"ignored field {text!r} is empty")
    parts: list[str | int] = []
    for piece in raw.split("."):
        if not piece:
            raise RuleError(f"ignored field {text!r} has an empty segment")
        for match in _SEGMENT.finditer(piece):
            name, index = match.groups()
            if name is not None:
                parts.append(name)
            else:
                parts.append("*" if index == "*" else int(index))
        if "".join(m.group(0) for m in _SEGMENT.finditer(piece)) != piece:
            raise RuleError(f"ignored field {text!r} is not a JSON path like 'metadata.user_id' or 'a[*].b'")
    return tuple(parts)


def drop_path(value: Any, path: tuple[str | int, ...]) -> None:
    if not path:
        return
    head, rest = path[0], path[1:]
    if head == "*":
        if not rest:
            if isinstance(value, dict | list):
                value.clear()
            return
        children = list(value.values()) if isinstance(value, dict) else value
        for child in children if isinstance(children, list) else []:
            drop_path(child, rest)
        return
    if isinstance(value, list):
        if isinstance(head, int):
            if 0 <= head < len(value):
                if rest:
                    drop_path(value[head], rest)
                else:
                    del value[head]
            return
        # A name applied to a list applies to each element: "messages.id" means every message's id.
        for child in value:
            drop_path(child, path)
        return
    if isinstance(value, dict) and isinstance(head, str) and head in value:
        if rest:
            drop_path(value[head], rest)
        else:
            del value[head]


CanonicalHook = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class KeyRules:
    """Everything configurable that shapes a key. Hashable, so keys can be memoised per rule set."""

    ignore: tuple[tuple[str | int, ...], ...] = ()
    normalizers: tuple[Normalizer, ...] = ()
    # A user's hook (pytest_promptcache_canonical_request) bound to one test: it may change anything.
    hook: CanonicalHook | None = field(default=None, compare=False)
    hook_scope: str | None = None

    @classmethod
    def build(
        cls,
        ignore_fields: Iterable[str] = (),
        normalize: Iterable[str] = (),
        hook: CanonicalHook | None = None,
        hook_scope: str | None = None,
    ) -> KeyRules:
        return cls(
            ignore=tuple(parse_path(f) for f in ignore_fields),
            normalizers=tuple(Normalizer.parse(n) for n in normalize),
            hook=hook,
            hook_scope=hook_scope if hook is not None else None,
        )

    def merged(self, ignore_fields: Iterable[str], normalize: Iterable[str]) -> KeyRules:
        """These rules plus a test's own (from its marker)."""
        extra = KeyRules.build(ignore_fields, normalize)
        return KeyRules(
            ignore=tuple(dict.fromkeys(self.ignore + extra.ignore)),
            normalizers=tuple(dict.fromkeys(self.normalizers + extra.normalizers)),
            hook=self.hook,
            hook_scope=self.hook_scope,
        )

    def text(self, value: str) -> str:
        for normalizer in self.normalizers:
            value = normalizer.apply(value)
        return value

    def json(self, value: Any) -> Any:
        if not self.normalizers:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value
