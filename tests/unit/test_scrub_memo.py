"""Scrubbing at speed: the literal each default pattern starts with gates its search, and the memo of
scrubbed strings forgets what it held when a new secret is learned."""

from __future__ import annotations

import re

import pytest

from pytest_promptcache import scrub
from pytest_promptcache.defaults import (
    DEFAULT_SECRET_HEADERS,
    DEFAULT_SECRET_PARAMS,
    DEFAULT_SECRET_PATTERNS,
    SECRET_PATTERN_LITERALS,
)
from pytest_promptcache.scrub import REDACTED, Scrubber

# One key of each default shape, as a real one looks.
SHAPED = [
    "sk-ant-api03-Q7w8E9r0T1y2U3i4O5p6",
    "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "AKIAIOSFODNN7EXAMPLE",
    "ASIAIOSFODNN7EXAMPLE",
]


def scrubber(patterns: tuple[str, ...] = DEFAULT_SECRET_PATTERNS) -> Scrubber:
    return Scrubber(
        secret_headers=DEFAULT_SECRET_HEADERS, secret_params=DEFAULT_SECRET_PARAMS, patterns=patterns, env={}
    )


def test_every_literal_is_where_each_match_of_its_pattern_starts() -> None:
    for pattern, literals in SECRET_PATTERN_LITERALS.items():
        assert pattern in DEFAULT_SECRET_PATTERNS
        for key in SHAPED:
            match = re.search(pattern, f"x {key} y")
            if match is not None:
                assert match.group(0).startswith(literals)


@pytest.mark.parametrize("key", SHAPED)
def test_each_default_shape_is_still_redacted(key: str) -> None:
    s = scrubber()
    assert s.text(f"the key is {key}.") == f"the key is {REDACTED}."
    assert s.text(f"the key is {key}.") == f"the key is {REDACTED}."  # from the memo


def test_a_users_pattern_without_a_literal_is_always_searched() -> None:
    s = scrubber((r"tok_[0-9]{6}",))
    assert s.text("a tok_123456 b") == f"a {REDACTED} b"


def test_the_memo_forgets_when_a_secret_is_learned() -> None:
    s = scrubber()
    secret = "Zq7-sent-credential-0a1b2c3d"
    assert s.text(f"say {secret}") == f"say {secret}"  # not known yet, and remembered so
    assert s.learn([("authorization", f"Bearer {secret}")])
    assert secret not in s.text(f"say {secret}")


def test_the_memo_starts_over_past_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scrub, "MEMO_BUDGET", 10)
    monkeypatch.setattr(scrub, "MEMO_MAX_CHARS", 6)
    s = scrubber()
    for word in ("abcdef", "ghijkl", "toolongtext"):
        assert s.text(word) == word
    assert list(s._memo) == ["ghijkl"]  # the first was dropped at the budget, the last is too long
    assert s._memo_chars == 6
