"""SSE parsing and encoding, and the decision of when a live body is complete."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Callable
from typing import Any

import brotli  # type: ignore[import-untyped]
import pytest

from pytest_promptcache.models import RecordedResponse, SSEEvent
from pytest_promptcache.streams import (
    BodyRecorder,
    SSEParser,
    build_replay,
    encode_event,
    event_type,
    is_error,
    is_event_stream,
    is_json_type,
    is_terminal,
)


def test_parser_handles_crlf_comments_multiline_data_and_split_chunks() -> None:
    parser = SSEParser()
    wire = (
        ': keep-alive\r\n\r\nevent: message_start\r\ndata: {"type":"message_start"}\r\n\r\n'
        "data: line one\ndata: line two\n\nda"
    )
    events = parser.feed(wire[:17]) + parser.feed(wire[17:])
    assert events == [
        SSEEvent(event="message_start", data={"type": "message_start"}),
        SSEEvent(text="line one\nline two"),
    ]
    assert parser.feed("ta: [DONE]\n\n") == [SSEEvent(text="[DONE]")]


def test_encode_then_parse_round_trips() -> None:
    events = [
        SSEEvent(event="response.completed", data={"type": "response.completed", "n": [1, 2]}),
        SSEEvent(text="[DONE]"),
        SSEEvent(text='"a json string stays text"'),
        SSEEvent(id="7", retry=1000, text="x\ny"),
    ]
    parser = SSEParser()
    assert parser.feed(b"".join(encode_event(e) for e in events).decode()) == events


def test_an_event_nested_too_deeply_to_parse_is_kept_as_its_text() -> None:
    # json.loads raises RecursionError on it; the event must neither end the call nor lose its bytes.
    deep = "[" * 100_000 + "]" * 100_000
    (event,) = SSEParser().feed(f"data: {deep}\n\n")
    assert event == SSEEvent(text=deep)
    assert encode_event(event) == f"data: {deep}\n\n".encode()


def recorder(headers: list[tuple[str, str]]) -> tuple[BodyRecorder, list[Any]]:
    results: list[Any] = []
    rec = BodyRecorder(
        status=200,
        headers=headers,
        on_complete=results.append,
        on_incomplete=lambda reason, failed: results.append((reason, failed)),
    )
    return rec, results


def test_terminal_event_completes_a_stream_even_if_the_client_then_closes() -> None:
    rec, results = recorder([("content-type", "text/event-stream")])
    rec.feed(b'data: {"a":1}\n\n')
    assert results == []
    rec.feed(b"data: [DONE]\n\n")
    rec.closed()
    assert len(results) == 1
    assert isinstance(results[0], RecordedResponse)
    assert results[0].events == [SSEEvent(data={"a": 1}), SSEEvent(text="[DONE]")]


def test_stream_closed_before_its_end_is_abandoned_and_an_error_event_fails_it() -> None:
    rec, results = recorder([("content-type", "text/event-stream")])
    rec.feed(b'data: {"a":1}\n\n')
    rec.closed()
    assert results == [("the client closed the stream before it ended", False)]

    rec, results = recorder([("content-type", "text/event-stream")])
    rec.feed(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n')
    rec.ended()
    assert results == [("the stream carried an error event (error)", True)]


def test_gzip_body_is_decoded_incrementally_and_replayed_without_encoding() -> None:
    body = gzip.compress(b'{"id": "x", "ok": true}')
    rec, results = recorder([("content-type", "application/json"), ("content-encoding", "gzip")])
    for i in range(0, len(body), 5):
        rec.feed(body[i : i + 5])
    rec.ended()
    (response,) = results
    assert response.body == {"id": "x", "ok": True}
    replay = build_replay(
        RecordedResponse(status=200, headers={"content-encoding": "gzip"}, body=response.body)
    )
    assert ("content-encoding", "gzip") not in replay.headers
    assert replay.headers[-1] == ("content-length", str(len(replay.chunks[0])))


# -- the SSE parser ---------------------------------------------------------------------------------------


def test_parser_fields_and_their_edge_cases() -> None:
    parser = SSEParser()
    wire = (
        "event: message_delta\nid: 42\nretry: 3000\ndata: {}\n\n"
        "data:no space\n\n"  # the space after the colon is optional
        "data\n\n"  # a field without a colon has an empty value
        "retry: soon\nevent: ping\n\n"  # a retry that is not a number is ignored
        "unknown: x\n\n"  # nothing the parser knows: no event at all
        "id: only-an-id\n\n"
    )
    assert parser.feed(wire) == [
        SSEEvent(event="message_delta", id="42", retry=3000, data={}),
        SSEEvent(text="no space"),
        SSEEvent(text=""),
        SSEEvent(event="ping"),
        SSEEvent(id="only-an-id"),
    ]


def test_parser_keeps_json_scalars_as_text() -> None:
    # A JSON string or number would be written back differently; only objects and arrays are parsed.
    events = SSEParser().feed('data: "quoted"\n\ndata: 42\n\ndata: [1, 2]\n\ndata: null\n\n')
    assert events == [
        SSEEvent(text='"quoted"'),
        SSEEvent(text="42"),
        SSEEvent(data=[1, 2]),
        SSEEvent(text="null"),
    ]


def test_parser_takes_lone_carriage_returns_as_line_ends() -> None:
    assert SSEParser().feed("event: a\rdata: {}\r\r") == [SSEEvent(event="a", data={})]


def test_parser_holds_an_unfinished_event_until_flushed() -> None:
    parser = SSEParser()
    assert parser.feed("data: tail without a blank line\n") == []
    assert parser.flush() == [SSEEvent(text="tail without a blank line")]
    assert parser.flush() == []
    assert parser.feed(": only a comment\n\n") == []


def test_parser_handles_a_crlf_split_across_chunks() -> None:
    parser = SSEParser()
    events = parser.feed("event: message_start\r") + parser.feed('\ndata: {"type":"message_start"}\r\n\r\n')
    assert events == [SSEEvent(event="message_start", data={"type": "message_start"})]


@pytest.mark.parametrize(
    ("event", "terminal", "error"),
    [
        (SSEEvent(text="[DONE]"), True, False),
        (SSEEvent(text=" [DONE] "), True, False),
        (SSEEvent(event="message_stop", data={"type": "message_stop"}), True, False),
        (SSEEvent(data={"type": "message_stop"}), True, False),
        (SSEEvent(data={"type": "response.completed"}), True, False),
        (SSEEvent(event="response.incomplete"), True, False),
        (SSEEvent(event="error", data={"type": "error"}), False, True),
        (SSEEvent(data={"type": "response.failed"}), False, True),
        (SSEEvent(event="ping", data={"type": "message_stop"}), False, False),  # the event name wins
        (SSEEvent(data={"type": 3}), False, False),
        (SSEEvent(data=["message_stop"]), False, False),
        (SSEEvent(text="done"), False, False),
    ],
)
def test_terminal_and_error_events(event: SSEEvent, terminal: bool, error: bool) -> None:
    assert (is_terminal(event), is_error(event)) == (terminal, error)


def test_event_type() -> None:
    assert event_type(SSEEvent(event="x", data={"type": "y"})) == "x"
    assert event_type(SSEEvent(data={"type": "y"})) == "y"
    assert event_type(SSEEvent(text="y")) is None


@pytest.mark.parametrize(
    ("content_type", "stream", "json"),
    [
        ("text/event-stream", True, False),
        ("Text/Event-Stream; charset=utf-8", True, False),
        ("application/json", False, True),
        ("application/problem+json; charset=utf-8", False, True),
        ("text/plain", False, False),
        (None, False, False),
    ],
)
def test_content_types(content_type: str | None, stream: bool, json: bool) -> None:
    assert (is_event_stream(content_type), is_json_type(content_type)) == (stream, json)


# -- BodyRecorder: plain bodies ---------------------------------------------------------------------------


def ended(headers: list[tuple[str, str]], *chunks: bytes) -> list[Any]:
    rec, results = recorder(headers)
    for chunk in chunks:
        rec.feed(chunk)
    rec.ended()
    return results


def test_plain_bodies_are_kept_as_json_text_or_base64() -> None:
    (as_json,) = ended([("Content-Type", "application/json")], b'{"a":', b" [1]}")
    assert (as_json.body, as_json.headers) == ({"a": [1]}, {"content-type": "application/json"})
    (sniffed,) = ended([], b'[{"no": "content type"}]')
    assert sniffed.body == [{"no": "content type"}]
    (bad_json,) = ended([("content-type", "application/json")], b"{truncated")
    assert (bad_json.body, bad_json.text) == (None, "{truncated")
    (text,) = ended([("content-type", "text/plain")], "h\u00e9llo".encode())
    assert text.text == "h\u00e9llo"
    (binary,) = ended([("content-type", "application/octet-stream")], b"\xff\xfe\x00")
    assert binary.base64 == base64.b64encode(b"\xff\xfe\x00").decode()
    (empty,) = ended([("content-type", "application/json")])
    assert empty.text == ""


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("deflate", zlib.compress),
        ("x-gzip", gzip.compress),
        ("identity", lambda data: data),
        # Listed in the order applied: gzip first, then deflate over it.
        ("gzip, deflate", lambda data: zlib.compress(gzip.compress(data))),
    ],
)
def test_content_encodings_are_undone(encoding: str, compress: Callable[[bytes], bytes]) -> None:
    wire = compress(b'{"ok": true}')
    (response,) = ended(
        [("content-type", "application/json"), ("content-encoding", encoding)], wire[:3], wire[3:]
    )
    assert response.body == {"ok": True}


def test_brotli_is_undone() -> None:
    wire = brotli.compress(b'{"ok": true}')
    (response,) = ended([("content-type", "application/json"), ("content-encoding", "br")], wire)
    assert response.body == {"ok": True}


def test_an_unsupported_encoding_is_a_failure_not_a_recording() -> None:
    results = ended([("content-encoding", "zstd")], b"\x28\xb5\x2f\xfd")
    assert results == [("unsupported content-encoding zstd", True)]


def test_a_corrupt_encoded_body_is_a_failure() -> None:
    results = ended([("content-encoding", "gzip")], b"not gzip at all")
    ((reason, failed),) = results
    assert reason.startswith("could not decode the body: ")
    assert failed


# -- BodyRecorder: streams --------------------------------------------------------------------------------

SSE = [("content-type", "text/event-stream")]


def test_a_stream_that_ends_without_a_terminal_event_is_complete_when_the_body_ends() -> None:
    results = ended(SSE, b'data: {"n":1}\n\n', b'data: {"n":2}')  # the last event without its blank line
    (response,) = results
    assert response.events == [SSEEvent(data={"n": 1}), SSEEvent(data={"n": 2})]


def test_a_stream_is_recorded_once_at_its_terminal_event() -> None:
    rec, results = recorder(SSE)
    rec.feed(b"event: message_stop\ndata: {}\n\n")
    assert len(results) == 1  # complete before the client reads on
    rec.feed(b"data: late\n\n")
    rec.ended()
    rec.failed("too late to matter")
    rec.closed()
    assert len(results) == 1
    assert results[0].events == [SSEEvent(event="message_stop", data={})]


def test_a_failed_body_is_never_recorded() -> None:
    rec, results = recorder(SSE)
    rec.feed(b'data: {"n":1}\n\n')
    rec.failed("connection reset")
    rec.ended()
    rec.closed()
    assert results == [("connection reset", True)]


def test_utf8_split_across_chunks_is_decoded() -> None:
    data = 'data: {"t":"\u00e9t\u00e9"}\n\ndata: [DONE]\n\n'.encode()
    cut = data.index(b"\xc3") + 1  # inside the first two-byte character
    (response,) = ended(SSE, data[:cut], data[cut:])
    assert response.events[0] == SSEEvent(data={"t": "\u00e9t\u00e9"})


@pytest.mark.parametrize("tail", [b"data: \xff\xfe\n\n", b"data: caf\xc3"])
def test_a_stream_that_is_not_utf8_is_a_failure(tail: bytes) -> None:
    ((reason, failed),) = ended(SSE, b'data: {"n":1}\n\n', tail)
    assert reason.startswith("could not decode the body: ")
    assert failed


def test_closing_after_the_body_ended_is_not_an_abandonment() -> None:
    rec, results = recorder([("content-type", "application/json")])
    rec.feed(b"{}")
    rec.ended()
    rec.closed()
    assert len(results) == 1
    assert isinstance(results[0], RecordedResponse)


# -- replay -----------------------------------------------------------------------------------------------


def test_build_replay_for_each_kind_of_body() -> None:
    headers = {
        "content-type": "x",
        "transfer-encoding": "chunked",
        "content-length": "999",
        "x-request-id": "r",
    }
    events = build_replay(RecordedResponse(status=200, headers=headers, events=[SSEEvent(text="[DONE]")]))
    assert events.chunks == (b"data: [DONE]\n\n",)
    assert events.headers == (("content-type", "x"), ("x-request-id", "r"))  # a stream has no length
    binary = build_replay(RecordedResponse(status=200, base64=base64.b64encode(b"\x00\x01").decode()))
    assert (binary.chunks, binary.headers) == ((b"\x00\x01",), (("content-length", "2"),))
    text = build_replay(RecordedResponse(status=503, text="busy \u2013 later"))
    assert (text.status, text.chunks) == (503, ("busy \u2013 later".encode(),))
    body = build_replay(RecordedResponse(status=200, body={"a": "\u00e9"}))
    assert json.loads(body.chunks[0]) == {"a": "\u00e9"}
    assert body.headers == (("content-length", str(len(body.chunks[0]))),)
    empty = build_replay(RecordedResponse(status=204))
    assert (empty.chunks, empty.headers) == ((), (("content-length", "0"),))
