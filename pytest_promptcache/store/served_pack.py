"""The served-form cache's file (``served_cache``): read by mapping it, written whole.

A JSON header line (``PackHeader``, validated), then three marshalled maps: the index (key → offset and
length of its entry), the key memory (request fingerprint → "<key><model>") and the tests' keys (a
BLAKE2b digest of a test's node id → the keys it served when it last ran; a digest, since a node id may
hold a parametrized secret), then the entries (a CRC-32, then the marshalled ``Kept`` tuple, the
status of the file it was taken from and a BLAKE2b digest of its bytes). marshal, not pickle: it builds
plain values only and runs nothing, as with the ``.pyc`` files Python itself keeps in ``__pycache__``;
every value is checked by type before use, each entry by its CRC too, and a file failing any check
counts as absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import mmap
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .. import __version__
from .files import write_pieces
from .packed import open_state_file
from .served import Kept

# 2: the tests' keys. 3: each entry's content digest. 4: each entry's price, under the header's prices.
FORMAT: Literal[4] = 4
MAX_ENTRIES = 1_000_000
MAX_PACK_BYTES = 512 * 1024 * 1024
MAX_ENTRY_BYTES = (1 << 24) - 1  # the length's bits in an index value
MAX_HEADER_BYTES = 4096
_LENGTH_BITS = 24

# (device, inode, size, mtime_ns, ctime_ns)
Signature = tuple[int, int, int, int, int]
# A test's node id digest → the keys it served, in order.
TestKeys = dict[bytes, tuple[str, ...]]
DIGEST_BYTES = 16


class PackHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[4]
    plugin_version: str
    directory: str
    # What the entries were priced under (``usage.PriceBook.identity``).
    prices: str
    entries: int
    index_bytes: int
    keys: int
    keys_bytes: int
    tests: int
    tests_bytes: int


def signature(info: os.stat_result) -> Signature:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def content_digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()


@dataclass
class Pack:
    """A mapped pack: its maps read, its entries decoded one at a time when asked for."""

    mapped: mmap.mmap
    base: int
    index: dict[str, int]
    keys: dict[bytes, str]
    tests: TestKeys

    def entry(self, key: str) -> tuple[Kept, Signature, bytes] | None:
        spot = self.index.get(key)
        if type(spot) is not int:
            return None
        return _decode(self.mapped, self.base + (spot >> _LENGTH_BITS), spot & MAX_ENTRY_BYTES)

    def blobs(self) -> dict[str, bytes]:
        """Every entry as written, to be written again."""
        found: dict[str, bytes] = {}
        for key, spot in self.index.items():
            if type(spot) is int:
                start = self.base + (spot >> _LENGTH_BITS)
                found[key] = self.mapped[start : start + (spot & MAX_ENTRY_BYTES)]
        return found

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            self.mapped.close()


def encode_entry(kept: Kept, info: os.stat_result, digest: bytes) -> bytes | None:
    """An entry as the file holds it; None for one marshal cannot write or too large to keep."""
    try:
        body = marshal.dumps((tuple(kept), signature(info), digest))
    except ValueError:
        return None
    if len(body) + 4 > MAX_ENTRY_BYTES:
        return None
    return zlib.crc32(body).to_bytes(4, "little") + body


def open_pack(path: Path, directory: Path, prices: str) -> Pack | None:
    """The mapped file; None if there is none to trust, or its prices are not ``prices``."""
    fd = open_state_file(path, MAX_PACK_BYTES * 2)
    if fd is None:
        return None
    try:
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # empty, or cannot be mapped
        return None
    finally:
        os.close(fd)
    pack = _read_maps(mapped, directory, prices)
    if pack is None:
        mapped.close()
    return pack


def _read_maps(mapped: mmap.mmap, directory: Path, prices: str) -> Pack | None:
    end = mapped.find(b"\n", 0, MAX_HEADER_BYTES)
    if end < 0:
        return None
    try:
        header = PackHeader.model_validate_json(mapped[:end])
    except ValidationError:
        return None  # damaged, or another version's: rebuilt by the next save
    if header.plugin_version != __version__ or header.directory != str(directory):
        return None
    if header.prices != prices:
        return None  # priced otherwise (new prices of the user's, genai-prices upgraded): rebuilt
    spans = (header.index_bytes, header.keys_bytes, header.tests_bytes)
    maps: list[Any] = []
    start = end + 1
    for size in spans:
        try:
            maps.append(marshal.loads(mapped[start : start + size]))
        except (ValueError, EOFError, TypeError):
            return None
        start += size
    index, keys, tests = maps
    if not all(type(m) is dict for m in maps):
        return None
    if (len(index), len(keys), len(tests)) != (header.entries, header.keys, header.tests):
        return None
    return Pack(mapped, start, index, keys, tests)


def write_pack(
    path: Path,
    directory: Path,
    prices: str,
    entries: dict[str, bytes],
    keys: dict[bytes, str],
    tests: TestKeys,
) -> None:
    """Write the file whole and rename it into place; bounded by MAX_ENTRIES and MAX_PACK_BYTES (the
    newest key memory and tests kept). A cache: a file that cannot be written is left as it was."""
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
        keys = dict(list(keys.items())[-MAX_ENTRIES:])
    packed = [marshal.dumps(index), marshal.dumps(keys), marshal.dumps(tests)]
    header = PackHeader(
        format=FORMAT,
        plugin_version=__version__,
        directory=str(directory),
        prices=prices,
        entries=len(index),
        index_bytes=len(packed[0]),
        keys=len(keys),
        keys_bytes=len(packed[1]),
        tests=len(tests),
        tests_bytes=len(packed[2]),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(header.model_dump_json().encode() + b"\n")
            for piece in (*packed, *parts):
                write_pieces(fh, piece)
        os.replace(tmp, path)
    except OSError:
        # A cache: without it the next session reads the files, as it would have.
        with contextlib.suppress(OSError):
            tmp.unlink()


def _decode(mapped: mmap.mmap, start: int, length: int) -> tuple[Kept, Signature, bytes] | None:
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
    if not (
        type(value) is tuple
        and len(value) == 3
        and _is_signature(value[1])
        and type(value[2]) is bytes
        and len(value[2]) == DIGEST_BYTES
        and _is_kept(value[0])
    ):
        return None
    return Kept(*value[0]), value[1], value[2]


def _is_signature(value: Any) -> bool:
    return type(value) is tuple and len(value) == 5 and all(type(v) is int for v in value)


def _is_kept(value: Any) -> bool:
    if type(value) is not tuple or len(value) != len(Kept._fields):
        return False
    status, headers, chunks, recorded_at, test, usage, cost, saved = value
    return (
        type(status) is int
        and type(headers) is tuple
        and all(type(h) is tuple and len(h) == 2 and type(h[0]) is str and type(h[1]) is str for h in headers)
        and type(chunks) is tuple
        and all(type(c) is bytes for c in chunks)
        and type(recorded_at) is str
        and (test is None or type(test) is str)
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
