"""urllib3 2.x, and what sends through it: requests, and botocore (boto3) with its own pool subclasses.

Patches ``HTTPConnectionPool.urlopen``: every request of every pool passes there (``PoolManager``,
requests' ``HTTPAdapter``, botocore's ``URLLib3Session`` and its ``AWSHTTP(S)ConnectionPool``, which
inherit it), with the method, URL, body and headers in hand and before any connection is taken from the
pool, so a replay opens no socket. A light wrapper: a request that is not for an LLM endpoint goes
straight through, and nothing heavy is imported until one is (``urllib3_send``).
"""

from __future__ import annotations

import importlib
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from .registry import active

MODULE = "urllib3.connectionpool"


class Urllib3Adapter:
    watched = frozenset({MODULE})

    def __init__(self) -> None:
        self._original: Callable[..., Any] | None = None
        self._pool: type | None = None
        # Set while a live call goes out through the original urlopen: its own retries and redirects
        # call urlopen again, and those belong to the call already under way, not to new ones.
        self.sending = threading.local()

    def imported(self, name: str) -> None:
        if self._original is not None:
            return
        version = str(getattr(importlib.import_module("urllib3._version"), "__version__", "0"))
        major = version.partition(".")[0]
        if not major.isdigit() or int(major) < 2:
            # The replay and the tee read urllib3 2's responses; 1.x ones would go unrecorded.
            warnings.warn(
                f"pytest-promptcache: urllib3 {version} is not intercepted, only 2.x is: LLM calls through "
                "requests or boto3 reach the network unrecorded; install urllib3>=2",
                stacklevel=2,
            )
            return
        pool: type = sys.modules[MODULE].HTTPConnectionPool
        original = pool.__dict__["urlopen"]
        self._pool, self._original = pool, original
        pool.urlopen = self._wrapper(original)  # type: ignore[attr-defined]

    def restore(self) -> None:
        if self._pool is not None and self._original is not None:
            self._pool.urlopen = self._original  # type: ignore[attr-defined]
        self._pool = self._original = None

    def _wrapper(self, original: Callable[..., Any]) -> Callable[..., Any]:
        sending = self.sending
        heavy: list[Callable[..., Any]] = []

        def urlopen(pool: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            source = active()
            if source is None or getattr(sending, "live", False):
                return original(pool, method, url, *args, **kwargs)
            host, path = target(pool, url)
            if not source.handles(host, path):
                return original(pool, method, url, *args, **kwargs)
            if not heavy:
                from .urllib3_send import handle

                heavy.append(handle)
            return heavy[0](original, pool, method, url, args, kwargs, source, sending)

        urlopen.__wrapped__ = original  # type: ignore[attr-defined]
        return urlopen


def target(pool: Any, url: str) -> tuple[str, str]:
    """The host and the percent-decoded path a request goes to: ``url`` is a path for the pool's host,
    or an absolute URL (botocore sends those for http endpoints, proxies for any)."""
    if url.startswith("/"):
        path = url.split("?", 1)[0]
        host: str = pool.host
    else:
        parts = urlsplit(url)
        path, host = parts.path or "/", parts.hostname or pool.host
    # Clients encode differently (botocore writes the ':' of a model id as %3A, others don't): endpoint
    # patterns and keys see one form, as httpx's decoded URL.path gives it.
    return host.lower(), unquote(path) if "%" in path else path


URLLIB3 = Urllib3Adapter()
