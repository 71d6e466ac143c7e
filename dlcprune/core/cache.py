"""The one in-process cache: a thread-safe least-recently-used map over ``cachetools``.

Used for whatever is expensive to build and never changes once built (dataset indexes, opened
readers, provenance records, loaded backbones, job summaries). ``on_evict`` is called, outside the
lock, with every value that leaves the cache (evicted, replaced, cleared), so a value holding a
file or a model can be closed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import cachetools

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Tracking(cachetools.LRUCache):  # type: ignore[type-arg]
    """An LRUCache that remembers what it evicted, for the owner to close outside the lock."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.evicted: list[object] = []

    def popitem(self):  # type: ignore[no-untyped-def]
        key, value = super().popitem()
        self.evicted.append(value)
        return key, value


class LRU(Generic[K, V]):
    """At most ``size`` values by key, the least recently used dropped first."""

    def __init__(self, size: int, on_evict: Callable[[V], None] | None = None) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._items = _Tracking(size)
        self._lock = threading.Lock()
        self._on_evict = on_evict

    @property
    def size(self) -> int:
        return int(self._items.maxsize)

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._items.get(key)  # type: ignore[no-any-return]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            old = self._items.get(key)
            if old is not None and old is not value:
                self._items.evicted.append(old)
            self._items[key] = value
            dropped = self._take_evicted()
        self._close(dropped)

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The cached value, or ``make()``'s, stored. ``make`` runs outside the lock: two threads
        may both build a missing value; the first stored wins and the other is dropped."""
        with self._lock:
            if key in self._items:
                return self._items[key]  # type: ignore[no-any-return]
        value = make()
        with self._lock:
            if key in self._items:
                winner: V = self._items[key]
                dropped = [value] if winner is not value else []
                value = winner
            else:
                self._items[key] = value
                dropped = []
            dropped += self._take_evicted()
        self._close(dropped)
        return value

    def pop(self, key: K) -> V | None:
        with self._lock:
            return self._items.pop(key, None)  # type: ignore[no-any-return]

    def clear(self) -> None:
        with self._lock:
            dropped = list(self._items.values())
            self._items.clear()
            dropped += self._take_evicted()
        self._close(dropped)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _take_evicted(self) -> list[V]:
        dropped, self._items.evicted = self._items.evicted, []
        return dropped  # type: ignore[return-value]

    def _close(self, values: list[V]) -> None:
        if self._on_evict is not None:
            for value in values:
                self._on_evict(value)
