"""The miss index: a miss reads a handful of recordings, not all of them; the index follows the
directory's listing; unusable files are skipped and never break a miss; the index file is private,
parsed, never trusted blindly. Files read are counted with an audit hook, so the counts hold whatever
code reads them."""

from __future__ import annotations

import contextlib
import json
import os
import random
import stat
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.engine import Engine
from pytest_promptcache.keys import RawRequest, key_of
from pytest_promptcache.miss import NEAREST_READS, SIMILAR_READS
from pytest_promptcache.models import CanonicalRequest, RecordedResponse, Recording, RecordingMeta
from pytest_promptcache.session import CacheSession
from pytest_promptcache.settings import build_settings
from pytest_promptcache.store import scan
from pytest_promptcache.store.files import dumps_recording
from pytest_promptcache.store.packed import hamming_distances

HOST, PATH = "api.test", "/v1/chat/completions"
VOCABULARY = [f"w{i:03d}" for i in range(500)]

# -- counting what is read ------------------------------------------------------------------------------

_WATCHED: list[tuple[str, str]] = []
_WATCHING: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCHING and event in ("open", "os.scandir") and args and isinstance(args[0], str | Path):
        path = str(args[0])
        if path.startswith(_WATCHING[0]):
            _WATCHED.append((event, path))


_HOOKED: list[bool] = []


@contextlib.contextmanager
def reads(directory: Path) -> Iterator[list[tuple[str, str]]]:
    """Every file opened and directory listed under ``directory`` while the block runs."""
    if not _HOOKED:
        sys.addaudithook(_audit)  # cannot be removed: it records only while a block watches
        _HOOKED.append(True)
    seen: list[tuple[str, str]] = []
    _WATCHED.clear()
    _WATCHING.append(str(directory))
    try:
        yield seen
    finally:
        _WATCHING.clear()
        seen.extend(_WATCHED)
        _WATCHED.clear()


def opened(events: list[tuple[str, str]]) -> list[str]:
    """The files opened that exist (the engine's lookup of the requested key finds no file)."""
    return [Path(path).name for event, path in events if event == "open" and Path(path).exists()]


def listings(events: list[tuple[str, str]]) -> int:
    return sum(event == "os.scandir" for event, _ in events)


# -- a store and a session -------------------------------------------------------------------------------


def prompt(index: int) -> str:
    rng = random.Random(index)
    return f"ticket {index}: " + " ".join(rng.choice(VOCABULARY) for _ in range(30))


def body(text: str, model: str = "gpt-4.1-mini") -> dict[str, Any]:
    return {"messages": [{"content": text, "role": "user"}], "model": model}


def recording(text: str, model: str = "gpt-4.1-mini") -> Recording:
    request = CanonicalRequest(method="POST", host=HOST, path=PATH, body=body(text, model))
    return Recording(
        key=key_of(request),
        request=request,
        response=RecordedResponse(status=200, headers={"content-type": "application/json"}, body={"ok": 1}),
        meta=RecordingMeta(
            recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
            test=f"test_x.py::test_{key_of(request)[:6]}",
            url=f"https://{HOST}{PATH}",
            latency_ms=1.0,
            plugin_version="test",
        ),
    )


def write(directory: Path, rec: Recording) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{rec.key}.json"
    path.write_text(dumps_recording(rec.to_json_data()))
    return path


def settle(directory: Path) -> None:
    """As a committed directory is: last changed well before the session lists it."""
    past = time.time() - 60
    os.utime(directory, (past, past))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    cassettes = tmp_path / "cassettes"
    for i in range(300):
        write(cassettes, recording(prompt(i)))
    settle(cassettes)
    return cassettes


def session(cassettes: Path, **ini: str) -> tuple[CacheSession, Engine]:
    settings = build_settings(
        rootdir=cassettes.parent,
        cli_mode="replay",
        cli_dir=str(cassettes),
        env={},
        ini={"promptcache_state_dir": str(cassettes.parent / "state"), **ini},
    )
    cache = CacheSession(settings, env={})
    return cache, cache.engine()


def miss(cache: CacheSession, engine: Engine, text: str, model: str = "gpt-4.1-mini") -> str:
    raw = RawRequest("POST", "https", HOST, None, PATH, (), (), json.dumps(body(text, model)).encode())
    engine.start(raw)
    problems = cache.context.take_problems()
    assert len(problems) == 1, problems
    return problems[0]


def nearest_of(message: str) -> str:
    line = next(line for line in message.splitlines() if line.startswith("  nearest:"))
    return line.split()[1].removesuffix(".json")


def edited(index: int) -> str:
    return prompt(index).replace(prompt(index).split()[5], "CHANGED", 1)


# -- reading a handful ----------------------------------------------------------------------------------


def test_a_miss_reads_a_handful_of_recordings_and_later_sessions_list_nothing(store: Path) -> None:
    cache, engine = session(store)
    with reads(store) as first:
        message = miss(cache, engine, edited(7))
    assert nearest_of(message) == recording(prompt(7)).key
    # The first session ever builds the index: every recording once.
    assert len(opened(first)) >= 300

    cache, engine = session(store)
    with reads(store) as later:
        message = miss(cache, engine, edited(123))
    assert nearest_of(message) == recording(prompt(123)).key
    assert "CHANGED" in message
    # A handful read (and the nearest once more, for the test that recorded it); nothing listed.
    assert len(opened(later)) <= NEAREST_READS + 1, opened(later)
    assert listings(later) == 0


def test_a_miss_names_the_nearest_recordings_test_without_loading_it_to_serve(store: Path) -> None:
    # Loading it to serve prices it, and a recording without usage is priced by counting tokens: the
    # encoding's first load (~0.25 s) made a later session's first miss take ~270 ms instead of ~7.
    miss(*session(store), edited(3))  # a first session builds the index
    cache, engine = session(store)
    message = miss(cache, engine, edited(42))
    near = recording(prompt(42))
    assert f"recorded by {near.meta.test})" in message
    assert engine.store.in_memory(near.key) is None


def test_similar_matching_reads_a_handful_too(store: Path) -> None:
    list(session(store)[1].store.index.ranked(0, lambda g: True))  # a previous session built the index
    cache, engine = session(store, promptcache_match="similar:0.9")
    raw = RawRequest("POST", "https", HOST, None, PATH, (), (), json.dumps(body(edited(42))).encode())
    with reads(store) as seen:
        replay = engine.start(raw)
    assert cache.context.take_problems() == []
    assert getattr(replay, "status", None) == 200
    (event,) = cache.context.calls
    assert event.served_key == recording(prompt(42)).key
    assert len(opened(seen)) <= SIMILAR_READS + 1


def test_recordings_saved_in_the_session_join_the_loaded_index(store: Path) -> None:
    cache, engine = session(store)
    miss(cache, engine, edited(1))  # loads the index
    fresh = recording("an entirely new prompt about refunds for premium customers")
    engine.store.put(fresh)
    ranked = [c.key for c in engine.store.index.ranked(0, lambda g: True)]
    assert fresh.key in ranked
    assert len(ranked) == 301


# -- following the listing -------------------------------------------------------------------------------


def test_the_index_follows_files_added_removed_and_replaced(store: Path) -> None:
    list(session(store)[1].store.index.ranked(0, lambda g: True))

    added = recording("a prompt recorded after the index was built, about the weather in Oslo")
    write(store, added)
    removed = recording(prompt(9))
    (store / f"{removed.key}.json").unlink()
    replaced = recording(prompt(10))
    path = store / f"{replaced.key}.json"
    tmp = store / "tmp"
    tmp.write_text(path.read_text())
    os.replace(tmp, path)  # a new inode, as a rewrite makes
    settle(store)

    cache, engine = session(store)
    with reads(store) as seen:
        message = miss(
            cache, engine, "a prompt recorded after the index was built, about the weather in Bergen"
        )
    assert nearest_of(message) == added.key
    # The listing is read again; of the files, only the new and the replaced one are read to index
    # them, then a handful of candidates.
    assert listings(seen) == 1
    assert {f"{added.key}.json", f"{replaced.key}.json"} <= set(opened(seen))
    assert f"{removed.key}.json" not in opened(seen)
    assert len(opened(seen)) <= 2 + NEAREST_READS + 1
    keys = {c.key for c in engine.store.index.ranked(0, lambda g: True)}
    assert added.key in keys
    assert removed.key not in keys
    assert len(keys) == 300


def test_a_file_fixed_in_place_is_read_again(store: Path) -> None:
    broken = store / f"{'b' * 64}.json"
    broken.write_text("{ not json")
    list(session(store)[1].store.index.ranked(0, lambda g: True))

    fixed = recording("the broken file, fixed by hand")
    with broken.open("w") as fh:  # same inode, new content
        fh.write(dumps_recording({**fixed.to_json_data(), "key": "b" * 64}))
    settle(store)
    _, engine = session(store)
    with reads(store) as seen:
        list(engine.store.index.ranked(0, lambda g: True))
    assert opened(seen) == [broken.name]


# -- unusable files ----------------------------------------------------------------------------------------


def test_unusable_files_are_skipped_and_never_break_anyone_elses_miss(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bad(name: str) -> Path:
        return store / f"{name * 64}.json"

    # Deeper than any JSON parser recurses: a large file (parsed member by member), a small one (whole).
    bad("a").write_text('{"request": ' + "[" * 40_000 + "]" * 40_000 + "}")
    bad("2").write_text("[" * 30_000 + "]" * 30_000)
    nested: Any = "x"
    for _ in range(200):
        nested = {"content": nested}
    deep = recording("deep")
    data = deep.to_json_data()
    data["key"] = "c" * 64
    data["request"]["body"]["messages"] = [nested]
    bad("c").write_text(json.dumps(data))  # valid JSON, deeper than a request may nest
    bad("d").write_text("not json at all")
    bad("e").write_text(json.dumps({"schema_version": 99, "key": "e" * 64}))
    bad("f").write_text(json.dumps({**data, "key": "f" * 64, "request": {"method": 1}}))
    monkeypatch.setattr(scan, "MAX_FILE_BYTES", 150_000)
    bad("0").write_text(dumps_recording({**recording("x" * 200_000).to_json_data(), "key": "0" * 64}))
    os.mkfifo(bad("1"))  # a FIFO named like a recording: opening it to read would block
    settle(store)

    for _ in range(2):  # building the index, then from it
        cache, engine = session(store)
        message = miss(cache, engine, edited(5))
        assert nearest_of(message) == recording(prompt(5)).key
    skipped = {s.name[0]: s.reason for s in engine.store.index._skipped.values()}
    assert set(skipped) == set("acdef02"), skipped
    assert "larger than" in skipped["0"]
    assert "nests deeper" in skipped["c"]
    assert "nested too deeply" in skipped["a"]
    assert "nested too deeply" in skipped["2"]


def test_deeply_nested_requests_of_a_valid_file_never_reach_pydantic(tmp_path: Path) -> None:
    nested: Any = "x"
    for _ in range(scan.MAX_DEPTH + 5):
        nested = [nested]
    rec = recording("deep")
    data = rec.to_json_data()
    data["request"]["body"]["messages"] = nested
    path = tmp_path / f"{rec.key}.json"
    path.write_text(json.dumps(data))
    with pytest.raises(scan.Unusable, match="nests deeper"):
        scan.scan_request(path)


# -- the index file ---------------------------------------------------------------------------------------


def index_files(cassettes: Path) -> list[Path]:
    return sorted((cassettes.parent / "state" / "index").glob("*.idx"))


def test_the_index_lives_in_the_private_state_directory_as_json_and_columns(store: Path) -> None:
    cache, engine = session(store)
    miss(cache, engine, edited(3))
    assert {p.suffix for p in store.iterdir()} == {".json"}  # nothing added to the cassettes
    (index,) = index_files(store)
    assert stat.S_IMODE(index.parent.stat().st_mode) == 0o700
    header, _, payload = index.read_bytes().partition(b"\n")
    assert json.loads(header)["format"] == 1
    assert len(payload) == 300 * (32 + 4 + 8 + 8)


def test_a_damaged_index_is_rebuilt(store: Path) -> None:
    cache, engine = session(store)
    miss(cache, engine, edited(3))
    (index,) = index_files(store)
    index.write_bytes(b'{"format": 1, "directory": 7}\n\x00\x01')
    cache, engine = session(store)
    with reads(store) as seen:
        assert nearest_of(miss(cache, engine, edited(4))) == recording(prompt(4)).key
    assert len(opened(seen)) >= 300  # rebuilt from the files
    assert json.loads(index.read_bytes().partition(b"\n")[0])["directory"] == str(store)


def test_an_index_others_may_write_to_is_neither_read_nor_written(store: Path) -> None:
    cache, engine = session(store)
    miss(cache, engine, edited(3))
    (index,) = index_files(store)
    planted = index.read_bytes()
    index.parent.chmod(0o777)
    for i in range(300, 310):
        write(store, recording(prompt(i)))
    settle(store)
    cache, engine = session(store)
    with reads(store) as seen:
        assert nearest_of(miss(cache, engine, edited(305))) == recording(prompt(305)).key
    assert len(opened(seen)) >= 310  # built in memory, from the files, not from that index
    assert index.read_bytes() == planted


# -- the signature distances --------------------------------------------------------------------------------


def test_hamming_distances_match_a_plain_count() -> None:
    rng = random.Random(1)
    signatures = [rng.getrandbits(64) for _ in range(500)] + [0, (1 << 64) - 1]
    query = rng.getrandbits(64)
    packed = b"".join(s.to_bytes(8, "little") for s in signatures)
    assert list(hamming_distances(packed, query)) == [bin(s ^ query).count("1") for s in signatures]
