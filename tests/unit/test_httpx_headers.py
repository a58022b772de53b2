"""A request's headers as the engine sees them: decoded as httpx decodes them, whatever their bytes."""

from __future__ import annotations

import httpx
import httpx2
import pytest

from pytest_promptcache.clients.httpx_send import raw_request


@pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize(
    "value",
    [b"plain ascii", "caf\u00e9 \u2603".encode(), b"latin-1 \xe9\xff"],
    ids=["ascii", "utf-8", "latin-1"],
)
def test_headers_are_decoded_as_the_client_decodes_them(module: object, value: bytes) -> None:
    headers = [(b"Authorization", b"Bearer sk-test-0123456789"), (b"X-Title", value), (b"Accept", b"*/*")]
    request = module.Request("POST", "https://api.example.test/v1/x?a=1", headers=headers)  # type: ignore[attr-defined]
    raw = raw_request(request, b"{}")
    assert raw.headers == tuple((k.lower(), v) for k, v in request.headers.multi_items())
    assert raw.header("x-title") == request.headers["x-title"]
    assert raw.query == (("a", "1"),)
