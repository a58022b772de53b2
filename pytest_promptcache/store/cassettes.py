"""The cassette store: the memory tier in front of the recording files.

Lookup is a path computed from the key: nothing is scanned to serve a request. The miss path (the
nearest recording for a diff, or a similar one to serve) ranks recordings by the index kept in the
state directory and reads only a handful.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..limits import DEFAULT_MAX_RECORDING_SIZE
from ..lru import LRU
from ..models import CanonicalRequest, Recording
from ..streams import Replay, build_replay
from .files import (
    SUFFIX,
    CorruptRecording,
    dumps_recording,
    read_recording,
    recording_keys,
    sweep_temp_files,
    write_atomic,
)
from .index import RecordingIndex
from .scan import Unusable, scan_request

__all__ = ["CassetteStore", "CorruptRecording", "StoredRecording"]


@dataclass(frozen=True)
class StoredRecording:
    """A recording and its response, built once (when first served), ready to serve many times.

    Built on first use, not when a live call is saved: that happens while the client reads the stream's
    last chunk, and a response is seldom asked for again in the session that recorded it.
    """

    recording: Recording

    @functools.cached_property
    def replay(self) -> Replay:
        return build_replay(self.recording.response)


class CassetteStore:
    def __init__(
        self,
        directory: Path,
        memory_size: int = 4096,
        max_file_size: int = DEFAULT_MAX_RECORDING_SIZE,
        index_dir: Path | None = None,
    ) -> None:
        """``index_dir``: where the miss index is kept between sessions (in memory only without one)."""
        self.directory = directory
        self.max_file_size = max_file_size
        self._memory: LRU[str, StoredRecording] = LRU(memory_size)
        self.index = RecordingIndex(directory, index_dir)

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
        try:
            recording = read_recording(self.path_for(key), self.max_file_size)
        except FileNotFoundError:
            return None
        stored = StoredRecording(recording)
        self._memory.put(key, stored)
        return stored

    def put(self, recording: Recording) -> StoredRecording:
        write_atomic(self.path_for(recording.key), dumps_recording(recording.to_json_data()))
        stored = StoredRecording(recording)
        self._memory.put(recording.key, stored)
        self.index.added(recording.key, recording.request, self.path_for(recording.key))
        return stored

    def sweep_temp_files(self) -> list[Path]:
        return sweep_temp_files(self.directory)

    def keys(self) -> Iterator[str]:
        return recording_keys(self.directory)

    def request_of(self, key: str) -> CanonicalRequest | None:
        """Only the request of a recording, verified; None if its file is missing or unusable (that
        fails the tests that need it, never someone else's miss)."""
        try:
            return scan_request(self.path_for(key)).request
        except Unusable:
            return None
