"""Upgrading recording files to the current schema (``promptcache migrate``).

Older files keep replaying without this; migrating makes them cheaper to replay and uniform to review.
The request, and therefore the key and the file name, never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .models import KNOWN_SCHEMA_VERSIONS, SCHEMA_VERSION, Recording
from .pricing import recording_price
from .store.files import SUFFIX, CorruptRecording, dumps_recording, read_json, read_recording, write_atomic
from .usage import PriceBook


def upgrade(recording: Recording, prices: PriceBook) -> Recording:
    """The same recording in the current schema. 1 → 2: usage and cost at recorded_at into meta. A
    recording of schema 3 (an AWS event stream) is current already."""
    if recording.schema_version >= SCHEMA_VERSION:
        return recording
    price = recording_price(recording, prices)
    update = {"usage": price.usage, "cost_usd": price.cost_usd, "cache_saved_usd": price.cache_saved_usd}
    return recording.model_copy(
        update={"schema_version": SCHEMA_VERSION, "meta": recording.meta.model_copy(update=update)}
    )


@dataclass
class Migration:
    path: Path
    old_version: object
    error: str | None = None


def migrate_directory(directory: Path, prices: PriceBook, *, dry_run: bool = False) -> list[Migration]:
    """Every recording below the current schema, upgraded (unless ``dry_run``); unusable files reported."""
    done: list[Migration] = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            version = read_json(path).get("schema_version")
        except (CorruptRecording, OSError):
            version = None
        if isinstance(version, int) and version >= SCHEMA_VERSION and version in KNOWN_SCHEMA_VERSIONS:
            continue
        try:
            recording = read_recording(path)
        except CorruptRecording as exc:
            done.append(Migration(path, version, exc.reason))
            continue
        if not dry_run:
            write_atomic(path, dumps_recording(upgrade(recording, prices).to_json_data()))
        done.append(Migration(path, version))
    return done
