"""Patches the transports of httpx2 and httpx, sync and async, for as long as a session is installed.

Requests to LLM endpoints go to the active session's engine; everything else goes straight through.
A module already imported is patched at once; one imported later is patched as its import finishes (a
post-import hook on ``sys.meta_path``), so the plugin never imports httpx itself: a suite that does not
use it pays nothing. Sessions form a stack, so a pytest run inside a pytest run (pytester) works, and
the last uninstall restores the original methods exactly.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .engine import Engine

# Each client module and the connection-pool module below its default transport.
MODULE_NAMES = {"httpx2": "httpcore2", "httpx": "httpcore"}
WATCHED = frozenset({*MODULE_NAMES, *MODULE_NAMES.values()})


class Source(Protocol):
    """What the interceptor routes to: a plugin session, or an engine used on its own."""

    def handles(self, host: str, path: str) -> bool: ...

    def engine(self) -> Engine: ...


_lock = threading.RLock()
_sources: list[Source] = []
_originals: dict[str, list[tuple[type, str, Callable[..., Any]]]] = {}
# The connection-pool methods below each transport as they were before any test ran (see mocked_below).
_pool_originals: dict[str, tuple[tuple[type, str, object], ...]] = {}


def active() -> Source | None:
    return _sources[-1] if _sources else None


def mocked_below(module_name: str) -> bool:
    """True while a mocking library (respx) has replaced the connection pool under the transport.

    Such a test answers its HTTP calls itself and never reaches the network, so its LLM calls are its
    own business: intercepting them would turn the mock's answers into replay misses.
    """
    saved = _pool_originals.get(MODULE_NAMES[module_name], ())
    return any(cls.__dict__.get(attr) is not original for cls, attr, original in saved)


def _remember_pool(pool_name: str) -> None:
    pool = sys.modules.get(pool_name)
    if pool is None or pool_name in _pool_originals:
        return
    _pool_originals[pool_name] = tuple(
        (cls, attr, cls.__dict__.get(attr))
        for cls, attr in (
            (pool.ConnectionPool, "handle_request"),
            (pool.AsyncConnectionPool, "handle_async_request"),
        )
    )


def _sync_wrapper(module: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
    # Light on purpose: nothing heavy is imported until a request to an LLM endpoint arrives.
    def handle_request(self: Any, request: Any) -> Any:
        source = active()
        url = request.url
        if source is None or not source.handles(url.host, url.path) or mocked_below(module.__name__):
            return original(self, request)
        from .transport import handle_sync

        return handle_sync(module, original, self, request, source)

    handle_request.__wrapped__ = original  # type: ignore[attr-defined]
    return handle_request


def _async_wrapper(module: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
    async def handle_async_request(self: Any, request: Any) -> Any:
        source = active()
        url = request.url
        if source is None or not source.handles(url.host, url.path) or mocked_below(module.__name__):
            return await original(self, request)
        from .transport import handle_async

        return await handle_async(module, original, self, request, source)

    handle_async_request.__wrapped__ = original  # type: ignore[attr-defined]
    return handle_async_request


def _patch(name: str) -> None:
    if name in _originals:
        return
    module = sys.modules[name]
    saved: list[tuple[type, str, Callable[..., Any]]] = []
    for cls, attr, wrap in (
        (module.HTTPTransport, "handle_request", _sync_wrapper),
        (module.AsyncHTTPTransport, "handle_async_request", _async_wrapper),
    ):
        original = cls.__dict__[attr]
        saved.append((cls, attr, original))
        setattr(cls, attr, wrap(module, original))
    _originals[name] = saved


def _on_import(name: str) -> None:
    if name in MODULE_NAMES:
        _patch(name)
    else:
        _remember_pool(name)


def _unpatch_all() -> None:
    for saved in _originals.values():
        for cls, attr, original in reversed(saved):
            setattr(cls, attr, original)
    _originals.clear()
    _pool_originals.clear()


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of httpx/httpx2 so they are patched once imported."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in WATCHED:
            return None
        # Ask the finders after this one, as the import system would have.
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: importlib.machinery.ModuleSpec | None = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader, fullname)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        with _lock:
            if _sources:
                _on_import(self._name)

    def __getattr__(self, name: str) -> Any:
        # Resource readers, get_data, is_package...: whatever the real loader offers.
        return getattr(self._loader, name)


_finder = _PatchAfterImport()


def install(source: Source) -> None:
    """Route LLM calls to ``source`` until ``uninstall(source)``."""
    with _lock:
        if not _sources:
            for name in WATCHED:
                if name in sys.modules:
                    _on_import(name)
            if _finder not in sys.meta_path:
                sys.meta_path.insert(0, _finder)
        _sources.append(source)


def uninstall(source: Source) -> None:
    with _lock:
        if source in _sources:
            _sources.remove(source)
        if not _sources:
            if _finder in sys.meta_path:
                sys.meta_path.remove(_finder)
            _unpatch_all()
