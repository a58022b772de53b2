"""Recording files: one pretty-printed JSON file per key, read and validated, written atomically.

A file's name is its key, and its key is the SHA-256 of its request: a file verifies itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..keys import key_of
from ..models import KNOWN_SCHEMA_VERSIONS, CanonicalRequest, Recording

SUFFIX = ".json"
TMP_SUFFIX = ".tmp"


class CorruptRecording(Exception):
    """A recording file that cannot be used; the message names it and says what to do."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"promptcache: recording {path} is unusable: {reason}.\n"
            "It was left untouched: fix it by hand, or delete it and record again "
            "(pytest --promptcache=record), or overwrite it with --promptcache=rewrite."
        )


def dumps_recording(data: Any) -> str:
    """Stable, reviewable JSON: two-space indent, one line per SSE event.

    The request is canonical, so its keys are sorted. The response keeps the provider's key order, so a
    client that reads raw lines sees what it saw live. Streams are the bulk of a cassette: an event (or an
    AWS event-stream message) a line keeps a 200-chunk stream at 200 lines and makes a changed token one
    changed line in a pull request.
    """
    return _pretty(data, 0, sort=False) + "\n"


def _pretty(
    value: Any, depth: int, *, sort: bool, inline: bool = False, parent_key: str | None = None
) -> str:
    if inline or not isinstance(value, dict | list) or not value:
        return json.dumps(
            value, sort_keys=sort, ensure_ascii=False, separators=(",", ":") if inline else None
        )
    pad = "  " * (depth + 1)
    end = "  " * depth
    if isinstance(value, list):
        inline_items = parent_key in ("events", "event_stream")
        items = [_pretty(v, depth + 1, sort=sort, inline=inline_items) for v in value]
        return "[\n" + ",\n".join(pad + i for i in items) + "\n" + end + "]"
    pairs = sorted(value.items()) if sort else value.items()
    items = [
        f"{pad}{json.dumps(k, ensure_ascii=False)}: "
        + _pretty(v, depth + 1, sort=sort or (depth == 0 and k == "request"), parent_key=k)
        for k, v in pairs
    ]
    return "{\n" + ",\n".join(items) + "\n" + end + "}"


def read_recording(path: Path) -> Recording:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptRecording(path, f"not UTF-8 text ({exc})") from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CorruptRecording(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CorruptRecording(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CorruptRecording(path, "not a JSON object")
    version = data.get("schema_version")
    if version not in KNOWN_SCHEMA_VERSIONS:
        raise CorruptRecording(
            path,
            f"schema_version {version!r} is not one this version of pytest-promptcache knows "
            f"({', '.join(map(str, sorted(KNOWN_SCHEMA_VERSIONS)))}); upgrade pytest-promptcache",
        )
    try:
        recording = Recording.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        reason = f"does not match the recording schema at {where}: {first['msg']}"
        raise CorruptRecording(path, reason) from None
    if recording.key != path.name.removesuffix(SUFFIX):
        raise CorruptRecording(path, f"it holds key {recording.key}, not the key in its file name")
    actual = key_of(recording.request)
    if actual != recording.key:
        # A hand-edited request would otherwise be served for a request it no longer describes.
        raise CorruptRecording(
            path, f"its request was edited after recording (it now hashes to {actual[:12]}, not to its key)"
        )
    return recording


def write_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one, even if this process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name lets a later run remove what a killed writer left behind.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temp_files(directory: Path) -> list[Path]:
    """Remove temp files of writers that died before renaming them (SIGKILL mid-write)."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for item in os.scandir(directory):
        if not (item.name.startswith(".") and item.name.endswith(TMP_SUFFIX)):
            continue
        try:
            pid = int(item.name.removesuffix(TMP_SUFFIX).split(".")[-2])
        except (ValueError, IndexError):
            continue
        if not _alive(pid):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(item.path)
                removed.append(Path(item.path))
    return removed


def recording_keys(directory: Path) -> Iterator[str]:
    """The keys of the files that are recordings by name: ``<key>.json``, regular, not hidden."""
    if not directory.is_dir():
        return
    for item in os.scandir(directory):
        if item.name.endswith(SUFFIX) and not item.name.startswith(".") and item.is_file():
            yield item.name.removesuffix(SUFFIX)


def read_request(path: Path) -> CanonicalRequest | None:
    """Only the request of a recording file (the miss path reads many): None if the file is unusable."""
    key = path.name.removesuffix(SUFFIX)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema_version") in KNOWN_SCHEMA_VERSIONS and data.get("key") == key:
            return CanonicalRequest.model_validate(data["request"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # an unusable file fails the tests that need it, not someone else's miss
    return None
