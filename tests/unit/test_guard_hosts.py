"""The guard's recorded hosts, kept in the state directory between sessions and read again only when
the cassette directory changes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pytest_promptcache.guard import HOSTS_SCHEMA_VERSION, Guard, HostCache


def recording(directory: Path, name: str, host: str, url: str) -> None:
    document = {"request": {"host": host, "method": "POST", "path": "/v1/x"}, "meta": {"url": url}}
    (directory / f"{name}.json").write_text(json.dumps(document), encoding="utf-8")


def settle(directory: Path) -> None:
    """The directory as it is after a quiet spell: its mtime older than the racy window."""
    past = time.time() - 60
    os.utime(directory, (past, past))


def test_hosts_are_saved_once_the_directory_is_quiet_and_read_back_while_it_stays_so(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    cassettes.mkdir()
    recording(cassettes, "a" * 64, "testserver", "http://127.0.0.1:8123/v1/x")
    cache = HostCache(cassettes, state)

    # Just written: the listing may miss a change in the same clock tick, so nothing is saved.
    assert cache.hosts() == {("testserver", None), ("127.0.0.1", 8123)}
    assert not cache.path.exists()

    settle(cassettes)
    assert cache.hosts() == {("testserver", None), ("127.0.0.1", 8123)}
    saved = json.loads(cache.path.read_text())
    assert saved["schema_version"] == HOSTS_SCHEMA_VERSION
    assert saved["hosts"] == [["127.0.0.1", 8123], ["testserver", None]]

    # Read back, not re-listed: a file changed in place (the directory's mtime unchanged) is not seen,
    # which is why only what a key fixes (the request's host) and the URL are kept.
    mtime = cassettes.stat().st_mtime_ns
    recording(cassettes, "a" * 64, "elsewhere", "http://10.0.0.1:9/v1/x")
    os.utime(cassettes, ns=(mtime, mtime))
    assert cache.hosts() == {("testserver", None), ("127.0.0.1", 8123)}

    # A recording added changes the directory's mtime: listed again.
    recording(cassettes, "b" * 64, "api.example.com", "https://api.example.com/v1/x")
    settle(cassettes)
    assert ("api.example.com", None) in cache.hosts()
    assert ["api.example.com", None] in json.loads(cache.path.read_text())["hosts"]


def test_a_saved_file_that_does_not_hold_up_is_ignored(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    cassettes.mkdir()
    recording(cassettes, "a" * 64, "testserver:8080", "http://testserver:8080/v1/x")
    settle(cassettes)
    cache = HostCache(cassettes, state)
    mtime = cassettes.stat().st_mtime_ns
    good = {
        "schema_version": HOSTS_SCHEMA_VERSION,
        "directory": str(cassettes),
        "directory_mtime_ns": mtime,
        "hosts": [["planted", 1]],
    }
    bad_documents = [
        "not json",
        "[" * 100_000,
        json.dumps({**good, "schema_version": 99}),
        json.dumps({**good, "directory": "/elsewhere"}),
        json.dumps({**good, "directory_mtime_ns": mtime - 1}),
        json.dumps({**good, "hosts": [["planted", "1"]]}),
        json.dumps({**good, "hosts": [["planted", 70000]]}),
        json.dumps({**good, "hosts": "planted"}),
    ]
    cache.path.parent.mkdir(parents=True)
    for text in bad_documents:
        cache.path.write_text(text)
        assert cache.hosts() == {("testserver", 8080)}, text
    # The same document in the form it is written in is believed: that is what makes it a cache.
    cache.path.write_text(json.dumps(good))
    assert cache.hosts() == {("planted", 1)}
    # A FIFO in its place is never opened for reading.
    cache.path.unlink()
    os.mkfifo(cache.path)
    assert cache.hosts() == {("testserver", 8080)}


def test_the_guard_refuses_a_recorded_host_read_from_the_saved_list(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    cassettes.mkdir()
    recording(cassettes, "a" * 64, "127.0.0.1:8123", "http://127.0.0.1:8123/v1/x")
    settle(cassettes)
    Guard([], cassettes, state).refusal("127.0.0.1", 8123, may_wait=True)  # lists and saves
    assert HostCache(cassettes, state).path.exists()
    guard = Guard([], cassettes, state)
    reason = guard.refusal("127.0.0.1", 8123, may_wait=True)
    assert reason is not None
    assert "made against 127.0.0.1:8123" in reason
    assert guard.refusal("127.0.0.1", 8124, may_wait=True) is None
