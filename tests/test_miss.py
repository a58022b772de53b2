"""A replay miss fails its test at once, with the diff against the nearest recording and the command."""

from __future__ import annotations

import pytest
from conftest import Suite


@pytest.mark.slow
def test_changed_prompt_fails_exactly_that_test_with_diff_and_command(newcomer: Suite) -> None:
    newcomer.run("--promptcache=record").assert_outcomes(passed=19)
    newcomer.server.stop()
    app = newcomer.path / "test_app.py"
    app.write_text(app.read_text().replace('"content": "Say hello"}', '"content": "Say hello, please"}'))

    result = newcomer.run()
    result.assert_outcomes(passed=18, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_openai_chat _*",
            "promptcache: no recording for this request (mode: replay)",
            "  request:   POST http://127.0.0.1:*/v1/chat/completions",
            "  model:     gpt-4.1-mini",
            "  key:       *",
            f"  cassettes: {newcomer.cassettes}",
            "  nearest:   *.json (similarity 0.*, recorded by test_app.py::test_openai_chat)",
            "--- recorded *",
            "+++ this request *",
            '-        "content": "Say hello",',
            '+        "content": "Say hello, please",',
            "To record it, run with the API reachable and its key set:",
            "  pytest --promptcache=record test_app.py::test_openai_chat",
            "The test then raised: openai.NotFoundError: Error code: 404 *",
        ]
    )
    # The SDK (default max_retries=2) did not retry: one attempt, one miss, no backoff.
    result.stdout.fnmatch_lines(["mode replay: 20 LLM calls: 19 replayed, 1 missed"])
    assert "APIConnectionError" not in result.stdout.str()


def test_miss_fails_the_test_even_when_the_code_catches_the_error(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import anthropic
        import openai
        from conftest import ask

        def test_swallows_openai(oai):
            try:
                ask(oai, "never recorded")
            except openai.APIError:
                pass

        def test_swallows_anthropic(claude):
            try:
                claude.messages.create(model="claude-sonnet-4-6", max_tokens=8,
                                       messages=[{"role": "user", "content": "nope"}])
            except Exception:
                pass
        """
    )
    result = clients.run()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*nearest:   none (no recording of POST 127.0.0.1:*/v1/chat/completions)*"])
    result.stdout.fnmatch_lines(["*pytest --promptcache=record test_miss_*.py::test_swallows_anthropic"])
    result.stdout.fnmatch_lines(["mode replay: 2 LLM calls: 2 missed"])
    assert clients.server.count() == 0


def test_miss_in_a_fixture_is_an_error_of_that_test(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import pytest
        from conftest import ask

        @pytest.fixture
        def answer(oai):
            return ask(oai, "from a fixture")

        def test_uses_it(answer):
            pass

        def test_other():
            pass
        """
    )
    result = clients.run()
    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_uses_it*", "promptcache: no recording*"])


def test_async_and_streaming_misses_fail_the_same_way(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import asyncio, os
        import openai
        from conftest import ask

        def test_stream(oai):
            for _ in ask(oai, "unrecorded stream", stream=True):
                pass

        def test_async():
            async def go():
                client = openai.AsyncOpenAI(base_url=os.environ["LLM_URL"] + "/v1")
                await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            asyncio.run(go())
        """
    )
    result = clients.run()
    result.assert_outcomes(failed=2)
    assert result.stdout.lines.count("promptcache: no recording for this request (mode: replay)") == 2
    result.stdout.fnmatch_lines(["mode replay: 2 LLM calls: 2 missed"])
