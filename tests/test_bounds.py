"""Bounded costs end to end: streams whose CRLF line ends are split across chunks record and replay
through the real SDKs; a miss against huge prompts or many recordings stays small and quick to make."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from conftest import Suite

from pytest_promptcache import similarity as sim
from pytest_promptcache.miss import miss_message, similarity
from pytest_promptcache.models import CanonicalRequest

WORDS = [f"word{i}" for i in range(300)]


def request(text: str) -> CanonicalRequest:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return CanonicalRequest(method="POST", host="h", path="/v1/chat/completions", body=body)


def long_text(words: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(WORDS) for _ in range(words)]


# -- similarity keeps its meaning --------------------------------------------------------------------------


def test_similarity_keeps_its_meaning() -> None:
    two = "Summarise our refund policy for premium customers in two sentences."
    three = two.replace("two", "three")
    assert 0.9 <= similarity(request(two), request(three)) < 1
    assert similarity(request(two), request("Write a haiku about the sea.")) < 0.3
    assert similarity(request(two), request(two)) == 1.0
    assert similarity(request(""), request("")) == 1.0
    text = long_text(3000)
    changed = list(text)
    changed[1500] = "CHANGED"
    assert similarity(request(" ".join(text)), request(" ".join(changed))) > 0.999


def test_the_bound_for_huge_texts_never_overstates_and_stays_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past EXACT_CELLS, the LCS is bounded below from shared runs: never above the exact one, and
    within a few tokens of it for texts that share long passages."""
    a = long_text(3000)
    b = list(a)
    for i in (100, 900, 2000, 2950):
        b[i] = f"edit{i}"
    del b[1200:1210]
    b[1500:1500] = ["inserted"] * 5
    exact = sim.lcs_length(a, b)
    monkeypatch.setattr(sim, "EXACT_CELLS", 200_000)
    bound = sim.lcs_length(a, b)
    assert exact - 40 <= bound <= exact
    unrelated = long_text(3000, seed=2)
    monkeypatch.setattr(sim, "EXACT_CELLS", 60_000_000)
    exact_far = sim.lcs_length(a, unrelated)
    monkeypatch.setattr(sim, "EXACT_CELLS", 200_000)
    assert sim.lcs_length(a, unrelated) <= exact_far


def test_the_small_lcs_agrees_with_rapidfuzz() -> None:
    from rapidfuzz.distance import LCSseq

    rng = random.Random(3)
    for _ in range(500):
        a = [rng.choice("abcdefg") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcdefg") for _ in range(rng.randint(0, 70))]
        assert sim.lcs_length(a, b) == LCSseq.similarity(a, b)


# -- a miss between long prompts: bounded work and a bounded message ---------------------------------------


def traced(count: list[int], fn: Any) -> Any:
    """Runs ``fn`` counting the lines of Python it runs (C code, e.g. rapidfuzz, counts none): a
    measure of work that does not depend on the machine's speed."""

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            count[0] += 1
        return local

    # Whoever traced before (coverage measuring this suite) traces again afterwards.
    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: local)
    try:
        return fn()
    finally:
        sys.settrace(previous)


def test_a_miss_between_long_prompts_does_linear_work_and_shows_the_change_briefly() -> None:
    """4,000 words each, one changed in the middle. difflib's matcher ran ~10^6 Python lines here (and
    ~10^9 for 32,000 words: 56 s); the diff printed both prompts whole, as one line each."""
    words = long_text(4000)
    changed = list(words)
    changed[2000] = "CHANGED"
    recorded, asked = request(" ".join(words)), request(" ".join(changed))
    lines = [0]
    score = traced(lines, lambda: similarity(recorded, asked))
    message = traced(
        lines,
        lambda: miss_message(
            request=asked,
            key="b" * 64,
            url="https://h/v1/chat/completions",
            directory=Path("cassettes"),
            target="test_x.py::test_y",
            near=("a" * 64, recorded, score),
        ),
    )
    assert score > 0.999
    assert lines[0] < 20 * len(words), f"{lines[0]} Python lines for {len(words)} words"
    assert len(message) < 5_000
    assert max(len(line) for line in message.splitlines()) < 300
    (added,) = [line for line in message.splitlines() if line.startswith("+ ") or line.startswith('+"')]
    assert f"{words[1999]} CHANGED {words[2001]}" in added
    removed = [line for line in message.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert any(f"{words[1999]} {words[2000]} {words[2001]}" in line for line in removed)


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


# -- end to end: misses as a user sees them -----------------------------------------------------------------

LONG_PROMPT = """
import os
from conftest import ask

def test_long(oai0):
    ask(oai0, open(os.environ["PROMPT_FILE"]).read())
"""


def test_a_miss_against_a_long_recorded_prompt_shows_the_changed_word_in_a_short_message(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = long_text(8000)
    prompt_file = clients.path / "prompt.txt"
    prompt_file.write_text(" ".join(words))
    monkeypatch.setenv("PROMPT_FILE", str(prompt_file))
    clients.pytester.makepyfile(LONG_PROMPT)
    clients.run("--promptcache=record").assert_outcomes(passed=1)
    clients.server.stop()

    words[4000] = "CHANGED"
    prompt_file.write_text(" ".join(words))
    result = clients.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "  nearest:   *.json (similarity 1.00, recorded by test_*::test_long)",
            f"+*{words[3999]} CHANGED {words[4001]}*",
        ]
    )
    # The 50 KB prompt is not printed: not in the diff, not twice.
    assert len(result.stdout.str()) < 20_000


def test_a_deeply_nested_file_breaks_no_one_elses_miss(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_recorded(oai0):
            ask(oai0, "Summarise our refund policy in two sentences.")
        """
    )
    clients.run("--promptcache=record").assert_outcomes(passed=1)
    clients.server.stop()
    (clients.cassettes / f"{'d' * 64}.json").write_text("[" * 100_000 + "]" * 100_000)
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_recorded(oai0):
            ask(oai0, "Summarise our refund policy in three sentences.")
        """
    )
    result = clients.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["  nearest:   *.json (similarity 0.8*, recorded by test_*::test_recorded)"])
    assert "RecursionError" not in result.stdout.str()
