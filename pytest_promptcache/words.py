"""Counts as people write them: "1 call", "2 calls", "1 recording was", "3 recordings were".

One place for the summary, the report, the messages and the command, so none of them says "1 calls".
Light (nothing imported): the plugin's start-up uses it.
"""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and the noun in the number it takes; ``many`` for a noun whose plural is not noun + s."""
    word = noun if count == 1 else (many if many is not None else noun + "s")
    return f"{count:,} {word}"


def was(count: int) -> str:
    """The past of "to be" that agrees with ``count``."""
    return "was" if count == 1 else "were"
