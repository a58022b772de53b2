"""The httpx family: httpx 0.28 and httpx2 share one API, so one adapter serves both.

Patches ``HTTPTransport.handle_request`` and ``AsyncHTTPTransport.handle_async_request`` with light
wrappers: a request that is not for an LLM endpoint goes straight through, and nothing heavy is imported
until one is (``httpx_send``). Their ``__init__`` leaves the connection pool to be built when first
needed (``httpx_pool``): a replayed call never needs it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .httpx_pool import lazy_init
from .registry import active

_SENDERS: dict[str, Callable[..., Any]] = {}


def _sender(name: str) -> Callable[..., Any]:
    """``httpx_send``'s handler, imported on the first LLM request: an import statement in the wrapper
    would run the import machinery's checks on every call."""
    found = _SENDERS.get(name)
    if found is None:
        from . import httpx_send

        found = _SENDERS[name] = getattr(httpx_send, name)
    return found


# Each client module and the connection-pool module below its default transport.
POOL_OF = {"httpx2": "httpcore2", "httpx": "httpcore"}


class HttpxAdapter:
    watched = frozenset({*POOL_OF, *POOL_OF.values()})

    def __init__(self) -> None:
        self._originals: dict[str, list[tuple[type, str, Callable[..., Any]]]] = {}
        # The connection-pool methods below each transport as they were before any test ran.
        self._pool_originals: dict[str, tuple[tuple[type, str, object], ...]] = {}

    def imported(self, name: str) -> None:
        if name in POOL_OF:
            self._patch(name)
        else:
            self._remember_pool(name)

    def restore(self) -> None:
        for saved in self._originals.values():
            for cls, attr, original in reversed(saved):
                setattr(cls, attr, original)
        self._originals.clear()
        self._pool_originals.clear()

    def mocked_below(self, module_name: str) -> bool:
        """True while a mocking library (respx) has replaced the connection pool under the transport.

        Such a test answers its HTTP calls itself and never reaches the network, so its LLM calls are
        its own business: intercepting them would turn the mock's answers into replay misses.
        """
        saved = self._pool_originals.get(POOL_OF[module_name], ())
        return any(cls.__dict__.get(attr) is not original for cls, attr, original in saved)

    def _remember_pool(self, pool_name: str) -> None:
        pool = sys.modules.get(pool_name)
        if pool is None or pool_name in self._pool_originals:
            return
        self._pool_originals[pool_name] = tuple(
            (cls, attr, cls.__dict__.get(attr))
            for cls, attr in (
                (pool.ConnectionPool, "handle_request"),
                (pool.AsyncConnectionPool, "handle_async_request"),
            )
        )

    def _patch(self, name: str) -> None:
        if name in self._originals:
            return
        module = sys.modules[name]
        saved: list[tuple[type, str, Callable[..., Any]]] = []
        for cls, attr, wrap in (
            (module.HTTPTransport, "handle_request", self._sync_wrapper),
            (module.AsyncHTTPTransport, "handle_async_request", self._async_wrapper),
            (module.HTTPTransport, "__init__", lazy_init),
            (module.AsyncHTTPTransport, "__init__", lazy_init),
        ):
            original = cls.__dict__[attr]
            saved.append((cls, attr, original))
            setattr(cls, attr, wrap(module, original))
        self._originals[name] = saved

    def _sync_wrapper(self, module: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
        # Light on purpose: nothing heavy is imported until a request to an LLM endpoint arrives.
        mocked_below = self.mocked_below

        def handle_request(transport: Any, request: Any) -> Any:
            source = active()
            url = request.url
            if source is None or not source.handles(url.host, url.path) or mocked_below(module.__name__):
                return original(transport, request)
            return _sender("handle_sync")(module, original, transport, request, source)

        handle_request.__wrapped__ = original  # type: ignore[attr-defined]
        return handle_request

    def _async_wrapper(self, module: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
        mocked_below = self.mocked_below

        async def handle_async_request(transport: Any, request: Any) -> Any:
            source = active()
            url = request.url
            if source is None or not source.handles(url.host, url.path) or mocked_below(module.__name__):
                return await original(transport, request)
            return await _sender("handle_async")(module, original, transport, request, source)

        handle_async_request.__wrapped__ = original  # type: ignore[attr-defined]
        return handle_async_request


HTTPX = HttpxAdapter()
