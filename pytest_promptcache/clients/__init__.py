"""One adapter per HTTP client library: each turns that library's requests into ``RawRequest``s for the
engine and the engine's answers into that library's responses and streams. ``install`` routes every
adapter's LLM calls to a session.

A request's path is percent-decoded in its ``RawRequest`` (as httpx's ``URL.path`` gives it), whichever
library sent it, so that the same request keys the same through every library."""

from __future__ import annotations

import importlib
import sys

from .aiohttp import AIOHTTP
from .httpx import HTTPX
from .registry import Adapter, Source, uninstall
from .registry import install as _install
from .socket_guard import SOCKET_GUARD
from .urllib3 import URLLIB3

__all__ = ["ADAPTERS", "install", "preload", "uninstall"]

# The guard last: it refuses only what no adapter before it handled.
ADAPTERS: tuple[Adapter, ...] = (HTTPX, AIOHTTP, URLLIB3, SOCKET_GUARD)


def install(source: Source) -> None:
    """Route LLM calls of every supported client library to ``source`` until ``uninstall(source)``."""
    _install(source, ADAPTERS)


# The module each library's LLM calls go through (it imports the engine), and the libraries it serves.
SEND_MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("httpx_send", ("httpx", "httpx2")),
    ("aiohttp_send", ("aiohttp",)),
    ("urllib3_send", ("urllib3",)),
)


def preload() -> list[str]:
    """Import the call path of each client library already imported, so that its cost (some 25 ms: the
    engine, the store, the models) is not paid by the session's first LLM call. Only once pydantic is
    imported already (every LLM SDK imports it): a suite that has not paid for pydantic may make no LLM
    call at all, and then pays for none of this. Returns the modules imported."""
    if "pydantic" not in sys.modules:
        return []
    loaded = []
    for name, libraries in SEND_MODULES:
        module = f"{__name__}.{name}"
        if module not in sys.modules and any(lib in sys.modules for lib in libraries):
            importlib.import_module(module)
            loaded.append(module)
    return loaded
