"""JSON text read and written by pydantic-core where it gives exactly what the standard library gives.

Recordings were always read with ``json.loads`` and written with ``json.dumps``; a stream's events and a
response's body pass through both when recorded. pydantic-core does either in a fifth of the time or
less, which is most of recording a 10 MB SSE event, but it differs in two places: it refuses a lone
surrogate escape (``"\\ud800"``), and it writes some floats its own way (``1e-05`` as ``0.00001``). So
each function falls back to the standard library exactly there, and a recording's text stays what it
was, byte for byte.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import PydanticSerializationError, from_json, to_json


def loads(text: str) -> Any:
    """``json.loads(text)``: the same value, or the same ValueError."""
    try:
        return from_json(text)
    except ValueError:
        # A lone surrogate escape, which json.loads accepts; or not JSON, and json.loads says why.
        return json.loads(text)


def encode_compact(value: Any) -> bytes:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` of a JSON value, as UTF-8.

    A lone surrogate, which pydantic-core refuses to write, goes to json.dumps too, and its text cannot be
    encoded: UnicodeEncodeError, as writing such a value always raised."""
    if not _has_float(value):
        try:
            return to_json(value)
        except PydanticSerializationError:
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


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
