"""Matching rules: JSON paths of ignored fields, dropping them, normalisers, and rule sets."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pytest_promptcache.rules import (
    BUILTIN_NORMALIZERS,
    KeyRules,
    Normalizer,
    RuleError,
    drop_path,
    parse_path,
)

# -- parse_path -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("user", ("user",)),
        ("metadata.user_id", ("metadata", "user_id")),
        ("messages[*].id", ("messages", "*", "id")),
        ("tools[0].function.description", ("tools", 0, "function", "description")),
        ("metadata.*", ("metadata", "*")),
        ("a[0][12]", ("a", 0, 12)),
        ("$.user", ("user",)),
        ("$user", ("user",)),
        ("  user  ", ("user",)),
        ("messages[*]", ("messages", "*")),
    ],
)
def test_parse_path(text: str, path: tuple[str | int, ...]) -> None:
    assert parse_path(text) == path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "ignored field '' is empty"),
        ("$.", "ignored field '$.' is empty"),
        ("a..b", "ignored field 'a..b' has an empty segment"),
        ("a.", "ignored field 'a.' has an empty segment"),
        ("a[x]", "ignored field 'a[x]' is not a JSON path like 'metadata.user_id' or 'a[*].b'"),
        ("a[-1]", "ignored field 'a[-1]' is not a JSON path"),
        ("a]b", "ignored field 'a]b' is not a JSON path"),
    ],
)
def test_parse_path_errors(text: str, message: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_path(text)
    assert str(err.value).startswith(message)


# -- drop_path --------------------------------------------------------------------------------------------

BODY: dict[str, Any] = {
    "model": "m",
    "user": "u-1",
    "metadata": {"user_id": "a", "env": "ci"},
    "messages": [
        {"role": "system", "content": "be brief", "id": "m1"},
        {"role": "user", "content": "hi", "id": "m2", "name": "ann"},
    ],
    "tools": [{"function": {"name": "f", "description": "d"}}, {"function": {"name": "g"}}],
}


def dropped(path: str, value: Any = None) -> Any:
    value = copy.deepcopy(BODY if value is None else value)
    drop_path(value, parse_path(path))
    return value


def test_drop_a_top_level_and_a_nested_field() -> None:
    assert "user" not in dropped("user")
    assert dropped("metadata.user_id")["metadata"] == {"env": "ci"}


def test_drop_through_a_wildcard_in_every_element() -> None:
    messages = dropped("messages[*].id")["messages"]
    assert messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi", "name": "ann"},
    ]


def test_a_name_applied_to_a_list_applies_to_each_element() -> None:
    assert dropped("messages.id") == dropped("messages[*].id")


def test_drop_by_index() -> None:
    assert dropped("tools[0].function.description")["tools"][0] == {"function": {"name": "f"}}
    assert dropped("tools[1]")["tools"] == [BODY["tools"][0]]
    assert dropped("tools[5]") == BODY
    assert dropped("tools[5].function") == BODY


def test_a_trailing_wildcard_empties_the_container_but_keeps_it() -> None:
    assert dropped("metadata.*")["metadata"] == {}
    assert dropped("messages[*]")["messages"] == []
    assert dropped("*") == {}


def test_a_wildcard_over_a_mapping_reaches_each_value() -> None:
    value = {"a": {"id": 1, "x": 1}, "b": {"id": 2}, "c": "scalar"}
    assert dropped("*.id", value) == {"a": {"x": 1}, "b": {}, "c": "scalar"}


@pytest.mark.parametrize(
    "path", ["absent", "user.deeper", "model[0]", "metadata.env.x", "user[*].id", "user.*"]
)
def test_paths_that_do_not_exist_change_nothing(path: str) -> None:
    assert dropped(path) == BODY


def test_drop_nothing_with_an_empty_path() -> None:
    value = copy.deepcopy(BODY)
    drop_path(value, ())
    assert value == BODY


# -- normalisers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("iso-date", "due 2026-11-27.", "due <DATE>."),
        ("iso-datetime", "at 2026-11-27T10:30:00Z ok", "at <DATETIME> ok"),
        ("iso-datetime", "at 2026-11-27 10:30:00.123+02:00 ok", "at <DATETIME> ok"),
        ("iso-datetime", "at 2026-11-27T10:30 ok", "at <DATETIME> ok"),
        ("uuid", "id 123e4567-E89B-12d3-a456-426614174000!", "id <UUID>!"),
        ("unix-time", "ts=1764240000 and 1764240000.25", "ts=<UNIX_TIME> and <UNIX_TIME>"),
        ("unix-time", "1400000000 and 17642400001", "1400000000 and 17642400001"),
        ("hex-id", "run 0123456789abcdef01234567", "run <HEX_ID>"),
        ("hex-id", "short 0123456789abcdef and UPPER 0123456789ABCDEF01234567", None),
    ],
)
def test_builtin_normalisers(name: str, text: str, expected: str | None) -> None:
    assert Normalizer.parse(name).apply(text) == (text if expected is None else expected)


def test_a_date_inside_a_datetime_is_not_a_date() -> None:
    # The date rule needs a word boundary after the day, so "T10:30" protects a datetime from it.
    assert Normalizer.parse("iso-date").apply("2026-11-27T10:30:00Z") == "2026-11-27T10:30:00Z"


def test_custom_normaliser_with_groups_and_an_empty_replacement() -> None:
    order = Normalizer.parse(r"  order-(\d)\d+ => order-\1N ")
    assert order.source == r"order-(\d)\d+ => order-\1N"
    assert order.apply("order-12345 and order-9") == "order-1N and order-9"
    assert Normalizer.parse("secret-\\w+ =>").apply("a secret-xyz b") == "a  b"


def test_normaliser_errors_say_what_is_accepted() -> None:
    with pytest.raises(RuleError) as err:
        Normalizer.parse("dates")
    builtins = ", ".join(BUILTIN_NORMALIZERS)
    assert (
        str(err.value) == f"normaliser 'dates' is neither a built-in ({builtins}) nor 'REGEX => REPLACEMENT'"
    )
    with pytest.raises(RuleError, match=r"^normaliser '\(unclosed => x': '\(unclosed' is not a regex: "):
        Normalizer.parse("(unclosed => x")


# -- KeyRules ---------------------------------------------------------------------------------------------


def test_rules_apply_normalisers_in_order_to_every_string_value() -> None:
    rules = KeyRules.build(normalize=["iso-datetime", "iso-date", "uuid"])
    body = {
        "when": "2026-11-27 10:30:00",
        "day": ["2026-11-27", 3, None, True, {"2026-11-27": "123e4567-e89b-12d3-a456-426614174000"}],
    }
    assert rules.json(body) == {
        "when": "<DATETIME>",
        # Keys are not normalised: they name fields, they are not content.
        "day": ["<DATE>", 3, None, True, {"2026-11-27": "<UUID>"}],
    }
    assert rules.text("on 2026-11-27") == "on <DATE>"


def test_rules_without_normalisers_return_the_value_itself() -> None:
    body = {"a": ["2026-11-27"]}
    assert KeyRules.build(ignore_fields=["x"]).json(body) is body


def test_rule_sets_are_equal_and_hashable_by_content() -> None:
    a = KeyRules.build(["user", "messages[*].id"], ["uuid"])
    b = KeyRules.build(["$.user", "messages[*].id"], ["uuid"])
    assert a == b
    assert hash(a) == hash(b)
    assert a != KeyRules.build(["user"], ["uuid"])
    assert {a: 1}[b] == 1


def test_a_hook_takes_part_through_its_scope_only() -> None:
    def hook(request: dict[str, Any]) -> None:
        request["host"] = "h"

    def other_hook(request: dict[str, Any]) -> None:
        pass

    a = KeyRules.build(hook=hook, hook_scope="t.py::a")
    assert a != KeyRules.build(hook=hook, hook_scope="t.py::b")
    assert a != KeyRules.build()
    # Functions do not compare usefully; the test the hook was bound to does.
    assert a == KeyRules.build(hook=other_hook, hook_scope="t.py::a")
    # A scope means nothing without a hook.
    assert KeyRules.build(hook_scope="t.py::a").hook_scope is None


def test_merged_adds_a_tests_rules_without_duplicates_and_keeps_the_hook() -> None:
    def hook(request: dict[str, Any]) -> None:
        pass

    session = KeyRules.build(["user"], ["uuid"], hook=hook, hook_scope="t.py::x")
    merged = session.merged(["user", "metadata"], ["uuid", "iso-date"])
    assert merged.ignore == (("user",), ("metadata",))
    assert [n.source for n in merged.normalizers] == ["uuid", "iso-date"]
    assert merged.hook is hook
    assert merged.hook_scope == "t.py::x"
    assert session.merged([], []) == session


def test_build_reports_the_first_bad_rule() -> None:
    with pytest.raises(RuleError, match=r"ignored field 'a\.\.b'"):
        KeyRules.build(["user", "a..b"])
    with pytest.raises(RuleError, match="normaliser 'nope'"):
        KeyRules.build([], ["uuid", "nope"])
