"""Which session LLM calls go to, and when the client libraries get patched.

Adapters (one per HTTP library) patch their library as it is imported: a library already imported is
patched at ``install``, one imported later as its import finishes (a post-import hook on
``sys.meta_path``), so the plugin never imports a client library itself: a suite that does not use one
pays nothing for it. Sessions form a stack, so a pytest run inside a pytest run (pytester) works, and
the last ``uninstall`` restores every original exactly.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..engine import Engine


class Source(Protocol):
    """What adapters route LLM calls to: a plugin session, or one a script made."""

    def handles(self, host: str, path: str) -> bool: ...

    def engine(self) -> Engine:
        """The engine, built on first use (which touches the disk: not on an event loop)."""
        ...

    @property
    def started_engine(self) -> Engine | None:
        """The engine if it is built already."""
        ...

    def refuse_connection(self, host: str, port: int | None, *, may_wait: bool) -> str | None:
        """The message to refuse a connection no adapter handled with, or None to let it through."""
        ...


class Adapter(Protocol):
    """Patches one HTTP library."""

    @property
    def watched(self) -> frozenset[str]:
        """The modules whose import the adapter must hear of."""
        ...

    def imported(self, name: str) -> None:
        """``name`` (one of ``watched``) is in ``sys.modules`` now: patch what it needs."""

    def restore(self) -> None:
        """Undo every patch."""


_lock = threading.RLock()
_sources: list[Source] = []
_adapters: list[Adapter] = []


def active() -> Source | None:
    return _sources[-1] if _sources else None


def _watching(name: str) -> list[Adapter]:
    return [adapter for adapter in _adapters if name in adapter.watched]


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of a watched module so its adapter hears of the import."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not _watching(fullname):
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
                for adapter in _watching(self._name):
                    adapter.imported(self._name)

    def __getattr__(self, name: str) -> Any:
        # Resource readers, get_data, is_package...: whatever the real loader offers.
        return getattr(self._loader, name)


_finder = _PatchAfterImport()


def install(source: Source, adapters: Sequence[Adapter]) -> None:
    """Route LLM calls to ``source`` until ``uninstall(source)``."""
    with _lock:
        if not _sources:
            _adapters[:] = adapters
            for adapter in _adapters:
                for name in sorted(adapter.watched):
                    if name in sys.modules:
                        adapter.imported(name)
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
            for adapter in reversed(_adapters):
                adapter.restore()
            _adapters.clear()
