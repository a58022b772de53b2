"""A default httpx or httpx2 transport builds its connection pool (httpcore's import, an SSL context with
the CA store loaded: ~16 ms a client) only when a request needs the network. Replayed calls never do;
a request that is not an LLM call still goes out, sync and async (the async build off the event loop,
under blockbuster); and a constructor that fails without the plugin fails with it, at once."""

from __future__ import annotations

import inspect
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import httpx2
import pytest
from conftest import Suite

from pytest_promptcache.clients.httpx_pool import LazyPool, lazy_init

APP = """
import asyncio, os, httpx, httpx2, openai, pytest
from blockbuster import blockbuster_ctx

BASE = os.environ["LLM_URL"]
BODY = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "lazy"}]}


def pool_kind(client):
    return type(client._transport._pool).__name__


@pytest.mark.parametrize("module", [httpx, httpx2])
def test_sync(module):
    with module.Client() as client:
        answer = client.post(BASE + "/v1/chat/completions", json=BODY).json()
        assert answer["object"] == "chat.completion"
        print("AFTER-LLM", module.__name__, pool_kind(client), client._transport._pool)
        # Not an LLM call: it goes to the network, so the pool is built now.
        assert client.get(os.environ["FILES_URL"]).status_code == 200
        print("AFTER-FILE", module.__name__, pool_kind(client))


def test_sdk_client_per_test():
    client = openai.OpenAI(base_url=BASE + "/v1", api_key="sk-test")
    reply = client.chat.completions.create(model="gpt-4.1-mini", messages=BODY["messages"])
    assert reply.choices[0].message.content
    print("SDK", pool_kind(client._client), client._client._transport._pool)
    client.close()


@pytest.fixture
def aclient():
    return httpx2.AsyncClient()  # built outside the loop, as a module or a sync fixture builds it


def test_async_under_blockbuster(aclient):
    async def go():
        with blockbuster_ctx():
            async with aclient:
                answer = (await aclient.post(BASE + "/v1/chat/completions", json=BODY)).json()
                lazy = str(aclient._transport._pool)
                status = (await aclient.get(os.environ["FILES_URL"])).status_code
                return answer["object"], lazy, status, pool_kind(aclient)
    print("ASYNC", asyncio.run(go()))
"""


@pytest.fixture
def app(clients: Suite, files_url: str, monkeypatch: pytest.MonkeyPatch) -> Suite:
    # Another server than the LLM's: replay's guard refuses connections to the host the recordings name.
    monkeypatch.setenv("FILES_URL", files_url)
    clients.pytester.makepyfile(test_lazy=APP)
    return clients


def lines(result: pytest.RunResult, tag: str) -> list[str]:
    # With -s, a line printed by the first test follows pytest's progress on the same line.
    return [line[line.index(tag) :] for line in result.outlines if tag in line]


def test_replay_never_builds_the_pool_and_other_requests_still_go_out(app: Suite) -> None:
    app.run("--promptcache=record").assert_outcomes(passed=4)
    before = app.server.count()
    result = app.run("-s")
    result.assert_outcomes(passed=4)
    assert "BlockingError" not in result.stdout.str()
    assert app.server.count() == before  # every LLM call replayed
    assert lines(result, "AFTER-LLM") == [
        "AFTER-LLM httpx LazyPool <LazyPool built=False>",
        "AFTER-LLM httpx2 LazyPool <LazyPool built=False>",
    ]
    built = ["AFTER-FILE httpx ConnectionPool", "AFTER-FILE httpx2 ConnectionPool"]
    assert lines(result, "AFTER-FILE") == built
    assert lines(result, "SDK") == ["SDK LazyPool <LazyPool built=False>"]
    assert lines(result, "ASYNC") == [
        "ASYNC ('chat.completion', '<LazyPool built=False>', 200, 'AsyncConnectionPool')"
    ]


CONSTRUCTORS = """
import asyncio, httpx2, pytest

def kind(**kwargs):
    return type(httpx2.Client(**kwargs)._transport._pool).__name__

def test_what_can_fail_is_built_at_once(monkeypatch):
    assert kind() == "LazyPool"
    assert kind(verify=False) == "ConnectionPool"
    assert type(httpx2.HTTPTransport(proxy="http://127.0.0.1:9")._pool).__name__ == "HTTPProxy"
    assert kind(verify=False, trust_env=False) == "ConnectionPool"
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    with pytest.raises(FileNotFoundError):
        httpx2.Client()
    assert kind(trust_env=False) == "LazyPool"  # the variable is not read then
    monkeypatch.delenv("SSL_CERT_FILE")
    monkeypatch.setenv("SSL_CERT_DIR", "/nonexistent/certs")
    assert kind() == "ConnectionPool"  # httpx would read the directory: built as it builds it
    monkeypatch.setenv("SSL_CERT_DIR", "/")
    assert kind() == "LazyPool"

    async def on_the_loop():
        return type(httpx2.AsyncClient()._transport._pool).__name__

    # No stat of the store on an event loop (blockbuster fails one): built at once there.
    assert asyncio.run(on_the_loop()) == "AsyncConnectionPool"
"""


def test_a_constructor_that_can_fail_is_built_at_once(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    suite.pytester.makepyfile(test_constructors=CONSTRUCTORS)
    suite.run().assert_outcomes(passed=1)


class _Files(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def files_url() -> Any:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/f"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("module", [httpx, httpx2])
def test_a_lazy_pool_works_with_no_session_and_closes_what_it_built(
    module: Any, files_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transport made during a session keeps working after it: the pool holds the real __init__."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    original = inspect.unwrap(module.HTTPTransport.__init__)
    transport = module.HTTPTransport.__new__(module.HTTPTransport)
    lazy_init(module, original)(transport)
    lazy = transport._pool
    assert isinstance(lazy, LazyPool)
    lazy.close()  # closing what was never built builds nothing
    assert repr(lazy) == "<LazyPool built=False>"
    with module.Client(transport=transport) as client:
        assert client.get(files_url).text == "ok"
    assert type(transport._pool).__name__ == "ConnectionPool"
    assert repr(lazy) == "<LazyPool built=True>"
    assert lazy.connections == []  # asked of the real pool: closed, as the client's exit closed it
