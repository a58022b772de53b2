"""Tests that mock HTTP themselves keep working once the plugin is installed."""

from __future__ import annotations

from conftest import Suite


def test_respx_mocked_llm_calls_are_left_to_respx(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import httpx, respx, asyncio

        URL = "https://api.openai.com/v1/chat/completions"

        @respx.mock
        def test_sync_mocked():
            respx.post(URL).mock(return_value=httpx.Response(200, json={"id": "mocked"}))
            assert httpx.post(URL, json={"model": "m"}).json() == {"id": "mocked"}

        def test_async_mocked():
            async def go():
                with respx.mock:
                    respx.post(URL).mock(return_value=httpx.Response(200, json={"id": "amocked"}))
                    async with httpx.AsyncClient() as client:
                        return (await client.post(URL, json={"model": "m"})).json()
            assert asyncio.run(go()) == {"id": "amocked"}
        """
    )
    result = clients.run()
    result.assert_outcomes(passed=2)
    assert "LLM calls" not in result.stdout.str()
    assert not clients.cassettes.exists()


def test_interception_resumes_after_a_respx_test(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import os, httpx, respx

        URL = os.environ["LLM_URL"] + "/v1/chat/completions"
        BODY = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "after respx"}]}

        def test_mocked():
            with respx.mock:
                respx.post(URL).mock(return_value=httpx.Response(200, json={"id": "mocked"}))
                assert httpx.post(URL, json=BODY).json() == {"id": "mocked"}

        def test_real():
            assert httpx.post(URL, json=BODY).json()["id"] != "mocked"
        """
    )
    clients.run("--promptcache=record").stdout.fnmatch_lines(["mode record: 1 LLM call: 1 live (1 recorded)"])
    assert len(clients.recordings()) == 1
