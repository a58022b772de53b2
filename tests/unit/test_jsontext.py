"""JSON in and out through pydantic-core gives exactly the standard library's values and text: recordings
written before and after read and diff the same."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest

from pytest_promptcache.jsontext import MAX_DEPTH, encode_compact, loads, loads_bounded, utf8

TEXTS = [
    '{"a":1,"a":2}',
    "[1e400, -1e400, 1e-400, 5e-324, 2.5e-324]",
    "[NaN, Infinity, -Infinity]",
    '["\\ud800", "\\udc00\\ud800", "\\ud83d\\ude00"]',
    "[123456789012345678901234567890, -0, -0.0, 1E5, 9007199254740993]",
    '{"a": [1, 2, {"b": null}], "c": [true, false], "\\u00e9": "\\/\\t\\u0000"}',
    '  {"deep": ' + "[" * 300 + '"x"' + "]" * 300 + "}  ",  # past pydantic-core's depth limit
]
NOT_JSON = ["[1,]", '{"a":1,}', "[1] x", '["\x01"]', "[01]", "[.5]", "[1.]", "", "[DONE]", "{"]


@pytest.mark.parametrize("text", TEXTS)
def test_loads_gives_what_json_loads_gives(text: str) -> None:
    assert repr(loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", NOT_JSON)
def test_loads_refuses_what_json_loads_refuses_with_its_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        loads(text)
    assert str(got.value) == str(expected.value)


def test_floats_parse_to_the_same_double() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        x = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if math.isfinite(x):
            for text in (repr(x), f"{x:.17g}", f"{x:.5e}", f"{x:.3f}"):
                assert loads(f"[{text}]") == json.loads(f"[{text}]"), text


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_every_character_is_written_as_json_dumps_writes_it() -> None:
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert encode_compact(text) == compact(text).encode()
    assert encode_compact({"k": [text]}) == compact({"k": [text]}).encode()


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, True, None, "x"], "b": {"c": -5}, "": ""},
        [10**30, -(2**63) - 1, 2**64],
        {"logprob": -1.2e-05, "n": 1},  # a float: json.dumps writes 1e-05 where pydantic-core would not
        [{"deep": [[1e16, 0.1, -0.0]]}],
        [math.nan, math.inf, -math.inf],
        {},
        [],
        "plain",
        7,
        None,
    ],
)
def test_values_are_written_as_json_dumps_writes_them(value: Any) -> None:
    assert encode_compact(value) == compact(value).encode()


def test_a_lone_surrogate_is_written_as_its_escape_and_read_back() -> None:
    value = {"content": "half \ud83d", "\udc00key": ["\ude00", "whole \U0001f600"]}
    text = encode_compact(value)
    assert b"\\ud83d" in text
    assert b"\\udc00key" in text
    assert "whole \U0001f600".encode() in text  # only the lone ones are escaped
    assert loads(text.decode()) == value
    assert loads_bounded(text.decode()) == value
    assert utf8("plain é") == "plain é".encode()


def test_nesting_too_deep_for_the_standard_library_is_a_value_error() -> None:
    # json.loads itself raises RecursionError here: a live event nested so deep must not end the call.
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ValueError, match="nested too deeply"):
        loads(deep)


def test_read_by_the_standard_library_is_held_to_the_same_depth() -> None:
    # pydantic-core refuses the lone surrogate; json.loads reads it, and the depth is checked after.
    shallow = "[" * MAX_DEPTH + '"\\ud83d"' + "]" * MAX_DEPTH
    assert loads_bounded(shallow) is not None
    deep = "[" * (MAX_DEPTH + 1) + '"\\ud83d"' + "]" * (MAX_DEPTH + 1)
    with pytest.raises(ValueError, match="recursion limit"):
        loads_bounded(deep)
    with pytest.raises(ValueError, match="recursion limit"):
        loads_bounded("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))  # pydantic-core's own refusal
    with pytest.raises(ValueError, match="expected value"):  # neither reads it: pydantic-core's message
        loads_bounded('{"not": json')
