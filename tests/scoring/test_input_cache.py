"""Decoded inputs kept between jobs (worker.scoring.input_cache): a second scoring of the same
data with the same preprocessing reads the prepared array back and does not read the dataset;
other preprocessing is another entry; the bound evicts the least recently used; a damaged entry
is a miss."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from dlcprune.core.formats import open_dataset
from tests.scoring.conftest import write_image_folder
from worker.scoring.backbones import load_backbone
from worker.scoring.dlc import DLCParams, score
from worker.scoring.input_cache import InputCache, using


class _Counting:
    """A real reader whose payload passes are counted (what the cache saves)."""

    def __init__(self, reader) -> None:  # type: ignore[no-untyped-def]
        self._reader = reader
        self.passes = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._reader, name)

    def __len__(self) -> int:
        return len(self._reader)

    def iter_payloads(self):  # type: ignore[no-untyped-def]
        self.passes += 1
        return self._reader.iter_payloads()


def test_a_second_scoring_reads_the_prepared_inputs_back(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "imgs", per_class=4, size=24)
    cache = InputCache(tmp_path / "inputs", 2**30)
    bb = load_backbone("efficientnet_lite0")
    with open_dataset(data) as opened:
        ds = _Counting(opened)
        with using(cache, "content-a"):
            first = score(ds, bb, DLCParams(levels=3, image_size=32, batch_size=4)).scores
            assert ds.passes == 1 and len(cache.entries()) == 1
            again = score(ds, bb, DLCParams(levels=4, image_size=32, batch_size=4)).scores
            assert ds.passes == 1  # the dataset was not read again
            same = score(ds, bb, DLCParams(levels=3, image_size=32, batch_size=4)).scores
            assert np.array_equal(first, same)
            assert not np.array_equal(first, again)  # other levels, the same inputs
            # Another image size is another entry.
            score(ds, bb, DLCParams(levels=3, image_size=40, batch_size=4))
            assert ds.passes == 2 and len(cache.entries()) == 2
        with using(cache, "content-b"):  # other data: a miss
            score(ds, bb, DLCParams(levels=3, image_size=32, batch_size=4))
            assert ds.passes == 3
        with using(None, "content-a"):  # off: the dataset is read
            off = score(ds, bb, DLCParams(levels=3, image_size=32, batch_size=4)).scores
            assert ds.passes == 4 and np.array_equal(off, first)


def test_the_bound_evicts_the_least_recently_used_and_a_damaged_entry_is_a_miss(
    tmp_path: Path,
) -> None:
    one = np.zeros((10, 3, 8, 8), dtype=np.uint8)  # 1,920 bytes, 2,048 with the .npy header
    cache = InputCache(tmp_path / "inputs", 5000)
    assert cache.put("a", one) and cache.put("b", one + 1)
    past = time.time() - 60
    os.utime(cache.root / "a.npy", (past, past))
    os.utime(cache.root / "b.npy", (past + 1, past + 1))
    assert cache.get("a") is not None  # used now: "b" is the least recently used
    assert cache.put("c", one + 2)
    assert [p.name for p in cache.entries()] == ["a.npy", "c.npy"]
    assert np.array_equal(cache.get("c"), one + 2)
    assert not cache.put("huge", np.zeros(6000, dtype=np.uint8))  # over the whole bound
    (cache.root / "a.npy").write_bytes(b"\x93NUMPY broken")
    assert cache.get("a") is None and not (cache.root / "a.npy").exists()
    assert not list(cache.root.glob("*.partial"))
    assert InputCache.key(content="x", size=32) != InputCache.key(content="x", size=40)


def test_a_cache_that_cannot_be_written_is_skipped_and_stale_partials_go(tmp_path: Path) -> None:
    one = np.zeros((4, 3, 8, 8), dtype=np.uint8)
    (tmp_path / "file").write_bytes(b"")
    blocked = InputCache(tmp_path / "file" / "inputs", 2**20)  # its root cannot be made
    assert blocked.put("a", one) is False and blocked.get("a") is None
    cache = InputCache(tmp_path / "inputs", 2**20)
    assert cache.put("a", one)
    old = cache.root / ".dead.1234.partial"  # left by a worker killed while writing
    fresh = cache.root / ".live.5678.partial"  # another worker writing now
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    past = time.time() - 2 * 3600
    os.utime(old, (past, past))
    assert cache.put("b", one + 1)
    assert not old.exists() and fresh.exists()
