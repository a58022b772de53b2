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
from typing import Any, BinaryIO

from pydantic import ValidationError

from ..jsontext import encode_compact, encode_standard, loads_bounded, utf8
from ..keys import key_of
from ..limits import DEFAULT_MAX_RECORDING_SIZE
from ..models import KNOWN_SCHEMA_VERSIONS, Recording
from ..safefile import UnsafeFile, read_regular_file_info

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
    """``encode_recording`` as text."""
    return encode_recording(data).decode("utf-8")


def encode_recording(data: Any) -> bytes:
    """Stable, reviewable JSON, as the file's UTF-8 bytes: two-space indent, one line per SSE event.

    The request is canonical, so its keys are sorted. The response keeps the provider's key order, so a
    client that reads raw lines sees what it saw live. Streams are the bulk of a cassette: an event (or an
    AWS event-stream message) a line keeps a 200-chunk stream at 200 lines and makes a changed token one
    changed line in a pull request.
    """
    parts: list[bytes] = []
    _pretty(data, 0, parts, sort=False)
    parts.append(b"\n")
    # Bytes throughout and one join at the end: a 10 MB event is copied once after pydantic-core wrote
    # it, not decoded, joined as text and encoded again.
    return b"".join(parts)


def _pretty(
    value: Any,
    depth: int,
    out: list[bytes],
    *,
    sort: bool,
    inline: bool = False,
    parent_key: str | None = None,
) -> None:
    if inline or not isinstance(value, dict | list) or not value:
        # Compact separators change nothing in a scalar or an empty container; sorted keys only a request.
        if sort and inline:
            out.append(encode_standard(value, sort_keys=True))
        else:
            out.append(encode_compact(value))
        return
    pad = "  " * (depth + 1)
    if isinstance(value, list):
        inline_items = parent_key in ("events", "event_stream")
        out.append(b"[\n")
        for i, item in enumerate(value):
            out.append((",\n" + pad if i else pad).encode())
            _pretty(item, depth + 1, out, sort=sort, inline=inline_items)
        out.append(("\n" + "  " * depth + "]").encode())
        return
    pairs = sorted(value.items()) if sort else value.items()
    out.append(b"{\n")
    for i, (k, v) in enumerate(pairs):
        out.append(utf8((",\n" if i else "") + f"{pad}{json.dumps(k, ensure_ascii=False)}: "))
        _pretty(v, depth + 1, out, sort=sort or (depth == 0 and k == "request"), parent_key=k)
    out.append(("\n" + "  " * depth + "}").encode())


class BadRecording(ValueError):
    """A recording that does not hold up, wherever it came from; ``reason`` says why, as a clause."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def read_recording_text(path: Path, max_size: int = DEFAULT_MAX_RECORDING_SIZE) -> str:
    """The text of a file in the recordings directory, read as every reader of it must read it.

    Reads only a regular file (a symbolic link only when it leads to one in the same directory), never
    blocks (a FIFO), never reads more than ``max_size`` bytes (``/dev/zero``). Raises FileNotFoundError
    when there is no file, CorruptRecording when it must not or cannot be read or is not UTF-8.
    """
    return read_recording_text_info(path, max_size)[0]


def read_recording_text_info(
    path: Path, max_size: int = DEFAULT_MAX_RECORDING_SIZE
) -> tuple[str, os.stat_result | None]:
    """``read_recording_text``, and the status of the file read (None when it is a symbolic link)."""
    try:
        raw, info = read_regular_file_info(path, max_size=max_size, within=path.parent)
    except UnsafeFile as exc:
        hint = " (promptcache_max_recording_size); raise the limit if it is a real recording"
        raise CorruptRecording(path, exc.reason + (hint if exc.too_large else "")) from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CorruptRecording(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        return _text(raw), info
    except BadRecording as exc:
        raise CorruptRecording(path, exc.reason) from None


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecording(f"not UTF-8 text ({exc})") from None


def _object(text: str) -> dict[str, Any]:
    """Parsed with a nesting limit: pydantic-core's parser refuses depth beyond 200 with an error
    instead of recursing, so nothing that walks the result afterwards (validation, hashing, scrubbing)
    can raise RecursionError."""
    try:
        data = loads_bounded(text)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise BadRecording(f"it is nested too deeply to be a recording ({exc})") from None
        raise BadRecording(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadRecording("not a JSON object")
    return data


def read_json(path: Path, max_size: int = DEFAULT_MAX_RECORDING_SIZE) -> dict[str, Any]:
    """The JSON object in a recording file (read_recording_text), parsed with a nesting limit.

    Raises FileNotFoundError when there is no file, CorruptRecording when it is not a JSON object.
    """
    return _parse(path, read_recording_text(path, max_size))


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        return _object(text)
    except BadRecording as exc:
        raise CorruptRecording(path, exc.reason) from None


def _validated(data: dict[str, Any], key: str, named_by: str) -> Recording:
    version = data.get("schema_version")
    if version not in KNOWN_SCHEMA_VERSIONS:
        raise BadRecording(
            f"schema_version {version!r} is not one this version of pytest-promptcache knows "
            f"({', '.join(map(str, sorted(KNOWN_SCHEMA_VERSIONS)))}); upgrade pytest-promptcache",
        )
    try:
        recording = Recording.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRecording(f"does not match the recording schema at {where}: {first['msg']}") from None
    if recording.key != key:
        raise BadRecording(f"it holds key {recording.key}, not the key in {named_by}")
    actual = key_of(recording.request)
    if actual != recording.key:
        # A hand-edited request would otherwise be served for a request it no longer describes.
        raise BadRecording(
            f"its request was edited after recording (it now hashes to {actual[:12]}, not to its key)"
        )
    return recording


def read_recording(path: Path, max_size: int = DEFAULT_MAX_RECORDING_SIZE) -> Recording:
    """The recording in ``path``, validated: schema, and key = file name = hash of the request.

    Raises FileNotFoundError when there is no file, CorruptRecording when it is not a usable recording.
    """
    return validated_recording(path, read_json(path, max_size))


def parse_recording(raw: bytes, key: str, *, named_by: str) -> Recording:
    """A recording from bytes read elsewhere (the shared tier), held to the rules of a file: UTF-8,
    a JSON object within the nesting limit, a known schema, and a request that hashes to ``key``.
    The caller bounds the size. Raises BadRecording."""
    return _validated(_object(_text(raw)), key, named_by)


def recording_from_text(path: Path, text: str) -> Recording:
    """``read_recording`` of the text already read from ``path``."""
    return validated_recording(path, _parse(path, text))


def validated_recording(path: Path, data: dict[str, Any]) -> Recording:
    """``read_recording`` of the JSON object already parsed from ``path``."""
    try:
        return _validated(data, path.name.removesuffix(SUFFIX), "its file name")
    except BadRecording as exc:
        raise CorruptRecording(path, exc.reason) from None


def _umask() -> int:
    # Linux says it without changing it; elsewhere it is set and put back (another thread creating a
    # file in between would get 022, the usual umask, for that moment).
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Recordings and reports are the user's files, shared through git, CI artifacts and bind mounts: they get
# the mode open() would give them (0666 less the umask, read once at import), not the 0600 mkstemp gives
# its temporary file.
FILE_MODE = 0o666 & ~_umask()


# Linux throttles a write() that dirties many pages at once: on the machine measured, 10 MB written in one
# write() or in 1 MB writes took ~25 ms, in writes of 256 KB or less ~2.7 ms (interleaved, 6 files each).
WRITE_PIECE = 128 * 1024


def write_pieces(fh: BinaryIO, data: bytes) -> None:
    """Write ``data`` in pieces of at most ``WRITE_PIECE`` bytes (views, not copies)."""
    if len(data) <= WRITE_PIECE:
        fh.write(data)
        return
    view = memoryview(data)
    for start in range(0, len(data), WRITE_PIECE):
        fh.write(view[start : start + WRITE_PIECE])


def write_atomic(path: Path, content: str | bytes) -> None:
    """Readers see the old file or the new one, never half of one, even if this process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name lets a later run remove what a killed writer left behind.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, FILE_MODE)
        # Encoded at once and written as bytes: a text-mode file encodes in small pieces, which made
        # writing a 10 MB recording take several times longer than the write itself.
        with os.fdopen(fd, "wb") as fh:
            write_pieces(fh, content.encode("utf-8") if isinstance(content, str) else content)
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


def recording_keys(directory: Path, *, regular_only: bool = True) -> Iterator[str]:
    """The keys of the files that are recordings by name: ``<key>.json``, not hidden, and regular files
    unless ``regular_only`` is False (a listing names a FIFO or a link to a device as unreadable)."""
    if not directory.is_dir():
        return
    for item in os.scandir(directory):
        named = item.name.endswith(SUFFIX) and not item.name.startswith(".")
        if named and (not regular_only or item.is_file()):
            yield item.name.removesuffix(SUFFIX)
