"""The cassette store: the memory tier in front of the recording files.

Lookup is a path computed from the key: nothing is scanned to serve a request. Only the miss path
(finding the nearest recording to show a diff) reads every file's request, once per session.
"""

from __future__ import annotations

import threading
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
    read_request,
    recording_keys,
    sweep_temp_files,
    write_atomic,
)

__all__ = ["CassetteStore", "CorruptRecording", "StoredRecording"]


@dataclass(frozen=True)
class StoredRecording:
    """A recording and its response, built once, ready to serve many times."""

    recording: Recording
    replay: Replay


class CassetteStore:
    def __init__(
        self, directory: Path, memory_size: int = 4096, max_file_size: int = DEFAULT_MAX_RECORDING_SIZE
    ) -> None:
        self.directory = directory
        self.max_file_size = max_file_size
        self._memory: LRU[str, StoredRecording] = LRU(memory_size)
        self._lock = threading.Lock()
        self._requests: dict[str, CanonicalRequest] | None = None

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
        stored = StoredRecording(recording, build_replay(recording.response))
        self._memory.put(key, stored)
        return stored

    def put(self, recording: Recording) -> StoredRecording:
        write_atomic(self.path_for(recording.key), dumps_recording(recording.to_json_data()))
        stored = StoredRecording(recording, build_replay(recording.response))
        self._memory.put(recording.key, stored)
        with self._lock:
            if self._requests is not None:
                self._requests[recording.key] = recording.request
        return stored

    def sweep_temp_files(self) -> list[Path]:
        return sweep_temp_files(self.directory)

    def keys(self) -> Iterator[str]:
        return recording_keys(self.directory)

    def all_requests(self) -> dict[str, CanonicalRequest]:
        """Every readable recording's request; read once per session, only when a miss needs it.

        Only the request of each file is validated, not its response: this reads the whole directory.
        """
        with self._lock:
            if self._requests is not None:
                return dict(self._requests)
        found: dict[str, CanonicalRequest] = {}
        for key in self.keys():
            request = read_request(self.path_for(key), self.max_file_size)
            if request is not None:
                found[key] = request
        with self._lock:
            self._requests = found
        return dict(found)
