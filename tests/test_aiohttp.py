"""aiohttp-based clients, end to end: raw aiohttp, litellm's async path and google-genai's async client
record against the loopback server, replay offline with what live gave (chunk for chunk), never reach
the server in replay, fail on a changed prompt, and report tokens and dollars."""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp  # noqa: F401  (imported here so pytester's in-process runs reuse it, like the SDKs)
import genai_prices
import pytest
from conftest import MISS, SUITES, Suite, assert_each_failed_on_the_miss

from pytest_promptcache.clients import aiohttp as adapter
from pytest_promptcache.clients.registry import install, uninstall
from pytest_promptcache.prices import usd

TESTS = 14
# The four gathered identical requests are one live call: every other test makes one distinct request.
CALLS = 17
DISTINCT = 14


@pytest.fixture(scope="module", autouse=True)
def sdks_imported() -> Iterator[None]:
    """litellm takes seconds to import: once per module, so the in-process runs find it loaded. Its
    price map would be fetched from the network at import without this variable."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        importlib.import_module("litellm")
        importlib.import_module("google.genai")
        importlib.import_module("blockbuster")
        yield


@pytest.fixture
def app(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> Suite:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    for source in (SUITES / "aiohttp_app").iterdir():
        if source.is_file():
            shutil.copy(source, suite.path / source.name)
    return suite


def run(app: Suite, *args: str) -> pytest.RunResult:
    result = app.run("--promptcache-report=report.json", *args)
    assert "BlockingError" not in result.stdout.str() + result.stderr.str()
    return result


def totals(app: Suite) -> dict[str, Any]:
    return json.loads((app.path / "report.json").read_text())["totals"]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_record_then_replay_gives_what_live_gave_and_never_reaches_the_server(app: Suite) -> None:
    # Events 20 ms apart arrive whole, one HTTP chunk each: the live client sees the server's chunking.
    app.server.chunk_delay = 0.02
    run(app, "--promptcache=record").assert_outcomes(passed=TESTS)
    live = app.seen()
    assert app.server.count() == DISTINCT
    assert len(app.recordings()) == DISTINCT
    recorded = totals(app)
    assert (recorded["calls"], recorded["live"], recorded["recorded"]) == (CALLS, DISTINCT, DISTINCT)

    run(app).assert_outcomes(passed=TESTS)
    assert app.server.count() == DISTINCT  # reachable, and asked nothing
    replayed = totals(app)
    assert (replayed["calls"], replayed["replayed"], replayed["live"]) == (CALLS, CALLS, 0)
    assert app.seen() == live

    app.server.stop()
    run(app).assert_outcomes(passed=TESTS)
    assert app.seen() == live
    offline = totals(app)
    assert recorded["input_tokens"] > 0
    assert recorded["output_tokens"] > 0
    for field in ("input_tokens", "output_tokens", "calls_without_usage", "unpriced_calls"):
        assert offline[field] == recorded[field], field
    assert offline["saved_usd"] == pytest.approx(recorded["spent_usd"], rel=1e-9)


@pytest.mark.slow
def test_a_changed_prompt_fails_every_client_with_the_miss_even_when_the_test_catches_it(
    app: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(app, "--promptcache=record").assert_outcomes(passed=TESTS)
    sent = app.server.count()
    monkeypatch.setenv("AIOHTTP_SUITE_CHANGE", " (changed)")
    result = run(app)
    # Every test swallows what its client raised; each fails all the same, on the miss.
    result.assert_outcomes(failed=TESTS)
    assert app.server.count() == sent
    assert_each_failed_on_the_miss(result, TESTS, "(changed)")
    assert totals(app)["misses"] == CALLS


def test_a_gemini_stream_over_aiohttp_is_priced_in_the_report(app: Suite) -> None:
    only = ("-k", "test_gemini_generate_content_stream")
    run(app, "--promptcache=record", *only).assert_outcomes(passed=1, deselected=TESTS - 1)
    (request,) = app.server.requests
    usage = request.sent_usage
    model = json.loads((app.path / "report.json").read_text())["by_model"]["gemini-2.5-flash"]
    assert (model["input_tokens"], model["output_tokens"]) == (
        usage["promptTokenCount"],
        usage["candidatesTokenCount"],
    )
    price = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage["promptTokenCount"], output_tokens=usage["candidatesTokenCount"]
        ),
        "gemini-2.5-flash",
        provider_id="google",
        genai_request_timestamp=datetime.fromtimestamp(request.received_at, UTC),
    )
    assert price.total_price > 0
    assert abs(Decimal(str(model["spent_usd"])) - price.total_price) <= price.total_price / 100

    app.server.stop()
    result = run(app, "-v", *only)
    result.assert_outcomes(passed=1, deselected=TESTS - 1)
    replayed = totals(app)
    assert replayed["replayed"] == 1
    assert replayed["saved_usd"] == pytest.approx(model["spent_usd"], rel=1e-9)
    tokens_in, tokens_out = usage["promptTokenCount"], usage["candidatesTokenCount"]
    result.stdout.fnmatch_lines(
        [
            f"tokens: {tokens_in} in, {tokens_out} out",
            f"spent $0.00 on live calls, saved {usd(replayed['saved_usd'])} by replay",
            f"gemini-2.5-flash * 1 * {tokens_in} * 0 * {tokens_out} * $0.00 * {usd(replayed['saved_usd'])}",
        ]
    )


def test_the_recording_tee_hands_on_each_chunk_as_it_arrives(suite: Suite) -> None:
    # The server sends one event, then holds the rest back for 50 x chunk_delay. A tee that gathered
    # the body before passing it on would have read it to its end, and saved it; the client leaving
    # after the first chunk leaves an abandoned stream, which is never saved.
    suite.server.chunk_delay = 0.05
    suite.pytester.makepyfile(
        """
        import asyncio, os, aiohttp

        def test_first_chunk_then_leave():
            async def go():
                body = {"model": "gpt-4.1-mini+fault-hang-after-first", "stream": True,
                        "messages": [{"role": "user", "content": "a long story"}]}
                async with aiohttp.ClientSession() as http:
                    async with http.post(os.environ["LLM_URL"] + "/v1/chat/completions", json=body) as r:
                        first = await r.content.readany()
                        assert first.startswith(b"data: ") and not r.content.at_eof()
            asyncio.run(go())
        """
    )
    result = suite.run("--promptcache=record", "--promptcache-report=report.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["mode record: 1 LLM call: 1 live"])
    assert suite.recordings() == {}
    report = json.loads((suite.path / "report.json").read_text())
    assert len(report["not_saved"]) == 1


CROSS = """
import asyncio, os, aiohttp, httpx

URL = os.environ["LLM_URL"] + "/v1/chat/completions"
BODY = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "one recording, two clients"}]}

def test_call(seen):
    async def go():
        if os.environ["CLIENT"] == "aiohttp":
            async with aiohttp.ClientSession() as http, http.post(URL, json=BODY) as r:
                return await r.json()
        async with httpx.AsyncClient() as http:
            return (await http.post(URL, json=BODY)).json()
    seen.append(asyncio.run(go()))
"""


@pytest.mark.parametrize(("recorder", "replayer"), [("aiohttp", "httpx"), ("httpx", "aiohttp")])
def test_a_recording_made_through_one_library_replays_through_the_other(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, recorder: str, replayer: str
) -> None:
    for name in ("conftest.py", "suite_support.py"):
        shutil.copy(SUITES / "aiohttp_app" / name, suite.path / name)
    suite.pytester.makepyfile(test_cross=CROSS)
    monkeypatch.setenv("CLIENT", recorder)
    suite.run("--promptcache=record").assert_outcomes(passed=1)
    live = suite.seen()
    suite.server.stop()
    monkeypatch.setenv("CLIENT", replayer)
    suite.run().assert_outcomes(passed=1)
    assert suite.seen() == live


def test_requests_to_other_endpoints_pass_straight_through(suite: Suite) -> None:
    suite.pytester.makepyfile(
        """
        import asyncio, os, aiohttp

        def test_not_an_llm_call():
            async def go():
                async with aiohttp.ClientSession() as http:
                    async with http.get(os.environ["LLM_URL"] + "/v1/models") as r:
                        return r.status
            assert asyncio.run(go()) == 404  # the server's own answer: it has no such route
        """
    )
    result = suite.run()
    result.assert_outcomes(passed=1)
    assert suite.server.count() == 1
    assert "LLM calls" not in result.stdout.str()


def test_aioresponses_mocks_are_left_to_aioresponses_and_interception_resumes(suite: Suite) -> None:
    suite.pytester.makepyfile(
        """
        import asyncio, os
        import aiohttp
        from aioresponses import aioresponses

        URL = os.environ["LLM_URL"] + "/v1/chat/completions"
        BODY = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "after the mock"}]}


        class Response(aiohttp.ClientResponse):
            # aioresponses 0.7.9 predates aiohttp 3.14, which hands every response the request's writer.
            def __init__(self, *args, **kwargs):
                class Sent:
                    output_size = 0
                kwargs.setdefault("stream_writer", Sent())
                super().__init__(*args, **kwargs)


        async def post():
            async with aiohttp.ClientSession() as http, http.post(URL, json=BODY) as r:
                return await r.json()

        def test_mocked():
            with aioresponses() as mock:
                mock.post(URL, payload={"id": "mocked"}, response_class=Response)
                assert asyncio.run(post()) == {"id": "mocked"}

        def test_real():
            assert asyncio.run(post())["id"] != "mocked"
        """
    )
    suite.run("--promptcache=record").stdout.fnmatch_lines(["mode record: 1 LLM call: 1 live (1 recorded)"])
    assert suite.server.count() == 1
    assert len(suite.recordings()) == 1


def test_start_up_leaves_aiohttp_alone_and_patches_it_on_import(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    suite.pytester.makepyfile(
        """
        import asyncio, os, sys

        def test_late_import():
            assert not {"aiohttp", "pydantic"} & set(sys.modules)
            import aiohttp
            assert aiohttp.ClientSession._request.__module__ == "pytest_promptcache.clients.aiohttp"

            async def go():
                body = {"model": "m", "messages": [{"role": "user", "content": "late"}]}
                async with aiohttp.ClientSession() as http:
                    async with http.post(os.environ["LLM_URL"] + "/v1/chat/completions", json=body) as r:
                        return r.status, r.headers["x-promptcache"]
            assert asyncio.run(go()) == (404, "miss")
        """
    )
    result = suite.run("-p", "pytest_promptcache.plugin", subprocess=True)
    result.assert_outcomes(failed=1)  # the miss fails the test, as it must
    result.stdout.fnmatch_lines([MISS])
    assert suite.server.count() == 0


def test_record_retries_resend_the_request_through_aiohttp(suite: Suite) -> None:
    # fault-flaky: the first request with a given body gets a 429, the next one succeeds.
    suite.pytester.makeini("[pytest]\npromptcache_record_retries = 2\n")
    suite.pytester.makepyfile(
        """
        import asyncio, os, aiohttp

        def test_flaky():
            async def go():
                body = {"model": "gpt-4.1-mini+fault-flaky",
                        "messages": [{"role": "user", "content": "again"}]}
                async with aiohttp.ClientSession() as http:
                    async with http.post(os.environ["LLM_URL"] + "/v1/chat/completions", json=body) as r:
                        return r.status, (await r.json())["choices"][0]["message"]["content"]
            assert asyncio.run(go()) == (200, "echo: again")
        """
    )
    suite.run("--promptcache=record").assert_outcomes(passed=1)
    assert [r.json["model"] for r in suite.server.requests] == ["gpt-4.1-mini+fault-flaky"] * 2
    assert len(suite.recordings()) == 1


class _Everything:
    """A session that takes every request for an LLM call."""

    started_engine = None

    def handles(self, host: str, path: str) -> bool:
        return True

    def engine(self) -> Any:
        raise AssertionError("never reached: the request is refused first")

    def refuse_connection(self, host: str, port: int | None, *, may_wait: bool) -> str | None:
        return None


def test_an_aiohttp_without_middlewares_refuses_llm_calls_with_what_to_do() -> None:
    import asyncio

    from yarl import URL

    async def old_request(session: Any, method: str, str_or_url: Any, **kwargs: Any) -> str:
        return "sent"

    class OldSession:
        def _build_url(self, url: str) -> URL:
            return URL(url)

    wrapped = adapter.AiohttpAdapter()._wrapper(old_request)
    source = _Everything()
    install(source, ())
    try:
        with pytest.raises(RuntimeError, match=r"pip install -U 'aiohttp>=3\.12'"):
            asyncio.run(wrapped(OldSession(), "POST", "http://llm.test/v1/chat/completions"))
    finally:
        uninstall(source)
    assert asyncio.run(wrapped(OldSession(), "POST", "http://llm.test/v1/chat/completions")) == "sent"
