"""The recordings of a directory as the commands see them: read by the store, priced by the ledger,
found by a key or a prefix of one."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..limits import DEFAULT_MAX_RECORDING_SIZE
from ..models import Recording, TokenUsage
from ..prices import usd
from ..pricing import recording_price
from ..store.files import SUFFIX, CorruptRecording, read_recording, recording_keys
from ..usage import PriceBook, api_family, extract
from ..words import plural
from .project import CliError
from .render import display, iso, utc, when

MIN_PREFIX = 4


@dataclass(frozen=True)
class Unreadable:
    path: Path
    reason: str


@dataclass(frozen=True)
class RecordingInfo:
    """A readable recording with what the listings show about it."""

    path: Path
    recording: Recording
    size: int
    usage: TokenUsage | None
    model: str | None
    cost_usd: float | None

    @property
    def key(self) -> str:
        return self.recording.key

    @property
    def recorded_at(self) -> datetime:
        return utc(self.recording.meta.recorded_at)

    @property
    def priced(self) -> bool:
        return self.cost_usd is not None

    def tokens_cell(self) -> str:
        return "-" if self.usage is None else f"{self.usage.input_tokens:,}/{self.usage.output_tokens:,}"

    def cost_cell(self) -> str:
        if self.usage is None:
            return "-"
        return "unpriced" if self.cost_usd is None else usd(self.cost_usd)

    def as_json(self) -> dict[str, Any]:
        request, meta = self.recording.request, self.recording.meta
        return {
            "key": self.key,
            "file": str(self.path),
            "method": request.method,
            "host": request.host,
            "path": request.path,
            "url": meta.url,
            "model": self.model,
            "recorded_at": iso(self.recorded_at),
            "test": meta.test,
            "status": self.recording.response.status,
            "stream": self.recording.response.is_stream,
            "usage": None if self.usage is None else self.usage.model_dump(),
            "cost_usd": self.cost_usd,
            "size_bytes": self.size,
        }


def recording_paths(directory: Path) -> list[Path]:
    """Every file named like a recording, in key order: one that is not a regular file is listed as
    unreadable rather than silently skipped."""
    return [directory / f"{key}{SUFFIX}" for key in sorted(recording_keys(directory, regular_only=False))]


def model_of(recording: Recording) -> str | None:
    """The model a listing names: the one asked for, else the one the provider says answered."""
    request, response = recording.request, recording.response
    if request.model:
        return request.model
    return None if response.status >= 400 else extract(response, api_family(request.path))[1]


def load(path: Path, prices: PriceBook, max_size: int = DEFAULT_MAX_RECORDING_SIZE) -> RecordingInfo:
    recording = read_recording(path, max_size)
    price = recording_price(recording, prices)
    size = path.stat().st_size
    return RecordingInfo(path, recording, size, price.usage, model_of(recording), price.cost_usd)


def load_all(
    directory: Path, prices: PriceBook, max_size: int = DEFAULT_MAX_RECORDING_SIZE
) -> tuple[list[RecordingInfo], list[Unreadable]]:
    infos: list[RecordingInfo] = []
    errors: list[Unreadable] = []
    for path in recording_paths(directory):
        try:
            infos.append(load(path, prices, max_size))
        except CorruptRecording as exc:
            errors.append(Unreadable(path, exc.reason))
        except OSError as exc:
            errors.append(Unreadable(path, f"cannot be read ({exc.strerror or exc})"))
    infos.sort(key=lambda info: (info.recorded_at, info.key))
    return infos, errors


def unreadable_json(errors: Sequence[Unreadable]) -> list[dict[str, str]]:
    return [{"file": str(u.path), "reason": u.reason} for u in errors]


def print_unreadable(errors: Sequence[Unreadable]) -> None:
    if not errors:
        return
    sys.stdout.flush()
    print(f"\n{plural(len(errors), 'recording file')} could not be read:", file=sys.stderr)
    for error in errors:
        print(f"  {display(error.path)}: {error.reason}", file=sys.stderr)


def resolve_key(directory: Path, text: str) -> Path:
    """The recording a full key, a unique key prefix, or a recording's file name points at."""
    prefix = Path(text).name.removesuffix(SUFFIX).lower()
    if len(prefix) < MIN_PREFIX:
        raise CliError(f"key prefix {text!r} is too short: give at least {MIN_PREFIX} characters")
    keys = sorted(recording_keys(directory))
    if prefix in keys:
        return directory / f"{prefix}{SUFFIX}"
    matches = [key for key in keys if key.startswith(prefix)]
    if not matches:
        raise CliError(f"no recording with key {text!r} in {directory} (promptcache ls lists them)")
    if len(matches) > 1:
        lines = [f"key prefix {text!r} matches {len(matches)} recordings; give more characters:"]
        for key in matches[:20]:
            lines.append("  " + describe(directory / f"{key}{SUFFIX}"))
        if len(matches) > 20:
            lines.append(f"  ... and {len(matches) - 20} more")
        raise CliError("\n".join(lines))
    return directory / f"{matches[0]}{SUFFIX}"


def describe(path: Path) -> str:
    """One line naming a recording for a person choosing between several."""
    name = path.name.removesuffix(SUFFIX)
    try:
        recording = read_recording(path)
    except (CorruptRecording, OSError):
        return f"{name}  (unreadable)"
    request, meta = recording.request, recording.meta
    return f"{name}  {when(utc(meta.recorded_at))}  {request.endpoint}  {meta.test or '-'}"
