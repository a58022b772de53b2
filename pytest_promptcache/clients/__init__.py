"""One adapter per HTTP client library: each turns that library's requests into ``RawRequest``s for the
engine and the engine's answers into that library's responses and streams. ``install`` routes every
adapter's LLM calls to a session.

A request's path is percent-decoded in its ``RawRequest`` (as httpx's ``URL.path`` gives it), whichever
library sent it, so that the same request keys the same through every library."""

from __future__ import annotations

from .aiohttp import AIOHTTP
from .httpx import HTTPX
from .registry import Adapter, Source, uninstall
from .registry import install as _install
from .socket_guard import SOCKET_GUARD
from .urllib3 import URLLIB3

__all__ = ["ADAPTERS", "install", "uninstall"]

# The guard last: it refuses only what no adapter before it handled.
ADAPTERS: tuple[Adapter, ...] = (HTTPX, AIOHTTP, URLLIB3, SOCKET_GUARD)


def install(source: Source) -> None:
    """Route LLM calls of every supported client library to ``source`` until ``uninstall(source)``."""
    _install(source, ADAPTERS)
