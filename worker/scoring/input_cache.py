"""Decoded inputs kept on the local disk between jobs, within a size bound.

A job decodes and resizes every sample once into its prepared array (``preprocess``). A later
job on the same data with the same preprocessing (another method, other levels, a baseline)
reads that array back instead of fetching and decoding the samples again: for data read from
an object store, no fetch at all. Entries are ``.npy`` files named by a key over the data's
content identity and the preprocessing (kind, image size, crop, interpolation, sample range),
read back memory-mapped copy-on-write; past ``max_bytes`` the least recently used go. Writes go
to a temporary name first and are renamed into place, so another worker on the machine never
reads half a file; a file that does not load is removed and counts as a miss.

The worker turns it on for the scoring it runs (``using``: the content identity is the
service's, the one its score cache keys on); ``cached`` is what ``passes.prepare`` asks.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("dlcprune.worker")

# The layout of a prepared array: a new value makes earlier entries misses.
LAYOUT = 1
_PARTIAL_STALE_S = 3600


class InputCache:
    """``.npy`` files under ``root`` holding at most ``max_bytes`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str], max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    @staticmethod
    def key(**parts: Any) -> str:
        return hashlib.sha256(
            json.dumps({"layout": LAYOUT, **parts}, sort_keys=True).encode()
        ).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        try:
            array = np.load(path, mmap_mode="c")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # truncated or not an array: a miss
            log.warning("input cache: %s does not load (%s); removed", path.name, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used
        return array

    def put(self, key: str, array: np.ndarray) -> bool:
        """Keep ``array`` under ``key``; False when it is larger than the whole bound."""
        if self.max_bytes <= 0 or array.nbytes > self.max_bytes:
            return False
        final = self._path(key)
        tmp = self.root / f".{key}.{uuid.uuid4().hex}.partial"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                np.save(f, array)
            os.replace(tmp, final)
        except OSError as exc:  # a full or read-only disk: the job goes on without the cache
            log.warning("input cache: %s not kept: %s", final.name, exc)
            return False
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._evict(keep=final)
        return True

    def _evict(self, keep: Path) -> None:
        # Temporary files of a worker killed while writing (an hour is far past any write).
        for path in self.root.glob(".*.partial"):
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > _PARTIAL_STALE_S:
                    path.unlink()
        entries = []
        for path in self.root.glob("*.npy"):
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                entries.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size

    def entries(self) -> list[Path]:
        return sorted(self.root.glob("*.npy")) if self.root.exists() else []


_current: contextvars.ContextVar[tuple[InputCache, str] | None] = contextvars.ContextVar(
    "dlcprune_input_cache", default=None
)


@contextlib.contextmanager
def using(cache: InputCache | None, content: str | None) -> Iterator[None]:
    """Within the block, prepared inputs of data whose content identity is ``content`` are
    read from and kept in ``cache`` (nothing when either is missing)."""
    token = _current.set((cache, content) if cache is not None and content else None)
    try:
        yield
    finally:
        _current.reset(token)


def cached() -> tuple[InputCache, str] | None:
    """The cache and content identity in force (``using``), or None."""
    return _current.get()
