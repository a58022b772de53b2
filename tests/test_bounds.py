"""Bounded costs end to end: streams whose CRLF line ends are split across chunks record and replay
through the real SDKs; a miss against huge prompts or many recordings stays small and quick to make."""

from __future__ import annotations

from typing import Any

from conftest import Suite

CRLF_STREAMS = """
from conftest import ask

def test_anthropic_stream(claude):
    with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=32,
                                messages=[{"role": "user", "content": "hello over crlf"}]) as stream:
        assert stream.get_final_text() == "echo: hello over crlf"

def test_responses_stream(oai0):
    events = list(oai0.responses.create(model="gpt-4.1-mini", input="responses over crlf", stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "echo: responses over crlf"

def test_chat_stream(oai0):
    chunks = ask(oai0, "chat over crlf", stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: chat over crlf"
"""


def test_streams_with_crlf_split_across_chunks_record_whole_events_and_replay(clients: Suite) -> None:
    clients.server.sse_crlf_split = True
    clients.pytester.makepyfile(CRLF_STREAMS)
    clients.run("--promptcache=record").assert_outcomes(passed=3)
    recordings = clients.recordings()
    assert len(recordings) == 3
    for data in recordings.values():
        events: list[dict[str, Any]] = data["response"]["events"]
        # Every event kept its data; a torn one would be an event name alone, then data alone.
        assert all("data" in ev or "text" in ev for ev in events), events
        if data["request"]["path"] != "/v1/chat/completions":
            assert all(ev["event"] == ev["data"]["type"] for ev in events), events
    clients.server.stop()
    clients.run().assert_outcomes(passed=3)
