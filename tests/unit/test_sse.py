"""The SSE parser: events come out the same however the wire is cut into chunks, and the work done per
chunk is bounded by the chunk, not by the event it belongs to."""

from __future__ import annotations

import itertools
import random
import tracemalloc

import pytest

from pytest_promptcache.models import SSEEvent
from pytest_promptcache.streams import BodyRecorder, SSEParser

# Anthropic's and the Responses API's shape: an ``event:`` line, then a ``data:`` line, CRLF line ends.
ANTHROPIC_CRLF = (
    'event: message_start\r\ndata: {"type":"message_start","message":{"id":"msg_1"}}\r\n\r\n'
    'event: content_block_delta\r\ndata: {"type":"content_block_delta","delta":{"text":"hi"}}\r\n\r\n'
    ": keep-alive\r\n\r\n"
    'event: message_stop\r\ndata: {"type":"message_stop"}\r\n\r\n'
)
EXPECTED = [
    SSEEvent(event="message_start", data={"type": "message_start", "message": {"id": "msg_1"}}),
    SSEEvent(event="content_block_delta", data={"type": "content_block_delta", "delta": {"text": "hi"}}),
    SSEEvent(event="message_stop", data={"type": "message_stop"}),
]


def parse_in_pieces(wire: str, cuts: list[int]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    bounds = [0, *sorted(cuts), len(wire)]
    for start, end in itertools.pairwise(bounds):
        events += parser.feed(wire[start:end])
    return events + parser.flush()


def test_a_crlf_stream_cut_anywhere_gives_the_same_events() -> None:
    # Cuts between "\r" and "\n" used to end an event at the "\r" and start an empty one at the "\n".
    cuts = range(1, len(ANTHROPIC_CRLF))
    torn = [cut for cut in cuts if parse_in_pieces(ANTHROPIC_CRLF, [cut]) != EXPECTED]
    assert torn == []


def test_crlf_split_between_every_cr_and_lf_keeps_event_and_data_together() -> None:
    cuts = [i + 1 for i, ch in enumerate(ANTHROPIC_CRLF) if ch == "\r"]
    assert parse_in_pieces(ANTHROPIC_CRLF, cuts) == EXPECTED


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_random_chunkings_agree_with_one_piece(eol: str) -> None:
    wire = ANTHROPIC_CRLF.replace("\r\n", eol) + f"data: line one{eol}data: line two{eol}{eol}"
    whole = parse_in_pieces(wire, [])
    assert whole[-1] == SSEEvent(text="line one\nline two")
    assert len(whole) == 4
    rng = random.Random(7)
    for _ in range(200):
        cuts = rng.sample(range(1, len(wire)), rng.randint(1, 12))
        assert parse_in_pieces(wire, cuts) == whole


def test_a_cr_ends_its_line_at_once_and_the_lf_after_it_is_not_a_second_line_end() -> None:
    parser = SSEParser()
    # CR-only line ends: the event is complete in this chunk, as the client's parser sees it. An SDK
    # stops reading at the terminal event, so waiting for more would leave the stream unrecorded.
    assert parser.feed("data: [DONE]\r\r") == [SSEEvent(text="[DONE]")]
    assert parser.feed("event: ping\r") == []
    assert parser.feed("\ndata: {}\r") == []  # the LF completes "event: ping\r\n", not a blank line
    assert parser.feed("\n\r\n") == [SSEEvent(event="ping", data={})]
    assert parser.flush() == []


def test_the_recorder_keeps_event_and_data_together_over_cr_lf_splits() -> None:
    recorded: list[object] = []
    recorder = BodyRecorder(
        status=200,
        headers=[("content-type", "text/event-stream")],
        on_complete=recorded.append,
        on_incomplete=lambda reason, failed: recorded.append((reason, failed)),
    )
    wire = ANTHROPIC_CRLF.encode()
    start = 0
    for i, byte in enumerate(wire):
        if byte == ord("\r"):
            recorder.feed(wire[start : i + 1])
            start = i + 1
    recorder.feed(wire[start:])
    (response,) = recorded
    assert getattr(response, "events", None) == EXPECTED  # completed at message_stop, nothing torn


def test_work_per_chunk_is_bounded_by_the_chunk_not_by_the_event() -> None:
    """A 2 MB event in 1 KB chunks: no chunk may make the parser copy the event received so far (which
    is what re-scanning a growing buffer does, 2,000 times over: quadratic in the event's size)."""
    chunk = 1024
    event = 'data: {"text": "' + "x" * (2 * 1024 * 1024) + '"}\n\n'
    pieces = [event[i : i + chunk] for i in range(0, len(event), chunk)]
    parser = SSEParser()
    worst = 0
    tracemalloc.start()
    try:
        for piece in pieces[:-1]:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            assert parser.feed(piece) == []
            _, peak = tracemalloc.get_traced_memory()
            worst = max(worst, peak - before)
    finally:
        tracemalloc.stop()
    (last,) = parser.feed(pieces[-1])
    assert isinstance(last.data, dict)
    text = last.data["text"]
    assert isinstance(text, str)
    assert len(text) == 2 * 1024 * 1024
    assert worst < 16 * chunk, f"one {chunk}-byte chunk allocated {worst} bytes"
