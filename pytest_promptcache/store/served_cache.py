"""The served-form cache: what serving each recording needs, kept between sessions.

A test process serves most recordings once, and that first serve is what costs: the file read, parsed,
checked and its key verified (about four warm serves). This cache keeps, per recording, its plain served
form (``served.Kept``: status, headers, body chunks, when and by which test it was recorded, its price
facts) from an earlier session. A recording is served from it after one ``lstat`` shows its file is the
one that was read then: same device, inode, size, modification and change times (the change time cannot
be set back by ``touch`` or ``utime``). Anything else reads the file as before, and the entry is replaced.

Kept only for what was read as a regular file (not through a symbolic link: its own status says nothing
of its target), checked in the written form or by the models, whose times are more than 2 s older than
the read: a change within the same clock tick could leave them equal (git's racy-clean check).

Where: ``served/<sha256 of the cassette directory's path>.pack`` in the state directory, a directory
private to the user (or nothing is read or written). The file: a JSON header line (``PackHeader``,
validated), then the index (marshal: key → offset and length), then the entries (a CRC-32, then the
marshalled ``Kept`` tuple and the file status). marshal, not pickle: it builds plain values only and
runs nothing, as with the ``.pyc`` files Python itself keeps in ``__pycache__``; each entry is checked
by CRC and by type before use, and a file failing any check counts as absent.

Written at the session's end when the session read recordings it did not have (``save``): merged under
a lock with what other processes (xdist workers) wrote meanwhile, dropping entries whose file is gone,
written whole and renamed into place. Bounded: ``MAX_ENTRIES`` entries, ``MAX_PACK_BYTES`` in all,
entries over ``MAX_ENTRY_BYTES`` not kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import mmap
import os
import stat
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .. import __version__
from ..coordination.state import FileLock
from .files import SUFFIX
from .packed import open_state_file, private_dir
from .served import Kept

FORMAT: Literal[1] = 1
MAX_ENTRIES = 1_000_000
MAX_PACK_BYTES = 512 * 1024 * 1024
MAX_ENTRY_BYTES = (1 << 24) - 1  # the length's bits in an index value
MAX_HEADER_BYTES = 4096
RACY_NS = 2_000_000_000
_KEY_LENGTH = 64  # a SHA-256 in hex
SAVE_WAIT_SECONDS = 10.0
_LENGTH_BITS = 24

# (device, inode, size, mtime_ns, ctime_ns)
Signature = tuple[int, int, int, int, int]


class PackHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1]
    plugin_version: str
    directory: str
    entries: int
    index_bytes: int
    keys: int
    keys_bytes: int


def signature(info: os.stat_result) -> Signature:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def pack_path(state_root: Path, directory: Path) -> Path:
    return state_root / "served" / f"{hashlib.sha256(str(directory).encode()).hexdigest()}.pack"


class ServedCache:
    """One cassette directory's served forms: those saved by earlier sessions (mapped, decoded one at a
    time when asked for) and those this session read (encoded, written by ``save``)."""

    def __init__(self, path: Path, directory: Path, *, racy_ns: int = RACY_NS) -> None:
        """``racy_ns``: how much older than the read a file's times must be for it to be kept."""
        self.path = path
        self.directory = directory
        self.racy_ns = racy_ns
        self.hits = 0
        self._lock = threading.Lock()
        self._loaded = False
        self._mapped: mmap.mmap | None = None
        self._base = 0
        self._index: dict[str, int] = {}
        self._new: dict[str, bytes] = {}
        # The key memory (``keys.Keyer.recall``): fingerprint → key and model, as "<key><model>".
        self._keys: dict[bytes, str] = {}
        self._new_keys: dict[bytes, str] = {}

    def recall_key(self, fingerprint: bytes, *, load: bool) -> tuple[str, str | None] | None:
        """The key and model an earlier session gave a request with this fingerprint. ``load=False``
        (on an event loop): None unless the file is already read."""
        if not self._loaded:
            if not load:
                return None
            self._load()
        kept = self._keys.get(fingerprint)
        if type(kept) is not str or len(kept) < _KEY_LENGTH:
            return None
        return kept[:_KEY_LENGTH], kept[_KEY_LENGTH:] or None

    def remember_key(self, fingerprint: bytes, key: str, model: str | None) -> None:
        if len(key) != _KEY_LENGTH:
            return
        with self._lock:
            if len(self._new_keys) < MAX_ENTRIES:
                self._new_keys[fingerprint] = key + (model or "")

    def get(self, key: str, path: str, max_size: int) -> Kept | None:
        """The kept form of ``key``'s recording if its file is still the one it was taken from. Raises
        FileNotFoundError when the file is gone."""
        if not self._loaded:
            self._load()
        spot = self._index.get(key)
        mapped = self._mapped
        if type(spot) is not int or mapped is None:
            return None
        entry = _decode(mapped, self._base + (spot >> _LENGTH_BITS), spot & MAX_ENTRY_BYTES)
        if entry is None:
            return None
        kept, sig = entry
        info = os.lstat(path)
        if signature(info) != sig or not stat.S_ISREG(info.st_mode) or info.st_size > max_size:
            return None
        self.hits += 1
        return kept

    def add(self, key: str, kept: Kept, info: os.stat_result | None) -> None:
        """Keep what was just read from the file whose status (taken before reading it) is ``info``."""
        if info is None or not stat.S_ISREG(info.st_mode):
            return
        if time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) <= self.racy_ns:
            return
        try:
            body = marshal.dumps((tuple(kept), signature(info)))
        except ValueError:  # a value marshal cannot write: the file serves it
            return
        if len(body) + 4 > MAX_ENTRY_BYTES:
            return
        with self._lock:
            if len(self._new) < MAX_ENTRIES:
                self._new[key] = zlib.crc32(body).to_bytes(4, "little") + body

    def save(self) -> None:
        """Write what this session read and the file did not hold, merged with the file as it is now."""
        with self._lock:
            new, self._new = self._new, {}
            new_keys, self._new_keys = self._new_keys, {}
        self._close()
        if not (new or new_keys) or not private_dir(self.path.parent):
            return
        lock = FileLock(self.path.with_suffix(".lock"))
        if not lock.acquire(SAVE_WAIT_SECONDS):
            return  # another process is writing it: this session's entries wait for the next
        try:
            self._write(*self._current(new, new_keys))
        finally:
            lock.release()

    # -- the file ----------------------------------------------------------------------------------------

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            opened = _open(self.path, self.directory)
            if opened is not None:
                self._mapped, self._base, self._index, self._keys = opened
            self._loaded = True

    def _close(self) -> None:
        with self._lock:
            mapped, self._mapped, self._index, self._keys = self._mapped, None, {}, {}
            self._loaded = True
        if mapped is not None:
            with contextlib.suppress(BufferError):
                mapped.close()

    def _current(
        self, new: dict[str, bytes], new_keys: dict[bytes, str]
    ) -> tuple[dict[str, bytes], dict[bytes, str]]:
        """What the file holds now with this session's additions, all of recordings still there (a key
        this session gave a request nobody recorded is not kept either)."""
        try:
            names = set(os.listdir(self.directory))
        except OSError:
            return {}, {}
        entries: dict[str, bytes] = {}
        keys: dict[bytes, str] = {}
        opened = _open(self.path, self.directory)
        if opened is not None:
            mapped, base, index, keys = opened
            try:
                for key, spot in index.items():
                    if type(spot) is int:
                        start = base + (spot >> _LENGTH_BITS)
                        entries[key] = mapped[start : start + (spot & MAX_ENTRY_BYTES)]
            finally:
                mapped.close()
        entries.update(new)
        keys.update(new_keys)
        return (
            {key: blob for key, blob in entries.items() if f"{key}{SUFFIX}" in names},
            {
                fingerprint: value
                for fingerprint, value in keys.items()
                if type(value) is str and f"{value[:_KEY_LENGTH]}{SUFFIX}" in names
            },
        )

    def _write(self, entries: dict[str, bytes], keys: dict[bytes, str]) -> None:
        index: dict[str, int] = {}
        parts: list[bytes] = []
        offset = 0
        for key, blob in entries.items():
            if len(index) >= MAX_ENTRIES or offset + len(blob) > MAX_PACK_BYTES:
                break
            index[key] = (offset << _LENGTH_BITS) | len(blob)
            parts.append(blob)
            offset += len(blob)
        if len(keys) > MAX_ENTRIES:
            keys = dict(list(keys.items())[-MAX_ENTRIES:])  # the newest kept
        packed_index = marshal.dumps(index)
        packed_keys = marshal.dumps(keys)
        header = PackHeader(
            format=FORMAT,
            plugin_version=__version__,
            directory=str(self.directory),
            entries=len(index),
            index_bytes=len(packed_index),
            keys=len(keys),
            keys_bytes=len(packed_keys),
        )
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(header.model_dump_json().encode() + b"\n" + packed_index + packed_keys)
                fh.writelines(parts)
            os.replace(tmp, self.path)
        except OSError:
            # A cache: without it the next session reads the files, as it would have.
            with contextlib.suppress(OSError):
                tmp.unlink()


def _open(path: Path, directory: Path) -> tuple[mmap.mmap, int, dict[str, int], dict[bytes, str]] | None:
    """The mapped file, where its entries start, its index and its keys; None if there is none to
    trust."""
    fd = open_state_file(path, MAX_PACK_BYTES * 2)
    if fd is None:
        return None
    try:
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # empty, or cannot be mapped
        return None
    finally:
        os.close(fd)
    found = _index_of(mapped, directory)
    if found is None:
        mapped.close()
        return None
    return mapped, *found


def _index_of(mapped: mmap.mmap, directory: Path) -> tuple[int, dict[str, int], dict[bytes, str]] | None:
    end = mapped.find(b"\n", 0, MAX_HEADER_BYTES)
    if end < 0:
        return None
    try:
        header = PackHeader.model_validate_json(mapped[:end])
    except ValidationError:
        return None  # damaged, or another version's: rebuilt by the next save
    if header.plugin_version != __version__ or header.directory != str(directory):
        return None
    start = end + 1
    middle = start + header.index_bytes
    try:
        index: Any = marshal.loads(mapped[start:middle])
        keys: Any = marshal.loads(mapped[middle : middle + header.keys_bytes])
    except (ValueError, EOFError, TypeError):
        return None
    if type(index) is not dict or len(index) != header.entries or type(keys) is not dict:
        return None
    if len(keys) != header.keys:
        return None
    return middle + header.keys_bytes, index, keys


def _decode(mapped: mmap.mmap, start: int, length: int) -> tuple[Kept, Signature] | None:
    try:
        blob = mapped[start : start + length]
    except ValueError:  # closed at the session's end while a late call asked
        return None
    if len(blob) != length or length < 4 or int.from_bytes(blob[:4], "little") != zlib.crc32(blob[4:]):
        return None
    try:
        value: Any = marshal.loads(blob[4:])
    except (ValueError, EOFError, TypeError):
        return None
    if not (type(value) is tuple and len(value) == 2 and _is_signature(value[1]) and _is_kept(value[0])):
        return None
    return Kept(*value[0]), value[1]


def _is_signature(value: Any) -> bool:
    return type(value) is tuple and len(value) == 5 and all(type(v) is int for v in value)


def _is_kept(value: Any) -> bool:
    if type(value) is not tuple or len(value) != len(Kept._fields):
        return False
    status, headers, chunks, recorded_at, test, version, model, usage, cost, saved = value
    return (
        type(status) is int
        and type(headers) is tuple
        and all(type(h) is tuple and len(h) == 2 and type(h[0]) is str and type(h[1]) is str for h in headers)
        and type(chunks) is tuple
        and all(type(c) is bytes for c in chunks)
        and type(recorded_at) is str
        and (test is None or type(test) is str)
        and type(version) is int
        and (model is None or type(model) is str)
        and (usage is None or _is_usage(usage))
        and (cost is None or type(cost) is float)
        and (saved is None or type(saved) is float)
    )


def _is_usage(value: Any) -> bool:
    return (
        type(value) is tuple
        and len(value) == 6
        and all(type(v) is int for v in value[:5])
        and (value[5] is None or type(value[5]) is str)
    )
