"""A bounded, least-recently-used map, safe across threads, that never blocks an event loop.

Used for the memory tier of recordings and the memo of keys. Reads and writes take a lock; a caller on
an event loop passes ``wait=False`` and, if another thread holds the lock at that instant, gets a miss
instead of waiting (a blocking-call detector such as blockbuster fails a contended acquire).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: K, *, wait: bool = True) -> V | None:
        if not self._lock.acquire(blocking=wait):
            return None
        try:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value
        finally:
            self._lock.release()

    def put(self, key: K, value: V, *, wait: bool = True) -> None:
        if not self._lock.acquire(blocking=wait):
            return  # a cache: skipping a write only costs a later recomputation
        try:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        finally:
            self._lock.release()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
