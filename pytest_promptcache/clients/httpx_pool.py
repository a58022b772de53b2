"""A default transport's connection pool, built when a request first needs it.

httpx's ``HTTPTransport`` builds its pool in ``__init__``: it imports httpcore and loads the system's CA
store into an SSL context, ~16 ms for every client built (and the import once, 7-20 ms). In replay no LLM
call reaches the pool, so a suite that builds a client per test paid that per test for nothing. While the
plugin is installed, a transport's pool is a ``LazyPool`` instead, which builds the real one (by running
the transport's own ``__init__``) the first time a request, or anything else, needs it.

Only where building cannot fail: ``verify`` True (with the CA store ``SSL_CERT_FILE`` or ``SSL_CERT_DIR``
names, if any, there) or an ``SSLContext``, no ``cert``, no proxy, httpx's own ``Limits``. Anything else
is built at once, as httpx builds it, so a mistake still fails the constructor. Two things move to the
first request that needs the network: a CA file that is there but is not PEM fails there (the same
``ssl.SSLError``), and ``SSL_CERT_FILE``/``SSL_CERT_DIR`` are read then, not when the client was built.
"""

from __future__ import annotations

import inspect
import os
import ssl
import sys
import threading
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

_lock = threading.Lock()
_signatures: dict[Callable[..., Any], inspect.Signature] = {}


class LazyPool:
    """Stands in for a transport's connection pool until something needs the real one."""

    __slots__ = ("__weakref__", "_build_args", "_built", "_init", "_transport")

    def __init__(self, transport: Any, init: Callable[..., None], args: tuple[Any, ...], kwargs: Any) -> None:
        # A weak reference: the transport holds this object, which must not keep the transport alive.
        self._transport = weakref.ref(transport)
        self._init = init
        self._build_args = (args, kwargs)
        self._built: Any = None

    def built(self) -> Any:
        """The real pool, built now if it was not."""
        with _lock:
            if self._built is None:
                transport = self._transport()
                if transport is None:  # pragma: no cover - only a stray reference to this pool calls here
                    raise RuntimeError("promptcache: the transport of this connection pool is gone")
                args, kwargs = self._build_args
                # The transport's own __init__: it sets the real pool on the transport, replacing this one.
                self._init(transport, *args, **kwargs)
                self._built = transport._pool
            return self._built

    def handle_request(self, request: Any) -> Any:
        return self.built().handle_request(request)

    async def handle_async_request(self, request: Any) -> Any:
        built = self._built
        if built is None:
            import anyio.to_thread

            # Loading the CA store reads files: off the event loop, as blocking-call detectors require.
            built = await anyio.to_thread.run_sync(self.built)
        return await built.handle_async_request(request)

    # Nothing built, nothing to close: a request after closing builds a new pool, as a closed pool opens
    # new connections.
    def close(self) -> None:
        if self._built is not None:
            self._built.close()

    def __enter__(self) -> LazyPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def aclose(self) -> None:
        if self._built is not None:
            await self._built.aclose()

    async def __aenter__(self) -> LazyPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __getattr__(self, name: str) -> Any:
        # Whatever else a caller asks of the pool (its connections, its SSL context): the real one's.
        return getattr(self.built(), name)

    def __repr__(self) -> str:
        return f"<LazyPool built={self._built is not None}>"


def lazy_init(module: ModuleType, original: Callable[..., None]) -> Callable[..., None]:
    """``original`` (a transport's ``__init__``), deferred where building cannot fail."""

    def __init__(transport: Any, *args: Any, **kwargs: Any) -> None:
        if not _can_defer(module, original, transport, args, kwargs):
            original(transport, *args, **kwargs)
            return
        transport._pool = LazyPool(transport, original, args, kwargs)

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    return __init__


def _can_defer(
    module: ModuleType, init: Callable[..., None], transport: Any, args: tuple[Any, ...], kwargs: Any
) -> bool:
    signature = _signatures.get(init)
    if signature is None:
        signature = _signatures[init] = inspect.signature(init)
    try:
        bound = signature.bind(transport, *args, **kwargs)
    except TypeError:
        return False  # the real __init__ raises it, where the caller expects it
    given = bound.arguments
    verify = given.get("verify", True)
    if given.get("cert") is not None or given.get("proxy") is not None:
        return False
    limits = given.get("limits")
    if limits is not None and not isinstance(limits, module.Limits):
        return False
    if isinstance(verify, ssl.SSLContext):
        return True
    if verify is not True:
        return False
    if not given.get("trust_env", True):
        return True
    # httpx loads the CA store these name when it builds the context (the file first): one that is not
    # there must fail the constructor, as it does. A stat, where httpx would read the store; but not on
    # an event loop, where a blocking-call detector (blockbuster) fails a stat: built at once there.
    cafile = os.environ.get("SSL_CERT_FILE")
    capath = os.environ.get("SSL_CERT_DIR")
    if not (cafile or capath):
        return True
    if _on_event_loop():
        return False
    return os.path.isfile(cafile) if cafile else os.path.isdir(capath or "")


def _on_event_loop() -> bool:
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and asyncio._get_running_loop() is not None
