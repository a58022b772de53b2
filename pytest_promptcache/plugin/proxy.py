"""The ``promptcache_proxy`` fixture: ``promptcache serve`` inside the test session, for LLM calls the
session cannot intercept (a subprocess, a Node or Go service, a client with its own socket code)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from ..proxy.upstreams import Upstream, UpstreamError, parse_upstreams
from .stash import SESSION_KEY, UPSTREAMS_KEY

if TYPE_CHECKING:
    from ..proxy.server import ProxyServer


def configured_upstreams(lines: list[str]) -> dict[str, Upstream]:
    """The defaults and ini ``promptcache_upstreams``; a bad line is a usage error before any test runs."""
    try:
        return parse_upstreams(lines, "ini promptcache_upstreams")
    except UpstreamError as exc:
        raise pytest.UsageError(f"pytest-promptcache: {exc}") from None


@pytest.fixture(scope="session")
def promptcache_proxy(request: pytest.FixtureRequest) -> Iterator[ProxyServer]:
    """A recording proxy on 127.0.0.1 for this session: the same recordings, modes, keys and report as
    in-process calls, each call attributed to the test running when it arrives.

    Hand ``promptcache_proxy.env`` to a subprocess (``env={**os.environ, **promptcache_proxy.env}``):
    ``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``, ``GOOGLE_GEMINI_BASE_URL``, ... point at it.
    ``.base_urls`` maps each upstream name to its base URL, ``.url`` is the proxy's root.
    """
    from ..proxy.server import ProxyServer

    config = request.config
    upstreams: dict[str, Upstream] = config.stash[UPSTREAMS_KEY]
    with ProxyServer(config.stash[SESSION_KEY], upstreams) as proxy:
        yield proxy
