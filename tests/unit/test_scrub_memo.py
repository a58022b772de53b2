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
from pytest_promptcache.literals import LONG_TEXT
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


@pytest.mark.parametrize("word", ["Bearer", "bearer", "BEARER", "BeArEr", "beaRER"])
def test_a_bearer_token_in_any_mix_of_cases_is_redacted(word: str) -> None:
    token = "eyJhbGciOi.J9-abcdef0123456789"
    assert scrubber().text(f"header: {word}\t{token} end") == f"header: {REDACTED} end"


def test_only_e_a_and_r_fold_to_e_a_and_r() -> None:
    """The bearer pattern is searched only in texts whose lower-case copy holds "bearer": no other
    character may match one of its letters case-insensitively."""
    for letter in "bear":
        fold = re.compile(f"(?i:{letter})")
        folding = [chr(c) for c in range(0x110000) if fold.fullmatch(chr(c))]
        assert all(letter in c.lower() for c in folding), (letter, folding)


def test_a_key_after_another_shape_sharing_its_literal_is_still_redacted() -> None:
    anthropic, openai = SHAPED[0], SHAPED[1]
    s = scrubber()
    assert s.text(f"{anthropic} then {openai}") == f"{REDACTED} then {REDACTED}"
    assert s.text(f"sk- alone, then {openai}") == f"sk- alone, then {REDACTED}"
    assert s.text(f"no dash key here, then {anthropic}") == f"no dash key here, then {REDACTED}"


def test_find_reports_every_default_shape_as_text_redacts_it() -> None:
    s = scrubber()
    bearer = "BeArEr eyJhbGciOi.J9-abcdef0123456789"
    text = " | ".join([*SHAPED, bearer])
    found = [text[m.start : m.end] for m in s.find(text)]
    assert found == [*SHAPED, bearer]
    assert s.find("sk- and AKIA and bear with me") == []


# Past LONG_TEXT: literals are asked of compiled searches.
LONG_FILLER = "lorem ipsum dolor sit amet " * 400


@pytest.mark.parametrize("key", [*SHAPED, "BeArEr eyJhbGciOi.J9-abcdef0123456789"])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_a_key_in_a_long_text_is_redacted_wherever_it_is(key: str, where: str) -> None:
    assert len(LONG_FILLER) > LONG_TEXT
    text = {"start": f"{key} {LONG_FILLER}", "middle": f"{LONG_FILLER}{key} {LONG_FILLER}"}.get(
        where, f"{LONG_FILLER}{key}"
    )
    s = scrubber()
    assert key not in s.text(text)
    assert [text[m.start : m.end] for m in s.find(text)] == [key]


def test_a_long_text_holding_one_literal_of_a_group_is_searched_for_each() -> None:
    """ "AIza", "AKIA" and "ASIA" are first looked for together: one of them present must not hide
    the others, nor a key of a shape whose literal is present but whose match is not."""
    aws, google = SHAPED[3], SHAPED[2]
    s = scrubber()
    text = f"AKIA alone {LONG_FILLER} then {google} and {aws}"
    assert s.text(text) == f"AKIA alone {LONG_FILLER} then {REDACTED} and {REDACTED}"
    assert s.text(f"ASIA {LONG_FILLER} AIza") == f"ASIA {LONG_FILLER} AIza"


def test_an_environment_secret_in_a_long_text_is_replaced_everywhere() -> None:
    secret = "Zq7-env-secret-0a1b2c3d"
    s = Scrubber(
        secret_headers=DEFAULT_SECRET_HEADERS,
        secret_params=DEFAULT_SECRET_PARAMS,
        patterns=DEFAULT_SECRET_PATTERNS,
        env={"MY_API_KEY": secret},
    )
    filler = LONG_FILLER * 2
    assert len(filler) > scrub.MEMO_MAX_CHARS
    text = f"{secret} {filler} {secret}"
    assert s.text(text) == f"<redacted:MY_API_KEY> {filler} <redacted:MY_API_KEY>"
    assert [m.source for m in s.find(text)] == ["$MY_API_KEY", "$MY_API_KEY"]
    assert s._memo == {}  # a text that long is not remembered
