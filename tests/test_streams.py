"""SSE parsing and encoding, and the decision of when a live body is complete."""

from __future__ import annotations

import gzip
from typing import Any

from pytest_promptcache.models import RecordedResponse, SSEEvent
from pytest_promptcache.streams import BodyRecorder, SSEParser, build_replay, encode_event


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
