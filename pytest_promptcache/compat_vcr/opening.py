"""A test's cassette, opened the way pytest-recording opens it, without patching anything.

pytest-recording builds a ``VCR`` for each test (the test module's cassette directory, a path transformer
that adds the serializer's suffix, a persister that also loads the marker's extra cassettes), lets the
suite's ``pytest_recording_configure(config, vcr)`` register serializers, matchers or a persister, and
opens ``vcr.use_cassette(name, **vcr_config merged with the markers' arguments)``. The same happens here,
except that the cassette is loaded and never entered: vcr patches no client and writes no file; the
engine serves what the cassette plays.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any

from vcr import VCR
from vcr.cassette import Cassette
from vcr.persisters.filesystem import CassetteNotFoundError, FilesystemPersister
from vcr.serialize import deserialize

from ..limits import DEFAULT_MAX_RECORDING_SIZE
from ..safefile import UnsafeFile, read_regular_file
from . import RECORD_MODES

try:
    MAX_FILENAME_LEN = os.pathconf(".", "PC_NAME_MAX")
except (AttributeError, ValueError, OSError):  # pragma: no cover - not on Linux
    MAX_FILENAME_LEN = 255


class CassetteError(Exception):
    """A cassette vcr cannot read; the message names it and says what to do."""


def merge_config(config: Mapping[str, Any], marker_kwargs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``vcr_config`` updated by the markers' arguments, the closest marker last (pytest-recording's
    ``merge_kwargs``)."""
    merged = dict(config)
    for kwargs in reversed(marker_kwargs):
        merged.update(kwargs)
    return merged


@dataclass
class CombinedPersister(FilesystemPersister):  # type: ignore[misc]
    """Loads the cassette and the marker's extra cassettes, in that order (pytest-recording's); never
    more than ``max_size`` bytes of one, never a FIFO or a device (``safefile``)."""

    extra_paths: list[str] = field(default_factory=list)
    max_size: int = DEFAULT_MAX_RECORDING_SIZE

    def load_cassette(self, cassette_path: str, serializer: Any) -> tuple[list[Any], list[Any]]:
        requests: list[Any] = []
        responses: list[Any] = []
        for path in dict.fromkeys(chain([cassette_path], self.extra_paths)):
            file = Path(path)
            try:
                text = read_regular_file(file, max_size=self.max_size, within=file.parent).decode("utf-8")
            except FileNotFoundError:
                continue
            except (OSError, UnsafeFile, UnicodeDecodeError) as exc:
                raise CassetteError(f"the cassette {path} cannot be read: {exc}") from None
            found = deserialize(text, serializer)
            requests.extend(found[0])
            responses.extend(found[1])
        if not requests:
            raise CassetteNotFoundError("No cassettes found.")
        return requests, responses


@dataclass(frozen=True)
class Opened:
    """A test's cassette: the vcr ``Cassette`` (what the ``vcr`` fixture gives the test), the files it
    was read from, as paths relative to the rootdir (the test's scope names), and when they were last
    written (what a replay of them is priced at)."""

    cassette: Any
    paths: tuple[str, ...]
    written_at: datetime


def _relative(path: str, rootdir: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), rootdir)).as_posix()


def _written_at(paths: Iterable[str]) -> datetime:
    times = [os.stat(p).st_mtime for p in paths if os.path.isfile(p)]
    return datetime.fromtimestamp(max(times), UTC) if times else datetime.now(UTC)


def open_cassette(
    *,
    name: str,
    cassette_dir: str,
    extra: Sequence[str],
    config: Mapping[str, Any],
    record_mode: str,
    configure: Callable[[Any], None],
    rootdir: Path,
    read: bool = True,
    max_size: int = DEFAULT_MAX_RECORDING_SIZE,
) -> Opened:
    """The cassette pytest-recording would open for a test. ``configure`` is called with the ``VCR``
    (the suite's ``pytest_recording_configure``). ``read``: load its interactions (False: an empty
    cassette of the same configuration, for a suite that runs on recordings only)."""
    merged = dict(config)
    suffix = "." + str(merged.get("serializer", "yaml"))
    if len(name) + len(suffix) > MAX_FILENAME_LEN:
        digest = hashlib.md5(name.encode()).hexdigest()
        name = f"{name[: MAX_FILENAME_LEN - len(suffix) - len(digest) - 3]}...{digest}"
    mode = str(merged.get("record_mode", record_mode))
    # vcr knows no "rewrite"; pytest-recording hands it "new_episodes" (and removes the file first).
    vcr_mode = "new_episodes" if mode == "rewrite" else mode if mode in RECORD_MODES else "none"
    merged["record_mode"] = vcr_mode
    vcr = VCR(
        path_transformer=VCR.ensure_suffix(suffix), cassette_library_dir=cassette_dir, record_mode=vcr_mode
    )
    extra_paths = [p if os.path.isabs(p) else os.path.join(cassette_dir, p) for p in extra]
    vcr.register_persister(CombinedPersister(extra_paths, max_size))
    configure(vcr)
    try:
        arguments = vcr.get_merged_config(path=name, **merged)
    except (KeyError, ValueError, TypeError) as exc:
        raise CassetteError(f"vcr cannot use this test's configuration: {exc}") from None
    transform = arguments.pop("path_transformer")
    for unused in ("func_path_generator", "record_on_exception"):
        arguments.pop(unused, None)
    arguments["path"] = transform(arguments["path"]) if transform else arguments["path"]
    path = arguments["path"]
    try:
        cassette = Cassette.load(**arguments) if read else Cassette(**arguments)
    except CassetteError:
        raise
    except Exception as exc:
        raise CassetteError(
            f"vcr cannot read the cassette {path}: {exc}. If the suite reads its cassettes with a serializer "
            "of its own, register it in pytest_recording_configure(config, vcr)"
        ) from exc
    files = [path, *extra_paths]
    return Opened(
        cassette=cassette,
        paths=tuple(dict.fromkeys(_relative(p, rootdir) for p in files)),
        written_at=_written_at(files),
    )
