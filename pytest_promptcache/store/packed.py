"""The miss index's file: a JSON header line, validated, then packed little-endian columns.

No pickle: the file is parsed, never executed, and its columns are checked against its header before
use; a file that fails any check counts as absent (the index is rebuilt). It lives in a directory
private to the user (0700, owned by them, writable by nobody else), or it is neither read nor written.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import threading
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..coordination.statedir import make_private_dirs
from .files import write_pieces

FORMAT: Literal[1] = 1
# key (32 bytes), token count (uint32), signature (uint64), inode (uint64)
ENTRY_BYTES = 32 + 4 + 8 + 8
MAX_ENTRIES = 10_000_000
MAX_INDEX_BYTES = 1024 * 1024 * 1024
# (method, host, path, model, stream flag as JSON)
GroupKey = tuple[str, str, str, str | None, str]


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    group: GroupKey
    tokens: int
    signature: int
    inode: int


class SkippedFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: str
    inode: int
    mtime_ns: int
    size: int
    reason: str


class IndexHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    format: Literal[1]
    directory: str
    # The directory's mtime the listing reflects, or None when it changed too recently to trust.
    directory_mtime_ns: int | None
    groups: list[GroupKey]
    group_sizes: list[int] = Field(default_factory=list)
    skipped: list[SkippedFile] = Field(default_factory=list)


@dataclass(frozen=True)
class Packed:
    """The index's entries as packed columns, sorted by group, then key."""

    groups: list[GroupKey]
    starts: list[int]  # group i holds entries starts[i] to starts[i + 1]
    keys: bytes
    token_counts: array[int]
    signatures: bytes
    inodes: bytes

    @property
    def count(self) -> int:
        return len(self.keys) // 32

    @classmethod
    def of(cls, entries: list[Entry]) -> Packed:
        entries = sorted(entries, key=lambda e: (e.group[:3], e.group[3] or "", e.group[4], e.key))
        groups: list[GroupKey] = []
        starts: list[int] = []
        for i, entry in enumerate(entries):
            if not groups or groups[-1] != entry.group:
                groups.append(entry.group)
                starts.append(i)
        starts.append(len(entries))
        token_counts = array("I", [min(e.tokens, 0xFFFFFFFF) for e in entries])
        return cls(
            groups=groups,
            starts=starts,
            keys=b"".join(bytes.fromhex(e.key) for e in entries),
            token_counts=token_counts,
            signatures=b"".join(e.signature.to_bytes(8, "little") for e in entries),
            inodes=b"".join((e.inode & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little") for e in entries),
        )

    def entries(self) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        for g, group in enumerate(self.groups):
            for i in range(self.starts[g], self.starts[g + 1]):
                key = self.keys[32 * i : 32 * i + 32].hex()
                sig = int.from_bytes(self.signatures[8 * i : 8 * i + 8], "little")
                inode = int.from_bytes(self.inodes[8 * i : 8 * i + 8], "little")
                out[key] = Entry(key, group, self.token_counts[i], sig, inode)
        return out

    def payload(self) -> bytes:
        counts = array("I", self.token_counts)
        if sys.byteorder != "little":
            counts.byteswap()
        return self.keys + counts.tobytes() + self.signatures + self.inodes

    @classmethod
    def parse(cls, header: IndexHeader, payload: bytes) -> Packed | None:
        n = sum(header.group_sizes)
        if len(header.group_sizes) != len(header.groups) or len(payload) != n * ENTRY_BYTES:
            return None
        if any(size <= 0 for size in header.group_sizes) or n > MAX_ENTRIES:
            return None
        counts = array("I")
        counts.frombytes(payload[32 * n : 36 * n])
        if sys.byteorder != "little":
            counts.byteswap()
        starts = [0]
        for size in header.group_sizes:
            starts.append(starts[-1] + size)
        return cls(
            groups=list(header.groups),
            starts=starts,
            keys=payload[: 32 * n],
            token_counts=counts,
            signatures=payload[36 * n : 44 * n],
            inodes=payload[44 * n :],
        )


_POPCOUNT = bytes(bin(value).count("1") for value in range(256))
_LANE_SUM = int.from_bytes(b"\x01" * 8, "little")


def hamming_distances(signatures: bytes, query: int) -> bytes:
    """One byte per signature: how many bits it differs from ``query`` in.

    All in a few big-integer operations, in C: XOR every 64-bit lane at once, count bits a byte at a
    time (translate), then add each lane's eight byte counts into its top byte by one multiplication
    (no count exceeds 64, so nothing carries between bytes).
    """
    n = len(signatures) // 8
    if n == 0:
        return b""
    lanes = int.from_bytes(signatures, "little") ^ int.from_bytes(query.to_bytes(8, "little") * n, "little")
    per_byte = lanes.to_bytes(8 * n, "little").translate(_POPCOUNT)
    summed = int.from_bytes(per_byte, "little") * _LANE_SUM
    return summed.to_bytes(8 * n + 8, "little")[7::8][:n]


def by_distance(distances: bytes, offset: int) -> Iterator[tuple[int, int]]:
    """(distance, offset + position), nearest first; lazily, so a miss pays only for what it reads."""
    for d in range(65):
        i = distances.find(d)
        while i >= 0:
            yield d, offset + i
            i = distances.find(d, i + 1)


def private_dir(path: Path) -> bool:
    """Creates ``path`` (0700); True if it is ours and nobody else may write to it."""
    try:
        make_private_dirs(path)
        st = path.stat()
    except OSError:
        return False
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return False
    return not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def open_state_file(path: Path, max_bytes: int) -> int | None:
    """A descriptor of ``path`` (the caller closes it) if it is a file of this user's, in a directory
    private to them, of at most ``max_bytes``; else None. Never follows a link, never blocks."""
    if not private_dir(path.parent):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    if not stat.S_ISREG(st.st_mode) or not mine or st.st_size > max_bytes:
        os.close(fd)
        return None
    return fd


def load(path: Path, directory: Path) -> tuple[IndexHeader, Packed] | None:
    """The saved index of ``directory``, or None if there is none this process can trust."""
    fd = open_state_file(path, MAX_INDEX_BYTES)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_INDEX_BYTES)
    line, _, payload = data.partition(b"\n")
    try:
        header = IndexHeader.model_validate_json(line)
    except ValidationError:
        return None  # damaged or another version's: rebuilt
    if header.directory != str(directory):
        return None
    packed = Packed.parse(header, payload)
    return (header, packed) if packed is not None else None


def save(
    path: Path, directory: Path, packed: Packed, skipped: list[SkippedFile], directory_mtime_ns: int | None
) -> None:
    """Written whole and renamed into place: a reader sees the old index or the new one."""
    if not private_dir(path.parent):
        return
    sizes = [packed.starts[g + 1] - packed.starts[g] for g in range(len(packed.groups))]
    header = IndexHeader(
        format=FORMAT,
        directory=str(directory),
        directory_mtime_ns=directory_mtime_ns,
        groups=packed.groups,
        group_sizes=sizes,
        skipped=sorted(skipped, key=lambda s: s.name),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(header.model_dump_json().encode() + b"\n")
            write_pieces(fh, packed.payload())
        os.replace(tmp, path)
    except OSError:
        # A cache: without it the next session lists the directory again.
        with contextlib.suppress(OSError):
            tmp.unlink()
