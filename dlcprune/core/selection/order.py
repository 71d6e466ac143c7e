"""Ordering and drawing: the one sort every score-ordered strategy uses, and the draws.

Within a class, samples are ordered by ascending score, ties by ascending input index. A draw of
``k`` of a pool uses ``rng.choice(pool, k, replace=False, shuffle=False)``; a pool taken whole (or
``k == 0``) draws nothing, so it does not move the generator.
"""

from __future__ import annotations

import numpy as np


def _score_order(scores: np.ndarray, classes: np.ndarray | None, n_classes: int) -> np.ndarray:
    """Positions sorted by (class, score, index): shape ``(N,)`` intp.

    float16/float32 scores are packed with class and index into one unique uint64 key when the
    bits fit (a plain sort of distinct keys is about twice as fast as a two-key lexsort);
    otherwise a stable np.lexsort gives the same order.
    """
    n = scores.shape[0]
    class_bits = (n_classes - 1).bit_length()
    index_bits = max(n - 1, 1).bit_length()
    if scores.dtype in (np.float16, np.float32) and class_bits + 32 + index_bits <= 64:
        # Adding +0.0 turns -0.0 into +0.0 so the two tie, as they do in a float comparison.
        bits = (scores.astype(np.float32) + np.float32(0.0)).view(np.uint32)
        # IEEE order as unsigned ints: flip every bit of negatives, only the sign of positives.
        flip = np.where(bits >> np.uint32(31), np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
        key = (bits ^ flip).astype(np.uint64) << np.uint64(index_bits)
        key |= np.arange(n, dtype=np.uint64)
        if classes is not None and class_bits:
            key |= classes.astype(np.uint64) << np.uint64(32 + index_bits)
        key.sort()
        return (key & np.uint64((1 << index_bits) - 1)).astype(np.intp)
    if classes is None:
        return np.lexsort((scores,))
    return np.lexsort((scores, _small_int(classes, n_classes)))


def _small_int(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """``classes`` in the narrowest unsigned dtype: numpy radix-sorts 8/16-bit keys."""
    if n_classes <= 1 << 8:
        return classes.astype(np.uint8)
    if n_classes <= 1 << 16:
        return classes.astype(np.uint16)
    return classes


def _draw(rng: np.random.Generator, pool: int, k: int) -> np.ndarray:
    """k distinct positions in [0, pool), intp; a pool taken whole (or k == 0) uses no draw."""
    if k == pool:
        return np.arange(pool, dtype=np.intp)
    if k == 0:
        return np.empty(0, dtype=np.intp)
    return rng.choice(pool, k, replace=False, shuffle=False).astype(np.intp, copy=False)


def _class_rng(seed: int, class_index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, class_index]))
