"""The shared LRU cache: order, bounds, eviction callbacks, concurrent builds."""

from __future__ import annotations

import threading

import pytest

from dlcprune.core.cache import LRU


def test_least_recently_used_is_dropped_first_and_closed() -> None:
    closed: list[str] = []
    cache: LRU[str, str] = LRU(2, on_evict=closed.append)
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # "b" is now the least recently used
    cache.put("c", "C")
    assert "b" not in cache and "a" in cache and "c" in cache
    assert closed == ["B"]
    assert len(cache) == 2


def test_get_or_make_builds_once_and_replacing_closes_the_old_value() -> None:
    closed: list[int] = []
    cache: LRU[str, int] = LRU(4, on_evict=closed.append)
    calls = []
    assert cache.get_or_make("k", lambda: calls.append(1) or 7) == 7
    assert cache.get_or_make("k", lambda: calls.append(1) or 8) == 7
    assert calls == [1]
    cache.put("k", 9)
    assert closed == [7]
    cache.clear()
    assert closed == [7, 9] and len(cache) == 0


def test_concurrent_builds_keep_one_value_and_close_the_losers() -> None:
    closed: list[object] = []
    cache: LRU[str, object] = LRU(2, on_evict=closed.append)
    barrier = threading.Barrier(8)
    results: list[object] = []

    def build() -> object:
        barrier.wait()
        return object()

    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_make("k", build)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in results}) == 1
    assert len(closed) == 7 and results[0] not in closed


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LRU(0)
