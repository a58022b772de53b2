"""aiohttp: every request of a ``ClientSession``, or of a subclass (google-genai's async client), and of
anything that drives one (litellm's httpx transport over aiohttp), goes through
``ClientSession._request``, the method vcrpy and aioresponses patch too.

The light wrapper here adds one client middleware, innermost, to each request of the session while a
plugin session is active. The middleware sees the request exactly as aiohttp is about to send it (final
URL with its query, merged headers, the body's payload), after the user's own middlewares, and answers
it as the server would: redirects, ``raise_for_status``, cookies, tracing and timeouts stay aiohttp's
own. A request that is not for an LLM endpoint goes straight to aiohttp's handler; nothing heavy is
imported until one is (``aiohttp_send``).

A test that mocks aiohttp itself (aioresponses replaces ``_request`` while active) answers its own calls:
the wrapper is out of the way until the mock stops.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .registry import Source, active

MODULE = "aiohttp.client"
# Client middlewares, which this adapter relies on, arrived in aiohttp 3.12.
TOO_OLD = (
    "promptcache: this aiohttp ({version}) is too old to intercept (client middlewares arrived in 3.12); "
    "run `pip install -U 'aiohttp>=3.12'`"
)


class Intercept:
    """The middleware one request gets: LLM requests to the engine, anything else to aiohttp."""

    __slots__ = ("decompressed", "source")

    def __init__(self, source: Source, decompressed: bool) -> None:
        self.source = source
        # Whether aiohttp undoes the response's content-encoding before the body reaches the client
        # (litellm turns it off): the recorder must know which bytes it is shown.
        self.decompressed = decompressed

    async def __call__(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        url = request.url
        if not self.source.handles(url.host or "", url.path):
            return await handler(request)
        from .aiohttp_send import handle

        return await handle(request, handler, self.source, decompressed=self.decompressed)


class AiohttpAdapter:
    watched = frozenset({MODULE})

    def __init__(self) -> None:
        self._original: tuple[type, Callable[..., Any]] | None = None

    def imported(self, name: str) -> None:
        if self._original is not None:
            return
        cls = sys.modules[name].ClientSession
        original = cls.__dict__["_request"]
        self._original = (cls, original)
        cls._request = self._wrapper(original)

    def restore(self) -> None:
        if self._original is not None:
            cls, original = self._original
            cls._request = original  # type: ignore[attr-defined]
            self._original = None

    def _wrapper(self, original: Callable[..., Any]) -> Callable[..., Any]:
        if "middlewares" not in original.__code__.co_varnames:
            return _refusing_wrapper(original)

        async def _request(session: Any, *args: Any, **kwargs: Any) -> Any:
            source = active()
            if source is not None:
                chosen = kwargs.get("middlewares")
                # A request's own middlewares replace the session's, as aiohttp applies them.
                outer = session._middlewares if chosen is None else chosen
                decompress = kwargs.get("auto_decompress")
                if decompress is None:
                    decompress = session._auto_decompress
                kwargs["middlewares"] = (*outer, Intercept(source, bool(decompress)))
            return await original(session, *args, **kwargs)

        _request.__wrapped__ = original  # type: ignore[attr-defined]
        return _request


def _refusing_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    """For an aiohttp without middlewares: an LLM request fails at once rather than go live unseen."""

    async def _request(session: Any, method: str, str_or_url: Any, *args: Any, **kwargs: Any) -> Any:
        source = active()
        if source is not None:
            url = session._build_url(str_or_url)
            if source.handles(url.host or "", url.path):
                raise RuntimeError(TOO_OLD.format(version=sys.modules["aiohttp"].__version__))
        return await original(session, method, str_or_url, *args, **kwargs)

    _request.__wrapped__ = original  # type: ignore[attr-defined]
    return _request


AIOHTTP = AiohttpAdapter()
