"""The last line: in replay, a connection no adapter handled is refused at the socket before anything
is sent, if it goes to a provider or to a host the recordings know (see ``guard``).

Patched: ``socket.getaddrinfo`` (every client resolves a host name through it, asyncio's in a worker
thread) and ``socket.socket.connect`` / ``connect_ex`` (an address given as an IP literal, raw sockets).
Both are cheap when the running test is not in replay: one attribute read.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any

from .registry import active


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _port(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str | bytes) and value.isdigit():
        return int(value)
    return None


def _check(host: object, port: object) -> None:
    source = active()
    if source is None or not isinstance(host, str | bytes):
        return
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    message = source.refuse_connection(name, _port(port), may_wait=not _on_event_loop())
    if message is not None:
        raise ConnectionRefusedError(errno.ECONNREFUSED, message)


class SocketGuard:
    watched = frozenset({"socket"})

    def __init__(self) -> None:
        self._originals: list[tuple[Any, str, Any]] = []

    def imported(self, name: str) -> None:
        if self._originals:
            return
        getaddrinfo = socket.getaddrinfo
        connect = socket.socket.connect
        connect_ex = socket.socket.connect_ex

        def guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            _check(host, port)
            return getaddrinfo(host, port, *args, **kwargs)

        def guarded_connect(self: socket.socket, address: Any) -> None:
            if isinstance(address, tuple) and len(address) >= 2:
                _check(address[0], address[1])
            connect(self, address)

        def guarded_connect_ex(self: socket.socket, address: Any) -> int:
            if isinstance(address, tuple) and len(address) >= 2:
                _check(address[0], address[1])
            return connect_ex(self, address)

        patches: tuple[tuple[Any, str, Callable[..., Any]], ...] = (
            (socket, "getaddrinfo", guarded_getaddrinfo),
            (socket.socket, "connect", guarded_connect),
            (socket.socket, "connect_ex", guarded_connect_ex),
        )
        for owner, attr, replacement in patches:
            # socket.socket inherits connect from the C type; remember whether it had its own.
            self._originals.append((owner, attr, owner.__dict__.get(attr)))
            replacement.__wrapped__ = getattr(owner, attr)  # type: ignore[attr-defined]
            setattr(owner, attr, replacement)

    def restore(self) -> None:
        for owner, attr, original in reversed(self._originals):
            if original is None:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)
        self._originals.clear()


SOCKET_GUARD = SocketGuard()
