"""The bounds on what a run reads and how long it waits: their defaults, and their ini values parsed.

Light (the standard library only): settings are built at every start-up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Far above any real recording (a long stream is a few hundred KiB), far below what hurts a machine.
DEFAULT_MAX_RECORDING_SIZE = 64 * 1024 * 1024
# A waiter gives up on an identical call in flight after this long: a slow generation finishes well
# within it, a stuck one is reported instead of blocking the run.
DEFAULT_FLIGHT_TIMEOUT = 300.0
# Record pacing never holds one call longer than this; a longer queue fails the call instead.
DEFAULT_RECORD_MAX_WAIT = 300.0


class LimitError(ValueError):
    """A bad limit; the message names the option and says what would be accepted."""


_SIZE = re.compile(r"^\s*(\d+)\s*(?:([kmg])(?:i?b)?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(value: str, source: str) -> int:
    """Bytes, or a number with a binary unit: 512KiB, 64MiB, 1GiB (K, M, G and KB, MB, GB mean the same)."""
    match = _SIZE.match(value)
    size = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()] if match else 0
    if size < 1024:  # a bare "64" meant as MiB would refuse every recording
        raise LimitError(f"{source}: {value!r} is not a size of 1KiB or more; write e.g. 64MiB")
    return size


def parse_seconds(value: str, source: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise LimitError(f"{source}: {value!r} is not a number of seconds greater than 0 (e.g. 300)")
    return seconds


@dataclass(frozen=True)
class Limits:
    """How much a run reads from one file and how long one call may wait."""

    max_recording_size: int = DEFAULT_MAX_RECORDING_SIZE
    flight_timeout: float = DEFAULT_FLIGHT_TIMEOUT
    record_max_wait: float = DEFAULT_RECORD_MAX_WAIT

    @classmethod
    def from_ini(cls, ini: Mapping[str, Any]) -> Limits:
        """Raises LimitError for a bad value."""

        def raw(name: str) -> str:
            value = ini.get(name)  # typed options give numbers: 0 is a value, not "unset"
            return "" if value is None else str(value).strip()

        size = raw("promptcache_max_recording_size")
        flight = raw("promptcache_flight_timeout")
        wait = raw("promptcache_record_max_wait")
        return cls(
            max_recording_size=parse_size(size, "promptcache_max_recording_size")
            if size
            else DEFAULT_MAX_RECORDING_SIZE,
            flight_timeout=parse_seconds(flight, "promptcache_flight_timeout")
            if flight
            else DEFAULT_FLIGHT_TIMEOUT,
            record_max_wait=parse_seconds(wait, "promptcache_record_max_wait")
            if wait
            else DEFAULT_RECORD_MAX_WAIT,
        )
