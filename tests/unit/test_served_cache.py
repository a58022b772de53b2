"""The served-form cache (``store.served_cache``): a recording served from it in a later session is
served exactly as its file serves it, and only while the file is the one it was taken from; the key
memory it holds recalls only keys that depend on nothing but the request and the configuration."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.keys import Keyer, RawRequest, key_of
from pytest_promptcache.ledger import Ledger
from pytest_promptcache.models import Measured, PriceFacts, RecordedResponse, Recording
from pytest_promptcache.prices import parse_prices
from pytest_promptcache.rules import KeyRules
from pytest_promptcache.scrub import Scrubber
from pytest_promptcache.settings import Settings, build_settings
from pytest_promptcache.store.cassettes import CassetteStore
from pytest_promptcache.store.files import CorruptRecording, dumps_recording, read_recording
from pytest_promptcache.store.served import Pricer, StoredRecording, carried_price, load
from pytest_promptcache.store.served_cache import ServedCache, pack_path
from pytest_promptcache.usage import PriceBook

from .test_served import KEY, META, REQUEST, RESPONSES, recording


def served(stored: StoredRecording | None) -> Any:
    assert stored is not None
    return stored.replay, stored.price, stored.recorded_at, stored.test


def store(
    cassettes: Path, state: Path, *, racy_ns: int = 0, max_size: int = 10**7, memory_size: int = 4096
) -> CassetteStore:
    """A session's store, keeping files however fresh they are (``racy_ns``) unless told otherwise."""
    kept = CassetteStore(cassettes, memory_size, max_file_size=max_size, state_root=state)
    assert kept.served_cache is not None
    kept.served_cache = ServedCache(kept.served_cache.path, cassettes, racy_ns=racy_ns)
    return kept


def hits(kept: CassetteStore) -> int:
    assert kept.served_cache is not None
    return kept.served_cache.hits


def write(cassettes: Path, kind: str = "json") -> Path:
    cassettes.mkdir(exist_ok=True)
    path = cassettes / f"{KEY}.json"
    path.write_text(dumps_recording(recording(RESPONSES[kind]).to_json_data()), encoding="utf-8")
    return path


def session(cassettes: Path, state: Path, **kwargs: Any) -> tuple[Any, int]:
    """One session serving KEY, closed as a session ends: what it served, and how much from the cache."""
    kept = store(cassettes, state, **kwargs)
    try:
        return served(kept.get(KEY)), hits(kept)
    finally:
        kept.close()


@pytest.mark.parametrize("kind", sorted(RESPONSES))
def test_a_later_session_serves_what_the_file_serves_without_reading_it(tmp_path: Path, kind: str) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    path = write(cassettes, kind)
    expected = served(load(path, carried_price))
    assert session(cassettes, state) == (expected, 0)
    assert pack_path(state, cassettes).is_file()
    assert session(cassettes, state) == (expected, 1)
    assert session(cassettes, state) == (expected, 1)  # nothing new: the file stands as it was


def test_a_file_changed_in_place_is_read_again_even_with_its_old_mtime(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    path = write(cassettes)
    session(cassettes, state)
    before = path.stat()
    text = path.read_text(encoding="utf-8")
    edited = text.replace('"a": [', '"b": [')  # the same size: only the change time tells
    assert len(edited) == len(text)
    assert edited != text
    with open(path, "r+", encoding="utf-8") as fh:  # the same inode
        fh.write(edited)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_ino == before.st_ino
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    (replay, *_), from_cache = session(cassettes, state)
    assert from_cache == 0
    assert json.loads(b"".join(replay.chunks)) == {"b": [1, 2.5]}
    # And the new content is what the next session keeps.
    (replay, *_), from_cache = session(cassettes, state)
    assert from_cache == 1
    assert json.loads(b"".join(replay.chunks)) == {"b": [1, 2.5]}


def test_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    write(cassettes, "json")
    session(cassettes, state)
    write(cassettes, "text")  # write_text truncates the same inode: new times and size
    other = served(load(cassettes / f"{KEY}.json", carried_price))
    assert session(cassettes, state) == (other, 0)
    replacement = tmp_path / "elsewhere.json"
    replacement.write_bytes((cassettes / f"{KEY}.json").read_bytes().replace(b'"oops"', b'"OOPS"'))
    os.replace(replacement, cassettes / f"{KEY}.json")  # a new inode, other bytes of the same size
    changed = served(load(cassettes / f"{KEY}.json", carried_price))
    assert changed != other
    assert session(cassettes, state) == (changed, 0)


def test_a_new_inode_with_the_same_bytes_is_served_from_the_cache_once_read(tmp_path: Path) -> None:
    """A fresh checkout (CI) or a copy: other inode and times, the same bytes. Read and hashed, not
    parsed and checked; the next session finds it by its status alone."""
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    path = write(cassettes)
    expected = served(load(path, carried_price))
    session(cassettes, state)
    checkout = tmp_path / "checkout.json"
    checkout.write_bytes(path.read_bytes())
    os.replace(checkout, path)
    kept = store(cassettes, state)
    assert served(kept.get(KEY)) == expected
    assert kept.served_cache is not None
    assert (kept.served_cache.hits, kept.served_cache.by_content) == (1, 1)
    kept.close()
    kept = store(cassettes, state)
    assert served(kept.get(KEY)) == expected
    assert kept.served_cache is not None
    assert (kept.served_cache.hits, kept.served_cache.by_content) == (1, 0)
    kept.close()


def test_a_deleted_file_is_not_served(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    path = write(cassettes)
    session(cassettes, state)
    path.unlink()
    kept = store(cassettes, state)
    assert kept.get(KEY) is None
    kept.close()
    with pytest.raises(FileNotFoundError):
        ServedCache(pack_path(state, cassettes), cassettes).get(KEY, str(path), 10**7)


def test_the_size_limit_holds_for_kept_recordings(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    path = write(cassettes)
    session(cassettes, state)
    with pytest.raises(CorruptRecording, match="over the 100 B limit"):
        store(cassettes, state, max_size=100).get(KEY)
    assert path.stat().st_size > 100


def test_a_symbolic_link_is_never_kept(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    path = write(cassettes)
    target = cassettes / "target.txt"
    os.replace(path, target)
    path.symlink_to(target.name)
    expected = served(load(path, carried_price))
    assert session(cassettes, state) == (expected, 0)
    assert session(cassettes, state) == (expected, 0)
    # Its target changed: served as it is now.
    data = json.loads(target.read_text(encoding="utf-8"))
    data["response"]["body"] = {"a": [3]}
    target.write_text(dumps_recording(data), encoding="utf-8")
    (replay, *_), _ = session(cassettes, state)
    assert json.loads(b"".join(replay.chunks)) == {"a": [3]}


def test_a_fresh_file_is_kept_only_once_its_times_are_old_enough(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    write(cassettes)
    session(cassettes, state, racy_ns=10**12)  # written "just now"
    assert not pack_path(state, cassettes).exists()
    assert session(cassettes, state, racy_ns=10**12)[1] == 0


def test_a_corrupt_recording_fails_every_session(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    write(cassettes)
    session(cassettes, state)
    (cassettes / f"{KEY}.json").write_text('{"schema_version": 2', encoding="utf-8")
    for _ in range(2):
        kept = store(cassettes, state)
        with pytest.raises(CorruptRecording, match="not valid JSON"):
            kept.get(KEY)
        kept.close()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",
        lambda data: data[: len(data) // 2],
        lambda data: b"garbage\n" + data,
        lambda data: data.replace(b'"plugin_version":"', b'"plugin_version":"0.0.0-'),
        lambda data: data[:-3] + bytes(b ^ 0xFF for b in data[-3:]),  # the last entry: its CRC fails
    ],
    ids=["empty", "cut", "garbage", "other-version", "bit-rot"],
)
def test_a_damaged_cache_counts_as_absent_and_is_written_again(tmp_path: Path, damage: Any) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    path = write(cassettes)
    expected = served(load(path, carried_price))
    session(cassettes, state)
    pack = pack_path(state, cassettes)
    pack.write_bytes(damage(pack.read_bytes()))
    assert session(cassettes, state) == (expected, 0)
    assert session(cassettes, state) == (expected, 1)


def test_a_cache_others_may_write_is_neither_read_nor_written(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    write(cassettes)
    session(cassettes, state)
    pack_path(state, cassettes).parent.chmod(0o777)
    assert session(cassettes, state)[1] == 0
    pack_path(state, cassettes).unlink()
    session(cassettes, state)
    assert not pack_path(state, cassettes).exists()


def write_many(cassettes: Path, count: int) -> list[str]:
    cassettes.mkdir(exist_ok=True)
    keys = []
    for n in range(count):
        request = REQUEST.model_copy(update={"body": {**REQUEST.body, "n": n}})  # type: ignore[dict-item]
        rec = Recording(key=key_of(request), request=request, response=RESPONSES["json"], meta=META)
        (cassettes / f"{rec.key}.json").write_text(dumps_recording(rec.to_json_data()), encoding="utf-8")
        keys.append(rec.key)
    return keys


def test_workers_saving_at_once_keep_each_others_entries(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    keys = write_many(cassettes, 6)
    first, second = store(cassettes, state), store(cassettes, state)
    for index, key in enumerate(keys):
        assert (first if index % 2 else second).get(key) is not None
    first.close()
    second.close()
    third = store(cassettes, state)
    assert all(third.get(key) is not None for key in keys)
    assert hits(third) == len(keys)


# -- preloading what each test served ---------------------------------------------------------------------

SECRET_ID = "tests/test_app.py::test_chat[sk-proj-SECRETinTheParametrizeId0123456789]"


def serve_as(cassettes: Path, state: Path, served: dict[str, list[str]]) -> None:
    """A session in which each test served those keys, and ended."""
    kept = store(cassettes, state)
    for keys in served.values():
        for key in keys:
            assert kept.get(key) is not None
    kept.close(served)


def preloaded(cassettes: Path, state: Path, tests: list[str], **kwargs: Any) -> tuple[int, list[str]]:
    kept = store(cassettes, state, **kwargs)
    try:
        count = kept.preload(tests)
        return count, [key for key in sorted(kept._memory._items) if kept.in_memory(key) is not None]
    finally:
        kept.close()


def test_what_a_test_served_is_in_memory_before_the_next_session_asks(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    path = write(cassettes)
    serve_as(cassettes, state, {"t.py::a": [KEY]})
    kept = store(cassettes, state)
    assert kept.preload(["t.py::b", "t.py::a"]) == 1
    assert served(kept.in_memory(KEY)) == served(load(path, carried_price))
    assert kept.served_cache is not None
    assert kept.served_cache.preloaded == 1
    kept.close()
    assert preloaded(cassettes, state, ["t.py::b"]) == (0, [])  # another test served nothing


def test_nothing_changed_or_gone_since_is_preloaded(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    first, second = write_many(cassettes, 2)
    serve_as(cassettes, state, {"t.py::a": [first, second]})
    path = cassettes / f"{first}.json"
    path.write_text(path.read_text(encoding="utf-8") + " ", encoding="utf-8")
    (cassettes / f"{second}.json").unlink()
    assert preloaded(cassettes, state, ["t.py::a"]) == (0, [])


def test_preloading_stops_at_the_memory_tiers_size(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    keys = write_many(cassettes, 6)
    serve_as(cassettes, state, {"t.py::a": keys[:4], "t.py::b": keys[2:]})
    assert preloaded(cassettes, state, ["t.py::b", "t.py::a"], memory_size=3) == (3, sorted(keys[2:5]))
    assert preloaded(cassettes, state, ["t.py::a", "t.py::b"])[0] == 6  # each key once


def test_a_test_keeps_what_it_served_last_and_its_id_is_never_written(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    first, second = write_many(cassettes, 2)
    serve_as(cassettes, state, {SECRET_ID: [first, second]})
    serve_as(cassettes, state, {SECRET_ID: [second]})
    assert preloaded(cassettes, state, [SECRET_ID]) == (1, [second])
    pack = pack_path(state, cassettes).read_bytes()
    assert b"SECRETinTheParametrizeId" not in pack
    assert b"test_app" not in pack
    (cassettes / f"{second}.json").unlink()
    serve_as(cassettes, state, {"t.py::other": [first]})  # saved again: the gone file's key dropped
    assert preloaded(cassettes, state, [SECRET_ID, "t.py::other"]) == (1, [first])


def test_a_session_that_served_what_the_last_one_did_writes_nothing(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    write(cassettes)
    serve_as(cassettes, state, {"t.py::a": [KEY]})
    pack = pack_path(state, cassettes)
    written = pack.stat().st_mtime_ns
    serve_as(cassettes, state, {"t.py::a": [KEY]})
    assert pack.stat().st_mtime_ns == written


# -- the key memory ----------------------------------------------------------------------------------------


def keyer_with_memory(
    cache: ServedCache, settings: Settings | None = None, env: dict[str, str] | None = None
) -> Keyer:
    s = settings or build_settings(rootdir=Path("."), cli_mode=None, cli_dir=None, env={}, ini={})
    scrubber = Scrubber(
        secret_headers=s.secret_headers,
        secret_params=s.secret_params,
        patterns=s.secret_patterns,
        env=env or {},
    )
    keyer = Keyer(s, scrubber)
    keyer.memory = cache
    return keyer


def chat(content: str, **extra: Any) -> RawRequest:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra})
    headers = (("authorization", "Bearer sk-test-0123456789abcdef0123"), ("content-type", "application/json"))
    return RawRequest(
        "POST", "https", "api.openai.com", None, "/v1/chat/completions", (), headers, body.encode()
    )


def remembered(tmp_path: Path, *requests: RawRequest, **kwargs: Any) -> ServedCache:
    """A session that keyed ``requests`` (whose recordings exist) and ended."""
    cassettes = tmp_path / "cassettes"
    cassettes.mkdir(exist_ok=True)
    cache = ServedCache(pack_path(tmp_path / "state", cassettes), cassettes)
    keyer = keyer_with_memory(cache, **kwargs)
    for raw in requests:
        key, _ = keyer.key_for(raw)
        (cassettes / f"{key}.json").write_text("{}", encoding="utf-8")
    cache.save()
    return ServedCache(cache.path, cassettes)


def test_a_later_session_recalls_the_key_and_model_of_a_clean_request(tmp_path: Path) -> None:
    cache = remembered(tmp_path, chat("hello"))
    later = keyer_with_memory(cache)
    fresh = keyer_with_memory(ServedCache(tmp_path / "none.pack", tmp_path / "cassettes"))
    key, canonical = fresh.key_for(chat("hello"))
    assert later.recall(chat("hello")) == (key, "gpt-4o-mini")
    assert later.recall(chat("hello", temperature=0)) is None
    # The event loop's reading: nothing is read from disk for it.
    cold = keyer_with_memory(ServedCache(cache.path, cache.directory))
    assert cold.recall(chat("hello"), wait=False) is None
    assert cold.recall(chat("hello")) == (key, canonical.model)


def test_keys_shaped_by_other_settings_rules_or_secrets_are_not_recalled(tmp_path: Path) -> None:
    cache = remembered(tmp_path, chat("hello"))
    ignoring = build_settings(
        rootdir=Path("."), cli_mode=None, cli_dir=None, env={}, ini={"promptcache_ignore_fields": "user"}
    )
    assert keyer_with_memory(cache, ignoring).recall(chat("hello")) is None
    assert keyer_with_memory(cache).recall(chat("hello"), KeyRules.build(normalize=["uuid"])) is None
    assert (
        keyer_with_memory(cache, env={"OPENAI_API_KEY": "sk-other-0123456789abcdef"}).recall(chat("hello"))
        is None
    )
    hooked = KeyRules.build(hook=lambda data: None, hook_scope="t.py::t")
    assert keyer_with_memory(cache).recall(chat("hello"), hooked) is None
    assert keyer_with_memory(cache).recall(chat("hello")) is not None


def test_a_request_carrying_a_secret_is_never_remembered(tmp_path: Path) -> None:
    secret = "sk-test-0123456789abcdef0123"  # the request's own bearer token, repeated in its prompt
    carrying = [chat(f"my key is {secret}"), chat("hi", api_key="k-0123456789abcdef"), chat("plain")]
    cache = remembered(tmp_path, *carrying)
    later = keyer_with_memory(cache)
    assert [later.recall(raw) is not None for raw in carrying] == [False, False, True]


def test_keys_whose_recording_is_gone_are_forgotten(tmp_path: Path) -> None:
    cache = remembered(tmp_path, chat("one"), chat("two"))
    keys = [keyer_with_memory(cache).recall(chat(text)) for text in ("one", "two")]
    assert all(keys)
    (cache.directory / f"{keys[0][0]}.json").unlink()  # type: ignore[index]
    cache.remember_key(b"n" * 16, "0" * 64, None)  # something new, so that the file is written again
    (cache.directory / f"{'0' * 64}.json").write_text("{}", encoding="utf-8")
    cache.save()
    later = keyer_with_memory(ServedCache(cache.path, cache.directory))
    assert later.recall(chat("one")) is None
    assert later.recall(chat("two")) == keys[1]


def test_a_secret_parameter_takes_no_part_in_what_is_kept(tmp_path: Path) -> None:
    def gemini(api_key: str) -> RawRequest:
        body = b'{"contents": [{"parts": [{"text": "hello"}]}]}'
        path = "/v1beta/models/gemini-2.5-flash:generateContent"
        query = (("key", api_key),)
        return RawRequest("POST", "https", "generativelanguage.googleapis.com", None, path, query, (), body)

    cache = remembered(tmp_path, gemini("AIzaSyA-first-key-0123456789abcdefghijkl"))
    assert b"AIzaSyA" not in cache.path.read_bytes()
    later = keyer_with_memory(cache)
    recalled = later.recall(gemini("AIzaSyB-other-key-0123456789abcdefghijkl"))
    assert recalled == (keyer_with_memory(cache).key_for(gemini("x"))[0], "gemini-2.5-flash")


def test_a_key_nobody_recorded_is_not_kept(tmp_path: Path) -> None:
    cache = remembered(tmp_path, chat("recorded"))
    keyer_with_memory(cache).key_for(chat("missed in replay"))  # keyed, never recorded
    cache.remember_key(b"n" * 16, "0" * 64, None)  # and one more nobody recorded
    cache.save()
    later = keyer_with_memory(ServedCache(cache.path, cache.directory))
    assert later.recall(chat("missed in replay")) is None
    assert later.recall(chat("recorded")) is not None


# -- prices kept with the served forms -----------------------------------------------------------------

CHAT_ANSWER = RecordedResponse(
    status=200,
    headers={"content-type": "application/json"},
    body={"model": "gpt-4o-mini", "choices": [{"message": {"role": "assistant", "content": "hi there"}}]},
)


def priced_session(
    cassettes: Path, state: Path, book: PriceBook, pricer: Pricer | None = None
) -> tuple[Measured, int]:
    """One session serving KEY with the plugin's own pricing (``Ledger``) under ``book``, or ``pricer``
    in its place: the price it served KEY at, and how often a recording was priced."""
    asked: list[str] = []
    ledger = Ledger(book)

    def counting(facts: PriceFacts, whole: Callable[[], Recording]) -> Measured:
        asked.append(facts.key)
        return (pricer or ledger.price_replay)(facts, whole)

    kept = CassetteStore(cassettes, pricer=counting, prices=book.identity, state_root=state)
    assert kept.served_cache is not None
    kept.served_cache = ServedCache(kept.served_cache.path, cassettes, prices=book.identity, racy_ns=0)
    try:
        stored = kept.get(KEY)
        assert stored is not None
        return stored.price, len(asked)
    finally:
        kept.close()


def never(facts: PriceFacts, whole: Callable[[], Recording]) -> Measured:
    raise AssertionError(f"priced again: {facts.key}")


def test_a_recording_without_usage_is_priced_by_counting_its_tokens_once_not_in_every_session(
    tmp_path: Path,
) -> None:
    # An older or hand-made file carries no usage: pricing it counts its tokens (loading the tokenizer's
    # encoding, ~0.25 s, in a session's first), and a later session serves the price that was kept.
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    cassettes.mkdir()
    bare = recording(CHAT_ANSWER)
    bare = bare.model_copy(update={"meta": bare.meta.model_copy(update={"usage": None, "cost_usd": None})})
    (cassettes / f"{KEY}.json").write_text(dumps_recording(bare.to_json_data()), encoding="utf-8")
    book = PriceBook()
    first, asked = priced_session(cassettes, state, book)
    assert asked == 1
    assert first.usage is not None
    assert first.usage.estimated
    assert first.usage.input_tokens > 0
    assert first.cost_usd is not None
    assert first.cost_usd > 0
    assert priced_session(cassettes, state, book, never) == (first, 0)


def test_kept_prices_are_not_served_under_other_prices(tmp_path: Path) -> None:
    cassettes, state = tmp_path / "cassettes", tmp_path / "state"
    path = write(cassettes)
    book = PriceBook()
    carried, _ = priced_session(cassettes, state, book)
    assert carried.cost_usd == META.cost_usd  # what the file carries
    # The user now prices the model themselves: the kept price is not theirs, so it is priced again.
    own = PriceBook(parse_prices(["gpt-4o-mini input=1000 output=1000"]))
    assert own.identity != book.identity
    assert own.identity == PriceBook(parse_prices(["gpt-4o-mini input=1000 output=1000"])).identity
    price, asked = priced_session(cassettes, state, own)
    assert asked == 1
    assert price == Ledger(own).replay_price(read_recording(path))
    assert price.cost_usd != carried.cost_usd
    # And that session's prices are the ones kept from then on.
    assert priced_session(cassettes, state, own, never) == (price, 0)
