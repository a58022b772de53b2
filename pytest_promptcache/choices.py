"""Options that take one of a few words: the ordered scope, the vcr compatibility layer and what a
drifted request body does. Apart from ``settings`` so the light modules that need the words (the
marker, ordered scopes) import no more than they use."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

SCOPES = ("session", "test")
VCR_MODES = ("cassettes", "native", "off")


class ChoiceError(ValueError):
    """A word that is not one of the choices; the message names the option and the valid words."""


class Drift(StrEnum):
    """What a request body that differs from the one a vcr cassette recorded does to its test."""

    WARN = "warn"
    FAIL = "fail"
    IGNORE = "ignore"


def parse_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """One of ``choices`` (the first when unset)."""
    options = list(choices)
    text = str(value or "").strip().lower() or options[0]
    if text not in options:
        raise ChoiceError(f"{name}: {value!r} is not one of {', '.join(options)}")
    return text
