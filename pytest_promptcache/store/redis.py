"""The shared tier: recordings in Redis, behind the cassette directory and in front of the live API.

A value is the same JSON document as the recording's file, under ``<prefix>:rec:<key>``, and the name
of the machine that recorded it under ``<prefix>:by:<key>``. What Redis hands back is untrusted, as a
file is: read no further than the recording size limit (``GETRANGE``, so an oversized value is never
transferred whole), held to the file rules (UTF-8, JSON within the nesting limit, a known schema, a
request that hashes to its key), and nothing in it is ever unpickled or executed. An entry that fails
is treated as absent, with a notice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..models import Recording
from ..redislink import RedisLink, SharedDown
from .files import BadRecording, parse_recording

# A machine name is at most 128 characters (sharedconf); more is not one of ours.
MAX_MACHINE = 128
_PRINTABLE = re.compile(r"[A-Za-z0-9._:/@+-]{1,128}")
# Entries reported as unusable, at most: one is the story, a hundred are noise.
MAX_BAD_REPORTED = 5


@dataclass(frozen=True)
class SharedHit:
    recording: Recording
    # Who recorded it, if the entry names a plausible machine.
    machine: str | None


class SharedRecordings:
    def __init__(self, link: RedisLink, max_size: int) -> None:
        self.link = link
        self.max_size = max_size
        self._bad_reported = 0

    def _keys(self, key: str) -> tuple[str, str]:
        return self.link.key("rec", key), self.link.key("by", key)

    def get(self, key: str) -> SharedHit | None:
        """The recording for ``key`` in Redis, validated; None if absent, unusable, or Redis is down."""
        if not self.link.up:
            return None
        rec, by = self._keys(key)

        def read(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            # One byte past the limit tells an oversized value from one exactly at it.
            pipe.getrange(rec, 0, self.max_size)
            pipe.getrange(by, 0, MAX_MACHINE)
            return list(pipe.execute(raise_on_error=False))

        try:
            raw, machine = self.link.call("reading a recording", read)
        except SharedDown:
            return None
        if isinstance(raw, Exception):  # WRONGTYPE: something not ours lives at our key
            self._bad(key, f"Redis refused to read it ({raw})")
            return None
        if not raw:
            return None
        if len(raw) > self.max_size:
            self._bad(key, f"it is larger than promptcache_max_recording_size ({self.max_size} bytes)")
            return None
        try:
            recording = parse_recording(bytes(raw), key, named_by="its Redis key")
        except BadRecording as exc:
            self._bad(key, exc.reason)
            return None
        return SharedHit(recording, _machine(machine))

    def put(self, key: str, content: bytes, machine: str) -> bool:
        """Store a recording's file content; False when Redis is down (the file is written regardless)."""
        if not self.link.up:
            return False
        rec, by = self._keys(key)
        ttl = self.link.config.ttl
        px = int(ttl.total_seconds() * 1000) if ttl is not None else None

        def write(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.set(rec, content, px=px)
            pipe.set(by, machine.encode("utf-8"), px=px)
            pipe.execute()

        try:
            self.link.call("storing a recording", write)
        except SharedDown:
            return False
        return True

    def _bad(self, key: str, reason: str) -> None:
        if self._bad_reported >= MAX_BAD_REPORTED:
            return
        self._bad_reported += 1
        self.link.notice(
            f"promptcache: ignored the shared tier's entry {self.link.key('rec', key)}: {reason}; "
            "a record run replaces it"
        )


def _machine(raw: object) -> str | None:
    if not isinstance(raw, bytes) or not raw:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if _PRINTABLE.fullmatch(text) else None
