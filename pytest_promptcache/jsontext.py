"""JSON text read and written by pydantic-core where it gives exactly what the standard library gives.

Recordings were always read with ``json.loads`` and written with ``json.dumps``; a stream's events and a
response's body pass through both when recorded. pydantic-core does either in a fifth of the time or
less, which is most of recording a 10 MB SSE event, but it differs in two places: it refuses a lone
surrogate escape (``"\\ud800"``), and it writes some floats its own way (``1e-05`` as ``0.00001``). So
each function falls back to the standard library exactly there, and a recording's text stays what it
was, byte for byte.

A lone surrogate (a provider's stream may split "\\ud83d\\ude00" between two events) has no UTF-8
form: JSON text holding one is written with it as the ``\\uXXXX`` escape it arrived as (``utf8``), and
read back by the standard library.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic_core import PydanticSerializationError, from_json, to_json

# pydantic-core's parser refuses to nest deeper; a value the standard library parsed is held to it too.
MAX_DEPTH = 200
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(text: str) -> Any:
    """``json.loads(text)``: the same value, or the same ValueError (nesting too deep for the standard
    library's parser, a RecursionError there, is one too)."""
    try:
        return from_json(text)
    except ValueError:
        pass
    # A lone surrogate escape, which json.loads accepts; or not JSON, and json.loads says why.
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to parse") from None


def loads_bounded(text: str) -> Any:
    """``loads``, and never a value nested deeper than ``MAX_DEPTH``, so that nothing walking it
    afterwards can exhaust the stack. ValueError: pydantic-core's, when the standard library cannot
    read the text either or it nests too deeply."""
    try:
        return from_json(text)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise
        refused = exc
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise refused from None
    if not _within_depth(value, MAX_DEPTH):
        raise ValueError(f"recursion limit exceeded: JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _within_depth(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return True


def utf8(text: str) -> bytes:
    """JSON text as UTF-8, a lone surrogate (only ever inside a string) as its ``\\uXXXX`` escape."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return escape_surrogates(text).encode("utf-8")


def escape_surrogates(text: str) -> str:
    """JSON text with each lone surrogate as its ``\\uXXXX`` escape: text that can be printed or encoded."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def encode_compact(value: Any) -> bytes:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` of a JSON value, as ``utf8``."""
    if not _has_float(value):
        try:
            return to_json(value)
        except PydanticSerializationError:
            pass  # a lone surrogate
    return encode_standard(value)


def encode_standard(value: Any, *, sort_keys: bool = False) -> bytes:
    """What ``encode_compact`` gives (keys sorted if asked), written by the standard library whatever the
    value holds."""
    return utf8(json.dumps(value, sort_keys=sort_keys, ensure_ascii=False, separators=(",", ":")))


def _has_float(value: Any) -> bool:
    # Loops, not any() over generators: this runs once per event of every stream recorded.
    if isinstance(value, dict):
        for item in value.values():
            if isinstance(item, float) or (isinstance(item, dict | list) and _has_float(item)):
                return True
        return False
    if isinstance(value, list):
        for item in value:
            if isinstance(item, float) or (isinstance(item, dict | list) and _has_float(item)):
                return True
        return False
    return isinstance(value, float)
