"""The cassette store: the memory tier in front of the recording files.

Lookup is a path computed from the key: nothing is scanned to serve a request. The miss path (the
nearest recording for a diff, or a similar one to serve) ranks recordings by the index kept in the
state directory and reads only a handful.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ..limits import DEFAULT_MAX_RECORDING_SIZE
from ..lru import LRU
from ..models import CanonicalRequest, Recording
from .files import (
    SUFFIX,
    CorruptRecording,
    encode_recording,
    read_json,
    recording_keys,
    sweep_temp_files,
    write_atomic,
)
from .redis import SharedRecordings
from .served import CARRIED_PRICES, Pricer, StoredRecording, carried_price, load_kept
from .served_cache import ServedCache, pack_path

if TYPE_CHECKING:
    from .index import RecordingIndex

__all__ = ["CassetteStore", "CorruptRecording", "Found", "StoredRecording", "Tier"]


class Tier(StrEnum):
    """Where a served recording was found: the lookup order."""

    MEMORY = "memory"
    CASSETTES = "cassettes"
    SHARED = "shared"


@dataclass(frozen=True)
class Found:
    stored: StoredRecording
    tier: Tier
    # The machine that recorded it, when the shared tier says.
    machine: str | None = None
    # The whole recording, for a shared hit only: record modes copy it into the cassette directory.
    recording: Recording | None = None


class CassetteStore:
    def __init__(
        self,
        directory: Path,
        memory_size: int = 4096,
        max_file_size: int = DEFAULT_MAX_RECORDING_SIZE,
        index_dir: Path | None = None,
        shared: SharedRecordings | None = None,
        pricer: Pricer = carried_price,
        prices: str = CARRIED_PRICES,
        state_root: Path | None = None,
    ) -> None:
        """``index_dir``: where the miss index is kept between sessions (in memory only without one).
        ``shared``: the Redis tier behind the files, if the fleet has one. ``pricer``: a recording's
        price, asked once per recording read or saved; ``prices`` names what it prices under
        (``usage.PriceBook.identity``). ``state_root``: the state directory, where recordings' served
        forms are kept between sessions, with their prices (``served_cache``); none without it."""
        self.directory = directory
        self._directory_text = os.path.join(directory, "")
        self.shared = shared
        self.max_file_size = max_file_size
        self._pricer = pricer
        self._memory: LRU[str, StoredRecording] = LRU(memory_size)
        self._memory_size = memory_size
        self._index_dir = index_dir
        self._index: RecordingIndex | None = None
        self._index_lock = threading.Lock()
        self.served_cache = (
            ServedCache(pack_path(state_root, directory), directory, prices=prices)
            if state_root is not None
            else None
        )

    @property
    def index(self) -> RecordingIndex:
        """The miss index, built (and its modules imported) on first use: a session that never misses
        nor records never pays for either."""
        index = self._index
        if index is None:
            with self._index_lock:
                if self._index is None:
                    from .index import RecordingIndex

                    self._index = RecordingIndex(self.directory, self._index_dir)
                index = self._index
        return index

    def path_for(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    def in_memory(self, key: str) -> StoredRecording | None:
        """The recording if it is in the memory tier: no I/O and no waiting, safe on an event loop."""
        return self._memory.get(key, wait=False)

    def get(self, key: str) -> StoredRecording | None:
        """The recording for a key, or None. Raises CorruptRecording for an unusable file."""
        stored = self._memory.get(key)
        if stored is not None:
            return stored
        return self._from_file(key)

    def _name_of(self, key: str) -> str:
        # A string, not a Path, while the served-form cache answers: building a Path costs more than
        # the lstat that checks the entry.
        return f"{self._directory_text}{key}{SUFFIX}"

    def preload(self, tests: Iterable[str]) -> int:
        """Put in the memory tier what ``tests`` (node ids) served when they last ran, where the
        served-form cache still holds it, up to the tier's size; before the first call. Returns how
        many recordings."""
        cache = self.served_cache
        if cache is None:
            return 0
        count = 0
        for key, kept in cache.preload(tests, self._memory_size, self._name_of, self.max_file_size):
            self._memory.put(key, kept.stored(key))
            count += 1
        return count

    def _from_file(self, key: str) -> StoredRecording | None:
        name = self._name_of(key)
        cache = self.served_cache
        try:
            kept = cache.get(key, name, self.max_file_size) if cache is not None else None
            if kept is not None:
                stored = kept.stored(key)
            else:
                stored, kept, info, text = load_kept(Path(name), self._pricer, self.max_file_size)
                if cache is not None:
                    cache.add(key, kept, info, text)
        except FileNotFoundError:
            return None
        self._memory.put(key, stored)
        return stored

    def lookup(self, key: str) -> Found | None:
        """The recording for a key and the tier it came from: memory, the files, then the shared tier
        (a hit there is kept in memory, not written: ``put(..., shared=False)`` copies it to a file).
        Raises CorruptRecording for an unusable file."""
        stored = self._memory.get(key)
        if stored is not None:
            return Found(stored, Tier.MEMORY)
        stored = self._from_file(key)
        if stored is not None:
            return Found(stored, Tier.CASSETTES)
        if self.shared is None:
            return None
        hit = self.shared.get(key)
        if hit is None:
            return None
        stored = StoredRecording.of(hit.recording, self._pricer)
        self._memory.put(key, stored)
        return Found(stored, Tier.SHARED, hit.machine, hit.recording)

    def put(
        self, recording: Recording, machine: str | None = None, *, shared: bool = True
    ) -> StoredRecording:
        """Write the recording's file (and, with ``shared`` and a shared tier, its Redis entry, named
        after ``machine``). Raises OSError when the file cannot be written; Redis failing is not fatal:
        the file holds it."""
        path = self.path_for(recording.key)
        content = encode_recording(recording.to_json_data())
        write_atomic(path, content)
        stored = StoredRecording.of(recording, self._pricer, lazy=True)
        self._memory.put(recording.key, stored)
        self.index.added(recording.key, recording.request, path)
        if shared and self.shared is not None:
            self.shared.put(recording.key, content, machine or "unknown-machine")
        return stored

    def close(self, served: Mapping[str, Sequence[str]] | None = None) -> None:
        """At the session's end: the served forms read this session are kept for the next, and what
        each test (by its node id) was ``served``, for the next to preload."""
        if self.served_cache is not None:
            self.served_cache.save(served)

    def sweep_temp_files(self) -> list[Path]:
        return sweep_temp_files(self.directory)

    def keys(self) -> Iterator[str]:
        return recording_keys(self.directory)

    def recorded_by(self, key: str) -> str | None:
        """The test that made a recording, as its file says; None if it says none or cannot be read.
        Read, not served: a miss names the nearest recording's test without loading or pricing it (a
        recording without usage is priced by counting its tokens, whose encoding takes ~0.25 s to load)."""
        stored = self._memory.get(key, wait=False)
        if stored is not None:
            return stored.test
        try:
            meta = read_json(self.path_for(key), self.max_file_size).get("meta")
        except (FileNotFoundError, CorruptRecording):
            return None
        test = meta.get("test") if isinstance(meta, dict) else None
        return test if isinstance(test, str) else None

    def request_of(self, key: str) -> CanonicalRequest | None:
        """Only the request of a recording, verified; None if its file is missing or unusable (that
        fails the tests that need it, never someone else's miss)."""
        from .scan import Unusable, scan_request

        try:
            return scan_request(self.path_for(key)).request
        except Unusable:
            return None
