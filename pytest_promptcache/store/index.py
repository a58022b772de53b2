"""The miss index: what ranking the recordings for a miss needs, without reading them.

Per usable recording: its key, group (method, host, path, model, stream flag), token count, SimHash
signature and inode. A miss ranks the recordings of its group by signature and reads a handful.

Where: the state directory (``promptcache_state_dir``, by default private to the user under the temp
directory), never the cassette directory: nothing here is committed. One file per cassette directory,
``index/<sha256 of its path>.idx``: a JSON header line (``IndexHeader``, validated) followed by packed
little-endian columns (keys, token counts, signatures, inodes), sorted by group. No pickle: the file
is parsed, never executed, and checked against the header before use.

Fresh: a valid recording's request is fixed by its name (the key is the SHA-256 of the request), so
only the directory's listing can change what the index holds: a file added, removed or replaced (a
new inode). The listing costs ~3 µs a file, so it is skipped while the directory's mtime is the one
the index was built at, which only counts once it is 2 s older than the listing (a change within the
same clock tick would leave it equal, as git's racy-clean check knows). Otherwise the directory is
listed and only new or replaced files are read. Unusable files are remembered with their inode, mtime
and size, and read again only when one changes. Recordings this process saves join the loaded index.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..coordination.state import FileLock
from ..models import CanonicalRequest, model_of
from ..similarity import body_text_content, signature, text_tokens
from .packed import (
    Entry,
    GroupKey,
    Packed,
    SkippedFile,
    by_distance,
    hamming_distances,
    load,
    private_dir,
    save,
)
from .scan import Unusable, scan_head

# A listing counts as the directory's state only once the directory has been quiet this long before it.
RACY_NS = 2_000_000_000
# Workers of one xdist run build the index once: the others wait for it, this long at most.
BUILD_WAIT_SECONDS = 120.0

_KEY = re.compile(r"[0-9a-f]{64}")


def group_key(method: str, host: str, path: str, body: Any) -> GroupKey:
    stream = body.get("stream") if isinstance(body, dict) else None
    # A scalar, always in practice; anything else is one group of its own, and never serialised (it
    # could nest deeper than json.dumps recurses).
    flag = json.dumps(stream) if stream is None or isinstance(stream, bool | int | float | str) else "[...]"
    return (method, host, path, model_of(body, path), flag)


def group_of(request: CanonicalRequest) -> GroupKey:
    return group_key(request.method, request.host, request.path, request.body)


@dataclass(frozen=True, slots=True)
class Candidate:
    key: str
    tokens: int
    distance: int  # bits in which its signature differs from the request's


def entry_of(key: str, request: dict[str, Any], inode: int) -> Entry:
    """What the index keeps of a recording's request (as parsed JSON, checked by ``scan_head``)."""
    body = request.get("body")
    body_text = request.get("body_text")
    toks = text_tokens(body_text_content(body, body_text if isinstance(body_text, str) else None))
    group = group_key(request["method"], request["host"], request["path"], body)
    return Entry(key, group, len(toks), signature(toks), inode)


class RecordingIndex:
    def __init__(self, directory: Path, cache_dir: Path | None) -> None:
        self.directory = directory
        digest = hashlib.sha256(str(directory).encode()).hexdigest()[:32]
        self.path = cache_dir / f"{digest}.idx" if cache_dir is not None else None
        self._lock = threading.Lock()
        self._packed: Packed | None = None
        self._extra: dict[str, Entry] = {}  # saved by this process since the last listing
        self._skipped: dict[str, SkippedFile] = {}
        self._listed_mtime: int | None = None

    # -- ranking ---------------------------------------------------------------------------------------

    def ranked(self, query: int, accept: Callable[[GroupKey], bool]) -> Iterator[Candidate]:
        """The recordings of the accepted groups, nearest signature first."""
        with self._lock:
            self._refresh()
            packed = self._packed
            extra = [e for e in self._extra.values() if accept(e.group)]
        streams: list[Iterator[tuple[int, int]]] = []
        if packed is not None:
            for g, group in enumerate(packed.groups):
                if accept(group):
                    start, end = packed.starts[g], packed.starts[g + 1]
                    distances = hamming_distances(packed.signatures[8 * start : 8 * end], query)
                    streams.append(by_distance(distances, start))
        base = packed.count if packed is not None else 0
        near_extra = sorted(((e.signature ^ query).bit_count(), base + i) for i, e in enumerate(extra))
        streams.append(iter(near_extra))
        for distance, position in heapq.merge(*streams):
            if position >= base:
                entry = extra[position - base]
                yield Candidate(entry.key, entry.tokens, distance)
            else:
                assert packed is not None
                key = packed.keys[32 * position : 32 * position + 32].hex()
                yield Candidate(key, packed.token_counts[position], distance)

    def hosts(self, accept: Callable[[GroupKey], bool]) -> set[str]:
        """The hosts of the accepted groups: which other hosts have recordings of a missed endpoint."""
        with self._lock:
            self._refresh()
            groups = [*(self._packed.groups if self._packed is not None else ())]
            groups += [e.group for e in self._extra.values()]
        return {group[1] for group in groups if accept(group)}

    def added(self, key: str, request: CanonicalRequest, path: Path) -> None:
        """A recording this process just saved: known at once, without listing the directory again."""
        with self._lock:
            if self._packed is None:
                return  # not loaded: the next listing finds it
            try:
                inode = path.stat().st_ino
            except OSError:
                return
            self._extra[key] = entry_of(key, request.model_dump(mode="json"), inode)

    # -- freshness -------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        try:
            mtime = self.directory.stat().st_mtime_ns
        except OSError:
            self._packed, self._extra, self._listed_mtime = Packed.of([]), {}, None
            return
        if self._packed is not None and self._listed_mtime == mtime:
            return
        if self._adopt_saved(mtime):
            return
        lock = FileLock(self.path.with_suffix(".lock")) if self.path is not None else None
        held = lock is not None and private_dir(lock.path.parent) and lock.acquire(BUILD_WAIT_SECONDS)
        try:
            # Another process may have listed the directory while this one waited for the lock.
            if held and self._adopt_saved(mtime):
                return
            self._relist(mtime)
        finally:
            if held and lock is not None:
                lock.release()

    def _adopt_saved(self, mtime: int) -> bool:
        """Use the saved index if it reflects the directory as it is now. A stale one still serves as
        the base of a new listing when nothing is loaded: its entries are kept by inode, unread."""
        saved = load(self.path, self.directory) if self.path is not None else None
        if saved is None:
            return False
        header, packed = saved
        fresh = header.directory_mtime_ns == mtime
        if fresh or self._packed is None:
            self._packed = packed
            self._skipped = {s.name: s for s in header.skipped}
        if fresh:
            self._extra = {}  # the listing it reflects includes what this process saved
            self._listed_mtime = mtime
        return fresh

    def _relist(self, mtime_before: int) -> None:
        known = self._packed.entries() if self._packed is not None else {}
        known.update(self._extra)
        entries: list[Entry] = []
        skipped: dict[str, SkippedFile] = {}
        try:
            with os.scandir(self.directory) as listing:
                for item in listing:
                    found = self._entry(item, known)
                    if isinstance(found, Entry):
                        entries.append(found)
                    elif found is not None:
                        skipped[found.name] = found
            mtime_after = self.directory.stat().st_mtime_ns
        except OSError:
            return  # gone, or failed part way: nothing partial is kept; the next miss lists again
        quiet = mtime_after == mtime_before and time.time_ns() - mtime_before > RACY_NS
        self._packed = Packed.of(entries)
        self._extra = {}
        self._skipped = skipped
        self._listed_mtime = mtime_before if mtime_after == mtime_before else None
        if self.path is not None:
            trusted = mtime_before if quiet else None
            save(self.path, self.directory, self._packed, list(skipped.values()), trusted)

    def _entry(self, item: os.DirEntry[str], known: dict[str, Entry]) -> Entry | SkippedFile | None:
        """The entry of one listed file: kept if its inode is the one indexed, else read; None for what
        is not a recording by name (nothing can ask for it) or not a regular file."""
        name = item.name
        key = name.removesuffix(".json")
        if name == key or not _KEY.fullmatch(key):
            return None
        try:
            if not item.is_file(follow_symlinks=False):
                return None
            inode = item.inode()
            old = known.get(key)
            if old is not None and old.inode == inode:
                return old
            before = self._skipped.get(name)
            if before is not None and before.inode == inode:
                st = item.stat(follow_symlinks=False)
                if (before.mtime_ns, before.size) == (st.st_mtime_ns, st.st_size):
                    return before  # unusable, and unchanged since
            try:
                request, _ = scan_head(Path(item.path))
                return entry_of(key, request, inode)
            except Unusable as exc:
                st = item.stat(follow_symlinks=False)
                return SkippedFile(
                    name=name, inode=inode, mtime_ns=st.st_mtime_ns, size=st.st_size, reason=str(exc)
                )
        except OSError:
            return None
