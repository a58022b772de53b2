"""Reading only the request of a recording file, for the miss path, which may look at thousands.

Bounded and defensive: only regular files are opened, and without blocking (a FIFO named like a
recording cannot hang the session); a file over ``MAX_FILE_BYTES`` is not read, and the JSON is parsed
only up to the file's ``request`` member (the response, often the bulk of a file, is not); a request nested
deeper than ``MAX_DEPTH`` is refused before pydantic sees it. Any problem makes the file unusable *for
this purpose*, with a reason; it never raises, so one bad file cannot break someone else's miss.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..keys import key_of
from ..limits import DEFAULT_MAX_RECORDING_SIZE
from ..models import KNOWN_SCHEMA_VERSIONS, CanonicalRequest
from ..safefile import UnsafeFile, read_regular_file

MAX_FILE_BYTES = DEFAULT_MAX_RECORDING_SIZE
# Smaller files are parsed whole (faster than member by member); larger ones up to their request.
WHOLE_PARSE_CHARS = 64 * 1024
# Real requests nest a dozen levels (tool schemas a few more); far deeper is damage, or an attack.
MAX_DEPTH = 64

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class Unusable(Exception):
    """Why a file cannot serve as a recording's request."""


@dataclass(frozen=True)
class ScannedRequest:
    request: CanonicalRequest
    inode: int
    mtime_ns: int
    size: int


def _skip_space(text: str, i: int) -> int:
    match = _WS.match(text, i)
    return match.end() if match else i


def _members(text: str) -> Iterator[tuple[str, Any]]:
    """The members of a top-level JSON object one at a time, so parsing can stop at the one wanted."""
    i = _skip_space(text, 0)
    if text[i : i + 1] != "{":
        raise Unusable("not a JSON object")
    i = _skip_space(text, i + 1)
    if text[i : i + 1] == "}":
        return
    while True:
        if text[i : i + 1] != '"':
            raise Unusable("not valid JSON")
        name, i = _DECODER.raw_decode(text, i)
        i = _skip_space(text, i)
        if text[i : i + 1] != ":":
            raise Unusable("not valid JSON")
        i = _skip_space(text, i + 1)
        value, i = _DECODER.raw_decode(text, i)
        yield name, value
        i = _skip_space(text, i)
        separator = text[i : i + 1]
        if separator == "}":
            return
        if separator != ",":
            raise Unusable("not valid JSON")
        i = _skip_space(text, i + 1)


def depth(value: Any, limit: int) -> int:
    """How deep a JSON value nests, counted without recursion and only up to ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > limit:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _read_head(path: Path) -> tuple[str, os.stat_result]:
    # The one safe read every reader of recordings uses (regular files only, never blocking, bounded).
    try:
        data = read_regular_file(path, max_size=MAX_FILE_BYTES, within=path.parent)
        st = os.stat(path)
    except UnsafeFile as exc:
        reason = f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB" if exc.too_large else exc.reason
        raise Unusable(reason) from None
    except OSError as exc:
        raise Unusable(f"cannot be opened ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8"), st
    except UnicodeDecodeError:
        raise Unusable("not UTF-8 text") from None


def scan_head(path: Path) -> tuple[dict[str, Any], os.stat_result]:
    """The request of the recording file at ``path`` as parsed JSON, checked as far as the miss index
    needs: a known schema version, its key is its file name, a method, host and path, a nesting depth
    anything may recurse through. Raises ``Unusable`` with the reason otherwise."""
    key = path.name.removesuffix(".json")
    text, st = _read_head(path)
    found: dict[str, Any] = {}
    try:
        if len(text) < WHOLE_PARSE_CHARS:
            whole = json.loads(text)
            if not isinstance(whole, dict):
                raise Unusable("not a JSON object")
            found = whole
        else:
            for name, value in _members(text):
                if name in ("schema_version", "key", "request"):
                    found[name] = value
                    if len(found) == 3:
                        break
    except (ValueError, RecursionError):
        # RecursionError: the JSON parser's own nesting limit; a file may hold anything.
        raise Unusable("not valid JSON (or nested too deeply)") from None
    if found.get("schema_version") not in KNOWN_SCHEMA_VERSIONS:
        raise Unusable(f"schema_version {found.get('schema_version')!r} is not one this version knows")
    if found.get("key") != key:
        raise Unusable("its key is not its file name")
    request = found.get("request")
    if not isinstance(request, dict) or not all(isinstance(request.get(f), str) for f in _ENDPOINT):
        raise Unusable("its request has no method, host and path")
    if depth(request, MAX_DEPTH) > MAX_DEPTH:
        raise Unusable(f"its request nests deeper than {MAX_DEPTH} levels")
    return request, st


_ENDPOINT = ("method", "host", "path")


def scan_request(path: Path) -> ScannedRequest:
    """The request of the recording file at ``path``, verified as a recording's: ``scan_head``'s
    checks, the schema, and its key is the SHA-256 of its request.
    Raises ``Unusable`` with the reason otherwise."""
    raw, st = scan_head(path)
    try:
        request = CanonicalRequest.model_validate(raw)
        actual = key_of(request)
    except (ValidationError, ValueError, RecursionError):
        raise Unusable("its request does not match the recording schema") from None
    if actual != path.name.removesuffix(".json"):
        raise Unusable("its request does not hash to its key (edited by hand?)")
    return ScannedRequest(request, st.st_ino, st.st_mtime_ns, st.st_size)
