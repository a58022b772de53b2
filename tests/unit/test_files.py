"""Recording files: validated reads (every reason a file is unusable), atomic writes, sweeping the temp
files of killed writers, and listing keys."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.keys import key_of
from pytest_promptcache.models import CanonicalRequest, RecordedResponse, Recording, RecordingMeta
from pytest_promptcache.store.files import (
    WRITE_PIECE,
    CorruptRecording,
    dumps_recording,
    read_recording,
    recording_keys,
    sweep_temp_files,
    write_atomic,
    write_pieces,
)
from pytest_promptcache.store.scan import Unusable, scan_request

REQUEST = CanonicalRequest(
    method="POST", host="api.openai.com", path="/v1/chat/completions", body={"model": "m", "n": 1}
)
KEY = key_of(REQUEST)


def recording_data(**changes: Any) -> dict[str, Any]:
    recording = Recording(
        key=KEY,
        request=REQUEST,
        response=RecordedResponse(
            status=200, headers={"content-type": "application/json"}, body={"ok": True}
        ),
        meta=RecordingMeta(
            recorded_at=datetime(2026, 1, 15, tzinfo=UTC), url="https://x", latency_ms=1.0, plugin_version="0"
        ),
    )
    return {**recording.to_json_data(), **changes}


def write(directory: Path, data: Any, name: str = KEY) -> Path:
    path = directory / f"{name}.json"
    path.write_text(data if isinstance(data, str) else dumps_recording(data), encoding="utf-8")
    return path


def read_request(path: Path) -> CanonicalRequest | None:
    """The miss path's read of only a file's request: None for a file it cannot use."""
    try:
        return scan_request(path).request
    except Unusable:
        return None


def unusable(path: Path) -> str:
    with pytest.raises(CorruptRecording) as err:
        read_recording(path)
    assert err.value.path == path
    assert str(err.value).startswith(f"promptcache: recording {path} is unusable: {err.value.reason}.\n")
    return err.value.reason


# -- reading ----------------------------------------------------------------------------------------------


def test_a_written_recording_reads_back(tmp_path: Path) -> None:
    path = write(tmp_path, recording_data())
    assert read_recording(path).to_json_data() == recording_data()
    assert read_request(path) == REQUEST


def test_the_file_format_sorts_the_request_and_keeps_stream_events_one_a_line() -> None:
    data = recording_data(
        request={"path": "/p", "method": "POST", "host": "h", "body": {"b": 1, "a": 2}},
        response={"status": 200, "headers": {"z": "1", "a": "2"}, "events": [{"data": {"y": 1, "x": 2}}]},
    )
    text = dumps_recording(data)
    assert text.index('"body"') < text.index('"host"') < text.index('"method"') < text.index('"path"')
    assert text.index('"a": 2') < text.index('"b": 1')
    assert text.index('"z"') < text.index('"a": "2"')  # the response keeps the provider's order
    assert '    {"data":{"y":1,"x":2}}\n' in text
    assert json.loads(text) == data


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / f"{KEY}.json"
    path.write_bytes(b'{"schema_version": 2, "x": "\xff"}')
    assert unusable(path).startswith("not UTF-8 text (")


def test_not_json_and_not_an_object(tmp_path: Path) -> None:
    assert unusable(write(tmp_path, '{"schema_version": 2,')).startswith("not valid JSON (")
    assert unusable(write(tmp_path, "[1, 2]")) == "not a JSON object"


@pytest.mark.parametrize("version", [None, 0, 5, "2"])
def test_unknown_schema_versions(tmp_path: Path, version: Any) -> None:
    assert unusable(write(tmp_path, recording_data(schema_version=version))) == (
        f"schema_version {version!r} is not one this version of pytest-promptcache knows (1, 2, 3, 4); "
        "upgrade pytest-promptcache"
    )


def test_a_file_that_does_not_match_the_schema(tmp_path: Path) -> None:
    data = recording_data()
    del data["response"]["status"]
    assert unusable(write(tmp_path, data)) == (
        "does not match the recording schema at response.status: Field required"
    )


def test_a_file_under_another_keys_name(tmp_path: Path) -> None:
    other = "0" * 64
    assert unusable(write(tmp_path, recording_data(), name=other)) == (
        f"it holds key {KEY}, not the key in its file name"
    )


def test_a_request_edited_after_recording(tmp_path: Path) -> None:
    data = recording_data()
    data["request"]["body"]["n"] = 2
    edited = key_of(CanonicalRequest.model_validate(data["request"]))
    assert unusable(write(tmp_path, data)) == (
        f"its request was edited after recording (it now hashes to {edited[:12]}, not to its key)"
    )


def test_a_missing_file_is_not_a_corrupt_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_recording(tmp_path / f"{KEY}.json")


def test_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    directory = tmp_path / f"{KEY}.json"
    directory.mkdir()  # a directory named like a recording is refused before any read
    assert unusable(directory) == "it is a directory, not a regular file"


@pytest.mark.parametrize(
    "content",
    [
        "{",
        "[]",
        '{"schema_version": 9}',
        json.dumps({"schema_version": 2, "key": "other"}),
        '{"schema_version": 2}',
    ],
)
def test_read_request_of_an_unusable_file_is_none(tmp_path: Path, content: str) -> None:
    assert read_request(write(tmp_path, content)) is None
    assert read_request(tmp_path / "absent.json") is None


def test_read_request_of_a_bad_request_is_none(tmp_path: Path) -> None:
    assert read_request(write(tmp_path, recording_data(request={"method": "POST"}))) is None


# -- writing ----------------------------------------------------------------------------------------------


def test_write_atomic_creates_the_directory_and_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "k.json"
    write_atomic(path, "first")
    write_atomic(path, "second")
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["k.json"]


def test_a_written_file_has_the_mode_open_would_give_it_not_mkstemps(tmp_path: Path) -> None:
    # Another user reading a bind-mounted cassette directory, a CI step uploading a report: 0600 broke both.
    probe = tmp_path / "probe"
    probe.write_text("x")
    path = tmp_path / "k.json"
    write_atomic(path, "{}")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(probe.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) & stat.S_IRUSR


def test_a_large_recording_is_written_whole_in_bounded_pieces(tmp_path: Path) -> None:
    # One multi-megabyte write() is throttled by Linux's dirty-page accounting; the bytes must still
    # arrive whole, a multi-byte character split across two pieces included.
    text = "é" * (WRITE_PIECE + 7) + "end"
    path = tmp_path / "big.json"
    write_atomic(path, text)
    assert path.read_text(encoding="utf-8") == text

    sizes: list[int] = []

    class Sizes(io.BytesIO):
        def write(self, data: Any) -> int:
            sizes.append(len(data))
            return super().write(data)

    sink = Sizes()
    data = text.encode()
    write_pieces(sink, data)
    assert sink.getvalue() == data
    assert max(sizes) <= WRITE_PIECE
    assert len(sizes) == 3


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write_atomic(path, "old")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "\ud800 a lone surrogate cannot be encoded")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json"]


# -- sweeping ---------------------------------------------------------------------------------------------


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_sweep_removes_only_temp_files_of_dead_writers(tmp_path: Path) -> None:
    dead = tmp_path / f".{KEY}.json.{dead_pid()}.x1y2.tmp"
    mine = tmp_path / f".{KEY}.json.{os.getpid()}.a1b2.tmp"
    init = tmp_path / f".{KEY}.json.1.c3d4.tmp"  # pid 1 is alive, whether or not we may signal it
    unnamed = tmp_path / ".odd.tmp"
    not_a_pid = tmp_path / f".{KEY}.json.nopid.e5f6.tmp"
    recording = write(tmp_path, recording_data())
    for path in (dead, mine, init, unnamed, not_a_pid):
        path.write_text("partial")
    assert sweep_temp_files(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (mine, init, unnamed, not_a_pid, recording)
    )
    assert sweep_temp_files(tmp_path / "absent") == []


# -- listing ----------------------------------------------------------------------------------------------


def test_recording_keys_are_regular_visible_json_files(tmp_path: Path) -> None:
    write(tmp_path, recording_data())
    (tmp_path / ".hidden.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "sub.json").mkdir()
    (tmp_path / f".{KEY}.json.1.ab.tmp").write_text("")
    assert list(recording_keys(tmp_path)) == [KEY]
    assert list(recording_keys(tmp_path / "absent")) == []
