"""Reading a recording to serve it (``store.served``): the fast reading of files in the written form must
serve exactly what the models' reading serves, and refuse exactly what it refuses."""

from __future__ import annotations

import base64
import copy
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.keys import canonical_data, dumps_canonical, key_of
from pytest_promptcache.models import (
    CanonicalRequest,
    EventStreamMessage,
    Measured,
    PriceFacts,
    RecordedResponse,
    Recording,
    RecordingMeta,
    RequestScope,
    SSEEvent,
    TokenUsage,
)
from pytest_promptcache.replay import build_replay, encode_event, json_bytes, replay_of_data
from pytest_promptcache.store.cassettes import CassetteStore
from pytest_promptcache.store.files import CorruptRecording, dumps_recording, read_recording
from pytest_promptcache.store.served import (
    _EVENT_FIELDS,
    _MESSAGE_FIELDS,
    _META_FIELDS,
    _RECORDING_FIELDS,
    _REQUEST_FIELDS,
    _RESPONSE_FIELDS,
    _USAGE_FIELDS,
    StoredRecording,
    carried_price,
    load,
)

REQUEST = CanonicalRequest(
    method="POST",
    host="api.openai.com",
    path="/v1/chat/completions",
    query=[("api-version", "1")],
    headers={"anthropic-version": "2023-06-01"},
    body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "héllo"}], "n": 1},
)
KEY = key_of(REQUEST)
META = RecordingMeta(
    recorded_at=datetime(2026, 1, 15, 10, 30, 5, 123456, tzinfo=UTC),
    test="tests/test_a.py::test_a",
    url="https://api.openai.com/v1/chat/completions",
    latency_ms=12.5,
    plugin_version="0.1.0",
    usage=TokenUsage(input_tokens=10, output_tokens=3),
    cost_usd=0.00001,
)

RESPONSES = {
    "json": RecordedResponse(status=200, headers={"content-type": "application/json"}, body={"a": [1, 2.5]}),
    "text": RecordedResponse(status=500, headers={"content-length": "3"}, text="oops"),
    "bytes": RecordedResponse(status=200, base64=base64.b64encode(b"\x00\xff").decode()),
    "empty": RecordedResponse(status=204),
    "sse": RecordedResponse(
        status=200,
        headers={"content-type": "text/event-stream", "transfer-encoding": "chunked"},
        events=[
            SSEEvent(data={"choices": [{"delta": {"content": "hé"}}]}),
            SSEEvent(event="ping", id="7", retry=100, data={"x": None}),
            SSEEvent(event="message_stop"),
            SSEEvent(text="line one\nline two"),
            SSEEvent(id="8"),
            SSEEvent(text="[DONE]"),
        ],
    ),
    "event_stream": RecordedResponse(
        status=200,
        headers={"content-type": "application/vnd.amazon.eventstream"},
        event_stream=[
            EventStreamMessage(headers={":event-type": "chunk"}, payload={"a": 1}, base64="AAAA"),
            EventStreamMessage(base64=base64.b64encode(b"raw bytes").decode()),
        ],
    ),
}


def recording(response: RecordedResponse, *, schema_version: int = 2) -> Recording:
    return Recording.model_validate(
        {
            "schema_version": schema_version,
            "key": KEY,
            "request": REQUEST,
            "response": response,
            "meta": META,
        }
    )


def write(directory: Path, data: dict[str, Any]) -> Path:
    path = directory / f"{KEY}.json"
    path.write_text(dumps_recording(data), encoding="utf-8")
    return path


def outcome(read: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", read()
    except CorruptRecording as exc:
        return "corrupt", str(exc)


def both_readings(path: Path) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """What ``load`` serves of ``path``, and what serving the models' reading of it gives."""

    def loaded() -> Any:
        stored = load(path, carried_price)
        return stored.replay, stored.price, stored.recorded_at, stored.test

    def modelled() -> Any:
        rec = read_recording(path)
        return (
            build_replay(rec.response),
            Measured(rec.meta.usage, rec.meta.cost_usd, rec.meta.cache_saved_usd),
            rec.meta.recorded_at,
            rec.meta.test,
        )

    return outcome(loaded), outcome(modelled)


def test_the_field_sets_are_the_models() -> None:
    # A field added to a model and not here would send every file holding it down the slow reading.
    assert set(Recording.model_fields) == _RECORDING_FIELDS
    assert set(CanonicalRequest.model_fields) == _REQUEST_FIELDS
    assert set(RecordedResponse.model_fields) == _RESPONSE_FIELDS
    assert set(SSEEvent.model_fields) == _EVENT_FIELDS
    assert set(EventStreamMessage.model_fields) == _MESSAGE_FIELDS
    assert set(RecordingMeta.model_fields) == _META_FIELDS
    assert set(TokenUsage.model_fields) == _USAGE_FIELDS


@pytest.mark.parametrize("kind", sorted(RESPONSES))
def test_written_files_serve_what_the_models_serve(tmp_path: Path, kind: str) -> None:
    rec = recording(RESPONSES[kind], schema_version=3 if kind == "event_stream" else 2)
    path = write(tmp_path, rec.to_json_data())
    fast, slow = both_readings(path)
    assert fast[0] == "ok"
    assert fast == slow
    assert fast[1][0] == build_replay(rec.response)


def test_the_replay_of_parsed_data_is_the_replay_of_the_model() -> None:
    for response in RESPONSES.values():
        assert replay_of_data(response.model_dump(mode="json", exclude_none=True)) == build_replay(response)


def test_streams_have_no_length_and_bodies_have_theirs() -> None:
    sse = build_replay(RESPONSES["sse"])
    assert all(name not in {"content-length", "transfer-encoding"} for name, _ in sse.headers)
    assert sse.chunks[0] == 'data: {"choices":[{"delta":{"content":"hé"}}]}\n\n'.encode()
    assert sse.chunks[1] == b'event: ping\nid: 7\nretry: 100\ndata: {"x":null}\n\n'
    assert sse.chunks[3] == b"data: line one\ndata: line two\n\n"
    assert sse.chunks[4] == b"id: 8\n\n"
    assert encode_event(SSEEvent()) == b"\n\n"  # an empty event: only the blank line that ends it
    text = build_replay(RESPONSES["text"])
    assert ("content-length", "4") in text.headers
    assert [name for name, _ in text.headers].count("content-length") == 1
    assert build_replay(RESPONSES["event_stream"]).chunks[1] == b"raw bytes"
    assert build_replay(RESPONSES["empty"]).chunks == ()
    # What is replayed whole (the client gets it read, with its length) and what as a stream.
    assert text.whole == b"oops"
    assert build_replay(RESPONSES["empty"]).whole == b""
    assert sse.whole is None
    assert build_replay(RESPONSES["event_stream"]).whole is None


def test_json_bytes_writes_what_json_can_hold() -> None:
    assert json_bytes({"big": 2**80, "nan": math.nan, "inf": -math.inf}) == (
        b'{"big":1208925819614629174706176,"nan":NaN,"inf":-Infinity}'
    )


# Each changes a written file: the fast reading must hand it to the models, which serve or refuse it.
MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "status as text": lambda d: d["response"].__setitem__("status", "200"),
    "status as float": lambda d: d["response"].__setitem__("status", 200.0),
    "status as bool": lambda d: d["response"].__setitem__("status", True),
    "unknown response field": lambda d: d["response"].__setitem__("trailers", {}),
    "unknown top field": lambda d: d.__setitem__("extra", 1),
    "header value a number": lambda d: d["response"]["headers"].__setitem__("x", 1),
    "naive timestamp": lambda d: d["meta"].__setitem__("recorded_at", "2026-01-15T10:30:05"),
    "13th month": lambda d: d["meta"].__setitem__("recorded_at", "2026-13-15T10:30:05Z"),
    "date only": lambda d: d["meta"].__setitem__("recorded_at", "2026-01-15"),
    "epoch timestamp": lambda d: d["meta"].__setitem__("recorded_at", 1700000000),
    "latency as text": lambda d: d["meta"].__setitem__("latency_ms", "12"),
    "latency as bool": lambda d: d["meta"].__setitem__("latency_ms", True),
    "no url": lambda d: d["meta"].pop("url"),
    "extra meta field": lambda d: d["meta"].__setitem__("note", "kept"),
    "usage extra field": lambda d: d["meta"]["usage"].__setitem__("audio_tokens", 1),
    "usage as text": lambda d: d["meta"]["usage"].__setitem__("input_tokens", "10"),
    "cost as text": lambda d: d["meta"].__setitem__("cost_usd", "0.1"),
    "no cost": lambda d: d["meta"].pop("cost_usd"),
    "no usage": lambda d: d["meta"].pop("usage"),
    "usage estimated": lambda d: d["meta"]["usage"].__setitem__("source", "estimated"),
    "usage free": lambda d: d["meta"]["usage"].__setitem__("source", "free"),
    "usage source unknown": lambda d: d["meta"]["usage"].__setitem__("source", "guessed"),
    "usage source a number": lambda d: d["meta"]["usage"].__setitem__("source", 1),
    "usage source null": lambda d: d["meta"]["usage"].__setitem__("source", None),
    "cache saved": lambda d: d["meta"].__setitem__("cache_saved_usd", -0.25),
    "cache saved as text": lambda d: d["meta"].__setitem__("cache_saved_usd", "0.1"),
    "edited request": lambda d: d["request"]["body"].__setitem__("n", 2),
    "query as triples": lambda d: d["request"].__setitem__("query", [["a", "b", "c"]]),
    "query pair of numbers": lambda d: d["request"].__setitem__("query", [[1, 2]]),
    "unknown request field": lambda d: d["request"].__setitem__("cookies", {}),
    "method a number": lambda d: d["request"].__setitem__("method", 1),
    "wrong key": lambda d: d.__setitem__("key", "0" * 64),
    "schema 1": lambda d: d.__setitem__("schema_version", 1),
    "schema 9": lambda d: d.__setitem__("schema_version", 9),
    "schema as text": lambda d: d.__setitem__("schema_version", "2"),
    "event retry as text": lambda d: d["response"]["events"][1].__setitem__("retry", "100"),
    "event unknown field": lambda d: d["response"]["events"][0].__setitem__("comment", "x"),
    "event a list": lambda d: d["response"]["events"].__setitem__(0, []),
    "events an object": lambda d: d["response"].__setitem__("events", {}),
    "request a list": lambda d: d.__setitem__("request", []),
    "meta a list": lambda d: d.__setitem__("meta", []),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_file_in_another_form_is_read_as_the_models_read_it(tmp_path: Path, name: str) -> None:
    data = copy.deepcopy(recording(RESPONSES["sse"]).to_json_data())
    MUTATIONS[name](data)
    fast, slow = both_readings(write(tmp_path, data))
    assert fast == slow


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["response"]["event_stream"][0].__setitem__("base64", 5),
        lambda d: d["response"]["event_stream"][0].__setitem__("headers", []),
        lambda d: d["response"]["event_stream"][0].__setitem__("extra", 1),
        lambda d: d["response"].__setitem__("event_stream", "x"),
    ],
)
def test_an_event_stream_in_another_form_is_read_as_the_models_read_it(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None]
) -> None:
    data = copy.deepcopy(recording(RESPONSES["event_stream"], schema_version=3).to_json_data())
    mutate(data)
    fast, slow = both_readings(write(tmp_path, data))
    assert fast == slow


def test_text_that_is_not_json_an_object_or_a_file(tmp_path: Path) -> None:
    path = tmp_path / f"{KEY}.json"
    for text in ("{not json", "[1, 2]"):
        path.write_text(text, encoding="utf-8")
        fast, slow = both_readings(path)
        assert fast[0] == "corrupt"
        assert fast == slow
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.json", carried_price)


def test_the_pricer_is_asked_once_with_the_facts_and_builds_the_recording_only_when_asked(
    tmp_path: Path,
) -> None:
    rec = recording(RESPONSES["json"])
    path = write(tmp_path, rec.to_json_data())
    asked: list[PriceFacts] = []

    def pricer(facts: PriceFacts, whole: Callable[[], Recording]) -> Any:
        asked.append(facts)
        return Measured(None, None if facts.usage else whole().meta.cost_usd)

    stored = load(path, pricer)
    assert asked == [PriceFacts.of(rec)]
    assert stored.price == Measured()

    def measuring(facts: PriceFacts, whole: Callable[[], Recording]) -> Any:
        return Measured(whole().meta.usage, 1.5, 0.25)

    assert load(path, measuring).price == Measured(META.usage, 1.5, 0.25)


def test_estimated_usage_and_cache_savings_are_read_the_fast_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_promptcache.store import served

    usage = TokenUsage(input_tokens=10, cached_input_tokens=8, output_tokens=3, source="estimated")
    rec = recording(RESPONSES["sse"]).model_copy(
        update={"meta": META.model_copy(update={"usage": usage, "cache_saved_usd": 0.5})}
    )
    path = write(tmp_path, rec.to_json_data())

    def slow(*args: Any) -> Recording:
        raise AssertionError("read through the models")

    monkeypatch.setattr(served, "recording_from_text", slow)
    stored = load(path, carried_price)
    assert stored.price == Measured(usage, META.cost_usd, 0.5)
    assert stored.price.usage is not None
    assert stored.price.usage.estimated


def test_a_recording_saved_in_the_session_builds_its_replay_when_first_served(tmp_path: Path) -> None:
    store = CassetteStore(tmp_path, memory_size=8)
    rec = recording(RESPONSES["sse"])
    stored = store.put(rec)
    assert isinstance(stored, StoredRecording)
    assert stored._replay is None
    first = stored.replay
    assert first == build_replay(rec.response)
    assert stored.replay is first
    assert stored._recording is None  # the parsed recording is let go once served
    assert store.get(KEY) is stored
    # A new store (another process) reads it from its file and serves the same.
    assert CassetteStore(tmp_path).get(KEY).replay == first  # type: ignore[union-attr]


def test_canonical_data_is_the_models_dump() -> None:
    requests = [
        REQUEST,
        CanonicalRequest(method="GET", host="h", path="/"),
        CanonicalRequest(method="POST", host="h", path="/", body_text="x", body_sha256="ab"),
        CanonicalRequest(method="POST", host="h", path="/", body=[1, {"b": None}]),
        # An ordered scope's recordings (schema 4): the first occurrence too, whose index is 0.
        CanonicalRequest(method="GET", host="h", path="/", scope=RequestScope(name="t.py::t", index=0)),
        CanonicalRequest(method="GET", host="h", path="/", scope=RequestScope(name="t.py::t", index=2)),
    ]
    for request in requests:
        dumped = request.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        # What the key hashes: the same text either way (tuples and lists write alike).
        assert dumps_canonical(canonical_data(request)) == dumps_canonical(dumped)


@pytest.mark.parametrize("module_name", ["httpx", "httpx2"])
def test_responses_of_one_replay_share_no_headers(module_name: str) -> None:
    """Each Response of a replay gets headers of its own: a client that changes one response's headers
    changes no later serve."""
    import importlib

    from pytest_promptcache.clients.httpx_send import flavor_of

    module = importlib.import_module(module_name)
    flavor = flavor_of(module)
    replay = build_replay(RESPONSES["text"])
    request = module.Request("POST", "http://127.0.0.1/v1/chat/completions")
    first = flavor.response(replay, request)
    first.headers["x-changed"] = "yes"
    del first.headers["content-length"]
    second = flavor.response(replay, request)
    assert "x-changed" not in second.headers
    assert tuple(second.headers.multi_items()) == replay.headers
    assert second.content == first.content == b"oops"
    stream = flavor.response(build_replay(RESPONSES["sse"]), request)
    assert stream.read() == b"".join(build_replay(RESPONSES["sse"]).chunks)
