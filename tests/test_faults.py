"""What is not recorded: failures the provider may not repeat, and bodies that never completed."""

from __future__ import annotations

import pytest
from conftest import Suite


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("fault-500", "InternalServerError"),
        ("fault-429", "RateLimitError"),
        ("fault-401", "AuthenticationError"),
    ],
)
def test_transient_and_auth_failures_reach_the_client_and_are_not_recorded(
    clients: Suite, model: str, error: str
) -> None:
    clients.pytester.makepyfile(
        f"""
        import openai, pytest
        from conftest import ask

        def test_fault(oai0):
            with pytest.raises(openai.{error}):
                ask(oai0, "hello", model="{model}")
        """
    )
    result = clients.run("--promptcache=record")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["mode record: 1 LLM call: 1 live (1 failed)"])
    assert not clients.cassettes.exists() or not any(clients.cassettes.iterdir())


def test_deterministic_client_errors_are_recorded_and_replayed(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import openai, pytest
        from conftest import ask

        def test_bad_request(oai0):
            with pytest.raises(openai.BadRequestError) as info:
                ask(oai0, "hello", model="fault-400")
            print("REQUEST-ID", info.value.response.headers["x-request-id"])
        """
    )
    recorded = clients.run("--promptcache=record", "-s")
    recorded.assert_outcomes(passed=1)
    (data,) = clients.recordings().values()
    assert data["response"]["status"] == 400
    clients.server.stop()
    replayed = clients.run("-s")
    replayed.assert_outcomes(passed=1)
    live_id = next(line for line in recorded.outlines if "REQUEST-ID" in line)
    assert live_id in replayed.outlines


def test_stream_cut_midway_is_not_recorded(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import openai, pytest
        from conftest import ask

        def test_cut(oai0):
            with pytest.raises(openai.APIConnectionError):
                for _ in ask(oai0, "cut me", model="fault-cut", stream=True):
                    pass

        def test_cut_body(oai0):
            with pytest.raises(openai.APIConnectionError):
                ask(oai0, "cut me too", model="fault-cut")
        """
    )
    result = clients.run("--promptcache=record")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["mode record: 2 LLM calls: 2 live (2 failed)"])
    assert clients.recordings() == {}


def test_abandoned_stream_is_not_recorded_and_chunks_are_not_buffered(clients: Suite) -> None:
    # The server sends one event, then holds the rest back until the client leaves (at most 50 chunk
    # delays). A recorder that buffered would make the client wait out the hold and receive everything;
    # one that passes chunks on as they arrive lets it leave with the server having sent one event.
    clients.server.chunk_delay = 0.6
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_first_chunk_then_leave(oai0):
            stream = ask(oai0, "long story", model="fault-hang-after-first", stream=True)
            first = next(iter(stream))
            assert first.choices[0].delta.role == "assistant"
            stream.close()
        """
    )
    result = clients.run("--promptcache=record")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["mode record: 1 LLM call: 1 live"])
    assert clients.recordings() == {}
    (request,) = clients.server.requests
    request.finished.wait()  # bounded by the server's hold
    assert (request.events_sent, request.client_left) == (1, True)


def test_transport_error_while_recording_is_not_recorded(clients: Suite) -> None:
    clients.server.stop()
    clients.pytester.makepyfile(
        """
        import openai, pytest
        from conftest import ask

        def test_down(oai0):
            with pytest.raises(openai.APIConnectionError):
                ask(oai0, "anyone there?")
        """
    )
    result = clients.run("--promptcache=record")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["mode record: 1 LLM call: 1 live (1 failed)"])
    assert not clients.cassettes.exists()


def test_stream_closed_after_its_terminal_event_is_recorded(clients: Suite) -> None:
    # The openai SDK stops reading at [DONE] and closes: that stream is complete.
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_stream(oai0):
            with ask(oai0, "complete stream", stream=True) as stream:
                text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text == "echo: complete stream"
        """
    )
    clients.run("--promptcache=record").assert_outcomes(passed=1)
    (data,) = clients.recordings().values()
    assert data["response"]["events"][-1] == {"text": "[DONE]"}
