"""Which requests are LLM calls: endpoint patterns (a path suffix, with ``*`` wildcards, on any host or
on one), the defaults, and the ini lines that extend, replace or trim them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .defaults import DEFAULT_ENDPOINTS
from .errors import SettingsError


@dataclass(frozen=True)
class EndpointPattern:
    """A path suffix on any host, or on one host when written as ``host[:port]/suffix``. A ``*`` in the
    suffix stands for any text (``/model/*/converse``: Bedrock's model id, an ARN's slashes included)."""

    host: str | None
    suffix: str
    # The suffix as a regex when it has wildcards; derived, so not part of equality.
    _wild: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    # The literal text after the last wildcard: a cheap test before the regex, since this runs for every
    # request any client sends.
    _tail: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if "*" in self.suffix:
            parts = self.suffix.split("*")
            if "**" in self.suffix:
                raise SettingsError(
                    f"promptcache_endpoints: {self.suffix!r} has adjacent wildcards; use one *"
                )
            regex = re.compile(".+".join(re.escape(part) for part in parts) + r"\Z")
            object.__setattr__(self, "_wild", regex)
            object.__setattr__(self, "_tail", parts[-1])

    @classmethod
    def parse(cls, text: str) -> EndpointPattern:
        text = text.strip()
        if not text:
            raise SettingsError("promptcache_endpoints: empty pattern")
        if text[0] in "/:":
            return cls(host=None, suffix=text)
        host, sep, rest = text.partition("/")
        if not sep or not host:
            raise SettingsError(
                f"promptcache_endpoints: {text!r} is not a pattern; write a path suffix such as "
                "'/v1/rerank', '/model/*/converse' or ':generateContent', or 'host[:port]/path-suffix' "
                "for one host"
            )
        return cls(host=host.lower(), suffix="/" + rest)

    def matches(self, host: str, path: str) -> bool:
        if self.host is not None and self.host != host:
            return False
        if self._wild is None:
            return path.endswith(self.suffix)
        return path.endswith(self._tail) and self._wild.search(path) is not None


def parse_endpoints(lines: Iterable[str]) -> tuple[EndpointPattern, ...]:
    """ini lines replace the default list, unless one of them is the word ``defaults`` or every one is a
    ``-PATTERN``, which takes a pattern out (a default suffix that one's own service also ends with)."""
    entries = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    removed = {e[1:].strip(): EndpointPattern.parse(e[1:]) for e in entries if e.startswith("-")}
    if all(e.startswith("-") for e in entries):
        entries.insert(0, "defaults")
    patterns: list[EndpointPattern] = []
    for entry in (e for e in entries if not e.startswith("-")):
        if entry == "defaults":
            patterns.extend(EndpointPattern.parse(e) for e in DEFAULT_ENDPOINTS)
        else:
            patterns.append(EndpointPattern.parse(entry))
    for text, gone in removed.items():
        if gone not in patterns:
            raise SettingsError(f"promptcache_endpoints: '-{text}' takes out a pattern that is not listed")
    return tuple(p for p in dict.fromkeys(patterns) if p not in removed.values())


def default_endpoints() -> tuple[EndpointPattern, ...]:
    return tuple(EndpointPattern.parse(e) for e in DEFAULT_ENDPOINTS)
