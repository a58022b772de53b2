"""Modes, their precedence, per-test markers, endpoint selection, and clean usage errors."""

from __future__ import annotations

import httpx
import httpx2
import pytest
from conftest import Suite

ONE_CALL = """
from conftest import ask

def test_call(oai0):
    print("ID", ask(oai0, "hello modes").id)
"""


def ids(result: pytest.RunResult) -> list[str]:
    return [line.split("ID ", 1)[1].strip(".") for line in result.outlines if "ID " in line]


@pytest.mark.slow
def test_record_then_rewrite_overwrites_and_off_touches_nothing(clients: Suite) -> None:
    clients.pytester.makepyfile(ONE_CALL)
    first = ids(clients.run("--promptcache=record", "-s"))
    again = ids(clients.run("--promptcache=record", "-s"))
    assert first == again
    assert clients.server.count() == 1

    rewritten = ids(clients.run("--promptcache=rewrite", "-s"))
    assert rewritten != first
    assert clients.server.count() == 2
    (data,) = clients.recordings().values()
    assert data["response"]["body"]["id"] == rewritten[0]

    before = clients.cassette_text()
    off = ids(clients.run("--promptcache=off", "-s"))
    assert off not in (first, rewritten)
    assert clients.server.count() == 3
    assert clients.cassette_text() == before


def test_precedence_is_cli_then_env_then_ini(clients: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    clients.pytester.makepyfile(ONE_CALL)
    clients.pytester.makeini("[pytest]\npromptcache_mode = off\n")
    clients.run().stdout.fnmatch_lines(["mode off: 1 LLM call: 1 live"])
    monkeypatch.setenv("PROMPTCACHE_MODE", "record")
    clients.run().stdout.fnmatch_lines(["mode record: 1 LLM call: 1 live (1 recorded)"])
    clients.run("--promptcache=replay").stdout.fnmatch_lines(["mode replay: 1 LLM call: 1 replayed"])


def test_marker_sets_the_mode_of_one_test(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import pytest
        from conftest import ask

        @pytest.mark.promptcache(mode="record")
        def test_records_itself(oai0):
            ask(oai0, "marked")

        @pytest.mark.promptcache(mode="off")
        def test_always_live(oai0):
            ask(oai0, "always live")
        """
    )
    clients.run().assert_outcomes(passed=2)
    clients.run().assert_outcomes(passed=2)
    assert len(clients.recordings()) == 1
    assert clients.server.count("/chat/completions") == 3


@pytest.mark.parametrize(
    ("args", "ini", "env", "expected"),
    [
        (
            ["--promptcache=replya"],
            "",
            "",
            "--promptcache: unknown mode 'replya'; valid modes are replay, record, rewrite, off",
        ),
        (
            [],
            "promptcache_mode = recrod",
            "",
            "ini promptcache_mode: unknown mode 'recrod'; valid modes are *",
        ),
        ([], "", "live", "PROMPTCACHE_MODE: unknown mode 'live'; valid modes are *"),
        (
            [],
            "promptcache_endpoints = api.example.com",
            "",
            "promptcache_endpoints: 'api.example.com' is not a pattern*",
        ),
        (
            [],
            "promptcache_key_headers = authorization",
            "",
            "promptcache_key_headers: authorization carry secrets*",
        ),
        (
            [],
            "promptcache_secret_patterns = sk-(",
            "",
            "*promptcache_secret_patterns: 'sk-(' is not a regex*",
        ),
    ],
)
def test_bad_settings_are_usage_errors_that_say_what_is_valid(
    clients: Suite, monkeypatch: pytest.MonkeyPatch, args: list[str], ini: str, env: str, expected: str
) -> None:
    clients.pytester.makepyfile(ONE_CALL)
    if ini:
        clients.pytester.makeini(f"[pytest]\n{ini}\n")
    if env:
        monkeypatch.setenv("PROMPTCACHE_MODE", env)
    result = clients.run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-promptcache: {expected}"])


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        (
            'mode="sometimes"',
            "*@pytest.mark.promptcache(mode=...): unknown mode 'sometimes'; valid modes are *",
        ),
        (
            "modes='record'",
            "*got unknown argument(s) modes; valid ones are: mode, normalize, ignore_fields, scope",
        ),
        (
            "'record'",
            "*takes keyword arguments only (mode, normalize, ignore_fields, scope), got ('record',)",
        ),
    ],
)
def test_bad_marker_arguments_are_usage_errors(clients: Suite, marker: str, expected: str) -> None:
    clients.pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.promptcache({marker})
        def test_marked():
            pass
        """
    )
    result = clients.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_other_requests_pass_through_even_in_replay(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import os, httpx, httpx2

        def test_health():
            assert httpx.get(os.environ["LLM_URL"] + "/health").status_code == 404
            assert httpx2.get(os.environ["LLM_URL"] + "/v1/models").status_code == 404
        """
    )
    result = clients.run()
    result.assert_outcomes(passed=1)
    assert clients.server.count() == 2
    assert "LLM calls" not in result.stdout.str()
    assert not clients.cassettes.exists()


def test_endpoints_ini_extends_or_replaces_the_defaults(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        import os, httpx
        from conftest import ask

        def test_rerank_and_chat(oai0):
            httpx.post(os.environ["LLM_URL"] + "/v1/rerank", json={"query": "q"})
            ask(oai0, "chat")
        """
    )
    clients.pytester.makeini("[pytest]\npromptcache_endpoints =\n    defaults\n    /v1/rerank\n")
    clients.run("--promptcache=record").stdout.fnmatch_lines(
        ["mode record: 2 LLM calls: 2 live (2 recorded)"]
    )

    # Chat is no longer an LLM endpoint: with the guard off it passes through to the server...
    clients.pytester.makeini("[pytest]\npromptcache_endpoints = /v1/rerank\npromptcache_guard = off\n")
    clients.run().stdout.fnmatch_lines(["mode replay: 1 LLM call: 1 replayed"])
    assert clients.server.count("/chat/completions") == 2
    # ...and with it on (the default), replay refuses to reach the host the recordings were made on.
    clients.pytester.makeini("[pytest]\npromptcache_endpoints = /v1/rerank\n")
    result = clients.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["mode replay: 2 LLM calls: 1 replayed, 1 refused*"])
    assert clients.server.count("/chat/completions") == 2


def test_cassette_dir_option_and_ini(clients: Suite) -> None:
    clients.pytester.makepyfile(ONE_CALL)
    clients.run("--promptcache=record", "--promptcache-dir=recs/llm").assert_outcomes(passed=1)
    assert len(list((clients.path / "recs" / "llm").glob("*.json"))) == 1
    clients.pytester.makeini("[pytest]\npromptcache_dir = recs/llm\n")
    clients.run().stdout.fnmatch_lines(["mode replay: 1 LLM call: 1 replayed"])


def test_interception_is_undone_when_the_session_ends(clients: Suite) -> None:
    originals = [
        (module.HTTPTransport.handle_request, module.AsyncHTTPTransport.handle_async_request)
        for module in (httpx, httpx2)
    ]
    clients.pytester.makepyfile(
        """
        import httpx, httpx2

        def test_patched_during_the_session():
            for module in (httpx, httpx2):
                for method in (module.HTTPTransport.handle_request,
                               module.AsyncHTTPTransport.handle_async_request):
                    assert method.__module__ == "pytest_promptcache.clients.httpx"
        """
    )
    clients.run().assert_outcomes(passed=1)
    assert originals == [
        (module.HTTPTransport.handle_request, module.AsyncHTTPTransport.handle_async_request)
        for module in (httpx, httpx2)
    ]


def test_start_up_imports_neither_pydantic_nor_httpx_and_patches_on_import(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A suite that makes no LLM call pays almost nothing; a client imported mid-test is still caught."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    clients.pytester.makeconftest("")
    clients.pytester.makepyfile(
        """
        import os, sys

        def test_lazy():
            assert not {"pydantic", "httpx", "httpx2"} & set(sys.modules)
            import httpx
            assert httpx.HTTPTransport.handle_request.__module__ == "pytest_promptcache.clients.httpx"
            url = os.environ["LLM_URL"] + "/v1/chat/completions"
            reply = httpx.post(url, json={"model": "m", "messages": [{"role": "user", "content": "late"}]})
            assert reply.status_code == 404 and reply.headers["x-promptcache"] == "miss"
        """
    )
    result = clients.run("-p", "pytest_promptcache.plugin", "-p", "no:cacheprovider", subprocess=True)
    result.assert_outcomes(failed=1)  # the miss fails the test, as it must
    result.stdout.fnmatch_lines(["promptcache: no recording for this request (mode: replay)"])
    assert clients.server.count() == 0


def test_patching_an_already_imported_client_imports_nothing_heavy(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plugins such as respx import httpx before us: patching it must still not pull in pydantic."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    clients.pytester.makeconftest("import httpx\n")
    clients.pytester.makepyfile(
        """
        import sys, httpx

        def test_light():
            assert httpx.HTTPTransport.handle_request.__module__ == "pytest_promptcache.clients.httpx"
            assert "pydantic" not in sys.modules
        """
    )
    result = clients.run("-p", "pytest_promptcache.plugin", "-p", "no:cacheprovider", subprocess=True)
    result.assert_outcomes(passed=1)
