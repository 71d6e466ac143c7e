"""The integer rules of a selection: how many samples it keeps, per class and per FlexRand pool.

Only integers are compared, so float rounding never changes a result. They are public so that
callers (and tests) can predict a selection's shape without running it;
:func:`dlcprune.core.selection.select` is built from them.

``resolve_keep(keep, n)`` turns the requested size into a number of samples ``total``:

* a ratio ``0 < keep <= 1`` (a float, or the int ``1`` meaning "all") gives
  ``total = floor(n * keep + 1/2)`` (round half up). The product is computed exactly on the decimal
  value of ``keep`` (its shortest ``repr``), so ``keep=0.58`` of ``n=25`` is 15 (14.5 rounded up),
  where float arithmetic would give ``floor(14.499999999999998 + 0.5) = 14``;
* a count is an int ``> 1`` or a float with an integral value ``> 1`` (``30.0``); it must not
  exceed ``n``;
* errors: ``keep <= 0``, NaN or infinite, a non-integral float ``> 1``, a bool or a non-number,
  a count ``> n``, a ratio that selects no sample, ``n == 0``.

``allocate(class_sizes, total)`` splits ``total`` over classes in proportion to their sizes
(largest remainder): with ``N = sum(sizes)``, class ``c`` first gets ``floor(size_c * total / N)``;
the units still missing go one each to the classes with the largest remainders
``size_c * total mod N``, ties to the lower class index. Only integers are compared, so float
rounding never changes a result. The targets sum to ``total`` and ``0 <= t_c <= size_c``.

``flexrand_counts(n, t, split)`` splits one class's target ``t`` between its pools. Sorted by score,
the easy pool is the first ``E = floor(n * split + 1/2)`` samples (same exact rounding as a ratio),
the hard pool the other ``H = n - E``:

* ``split <= 0.5``: ``n_easy = min(E, t // 2)``, ``n_hard = t - n_easy``; if ``n_hard > H`` then
  ``n_hard = H`` and ``n_easy = t - H``;
* ``split > 0.5``: ``n_hard = min(H, t // 2)``, ``n_easy = t - n_hard``; if ``n_easy > E`` then
  ``n_easy = E`` and ``n_hard = t - E``.

This is the design's ``e = min(g, b/2)``, ``h = b - e`` (mirrored for ``g > 0.5``) in integers: the
side of the nominally smaller pool (easy if ``split <= 0.5``, else hard) gets ``floor(t / 2)``, an
odd unit goes to the other side, and once a pool runs out it is taken whole.
"""

from __future__ import annotations

import math
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = ["SelectionError", "allocate", "flexrand_counts", "resolve_keep"]


class SelectionError(ValueError):
    """The selection request cannot be honoured (bad keep, split, seed, scores or labels)."""

    code = "invalid_selection"


def _decimal(x: float) -> Fraction:
    """The exact value of ``x`` as written in decimal (its shortest repr), e.g. 0.7 -> 7/10."""
    return Fraction(repr(float(x)))


def _round_half_up(n: int, q: Fraction) -> int:
    """``floor(n * q + 1/2)`` computed exactly; ``n >= 0``, ``q`` a non-negative fraction."""
    # Integer form of the same expression: Fraction arithmetic is ~10x slower per class.
    return (2 * n * q.numerator + q.denominator) // (2 * q.denominator)


def resolve_keep(keep: float, n: int) -> int:
    """The number of samples to keep out of ``n``.

    Args:
        keep: a ratio in (0, 1] (float, or int 1 meaning all) or a count (int > 1, or a float
            with an integral value > 1).
        n: number of samples available, int >= 1.

    Returns:
        int in [1, n]: ``floor(n * keep + 1/2)`` for a ratio (exact decimal arithmetic), the
        count itself otherwise.

    Raises:
        SelectionError: see the module docstring for every case.
    """
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
        raise SelectionError(f"the number of samples must be an int >= 0, got {n!r}")
    n = int(n)
    if n == 0:
        raise SelectionError("there are no samples to select from")
    # bool is an int subclass: keep=True would silently mean "everything".
    if isinstance(keep, (bool, np.bool_)) or not isinstance(keep, Real):
        raise SelectionError(f"keep must be a ratio in (0, 1] or a count > 1, got {keep!r}")
    if isinstance(keep, Integral):
        k = int(keep)
        if k <= 0:
            raise SelectionError(f"keep must be > 0, got {k}")
        if k == 1:
            return n
        if k > n:
            raise SelectionError(f"keep count {k} exceeds the {n} samples available")
        return k
    value = float(keep)
    if not math.isfinite(value):
        raise SelectionError(f"keep must be a finite number, got {value!r}")
    if value <= 0:
        raise SelectionError(f"keep must be > 0, got {value!r}")
    if value > 1:
        if not value.is_integer():
            raise SelectionError(
                f"keep {value!r} is neither a ratio in (0, 1] nor a whole count of samples"
            )
        count = int(value)
        if count > n:
            raise SelectionError(f"keep count {count} exceeds the {n} samples available")
        return count
    total = _round_half_up(n, _decimal(value))
    if total == 0:
        raise SelectionError(f"keep ratio {value!r} selects no sample of {n}")
    return total


def allocate(class_sizes: Any, total: int) -> np.ndarray:
    """Per-class targets proportional to class size (largest remainder, ties to lower index).

    Args:
        class_sizes: 1-D integer array-like, shape ``(K,)``, values >= 0 with a positive sum N.
        total: int in [0, N].

    Returns:
        int64 array, shape ``(K,)``: ``0 <= t_c <= class_sizes[c]`` and ``t.sum() == total``.

    Raises:
        SelectionError: on a non-integer, non-1-D or negative ``class_sizes``, a zero sum, or
            ``total`` outside [0, N].
    """
    sizes = np.asarray(class_sizes)
    if sizes.ndim != 1 or (sizes.size and sizes.dtype.kind not in "iu"):
        raise SelectionError("class sizes must be a 1-D array of integers")
    if sizes.size and int(sizes.min()) < 0:
        raise SelectionError("class sizes must be >= 0")
    if isinstance(total, bool) or not isinstance(total, Integral):
        raise SelectionError(f"total must be an int, got {total!r}")
    total = int(total)
    n = int(sizes.sum(dtype=object)) if sizes.size else 0
    if n == 0:
        raise SelectionError("class sizes must have a positive sum")
    if not 0 <= total <= n:
        raise SelectionError(f"total {total} is outside [0, {n}]")
    # size * total must not overflow: beyond int64, fall back to Python ints (object arrays).
    work = sizes.astype(np.int64) if n * total < 2**63 else sizes.astype(object)
    product = work * total
    base = product // n
    remainder = product % n
    missing = total - int(base.sum())
    targets = np.asarray(base, dtype=np.int64)
    if missing:
        # Stable sort on the negated remainder: largest first, equal ones in class order.
        # missing < number of classes with a positive remainder, so only those get a unit.
        if work.dtype == object:
            order = sorted(range(len(remainder)), key=lambda c: -remainder[c])[:missing]
        else:
            order = np.argsort(-remainder, kind="stable")[:missing]
        targets[order] += 1
    return targets


def flexrand_counts(n: int, t: int, split: float) -> tuple[int, int]:
    """How many samples FlexRand draws from the easy and hard pools of one class.

    Args:
        n: class size, int >= 0.
        t: the class's target, int in [0, n].
        split: easy share g in [0, 1]; the easy pool is the ``floor(n * g + 1/2)`` lowest scores.

    Returns:
        ``(n_easy, n_hard)`` with ``n_easy <= E``, ``n_hard <= H`` and ``n_easy + n_hard == t``.

    Raises:
        SelectionError: on ``t`` outside [0, n] or ``split`` outside [0, 1].
    """
    for name, value in (("n", n), ("t", t)):
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise SelectionError(f"{name} must be an int, got {value!r}")
    n, t = int(n), int(t)
    if not 0 <= t <= n:
        raise SelectionError(f"target {t} is outside [0, {n}]")
    split = _check_split(split)
    return _pool_counts(n, t, _decimal(split), split <= 0.5)


def _pool_counts(n: int, t: int, split_q: Fraction, low: bool) -> tuple[int, int]:
    """:func:`flexrand_counts` without validation; ``split_q`` is the exact split."""
    n_pool_easy = _round_half_up(n, split_q)
    n_pool_hard = n - n_pool_easy
    if low:
        n_easy = min(n_pool_easy, t // 2)
        n_hard = t - n_easy
        if n_hard > n_pool_hard:
            n_hard = n_pool_hard
            n_easy = t - n_pool_hard
    else:
        n_hard = min(n_pool_hard, t // 2)
        n_easy = t - n_hard
        if n_easy > n_pool_easy:
            n_easy = n_pool_easy
            n_hard = t - n_pool_easy
    return n_easy, n_hard


def _check_split(split: float) -> float:
    if isinstance(split, (bool, np.bool_)) or not isinstance(split, Real):
        raise SelectionError(f"split must be a number in [0, 1], got {split!r}")
    value = float(split)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise SelectionError(f"split must be in [0, 1], got {value!r}")
    return value


def _check_seed(seed: int) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, Integral) or seed < 0:
        raise SelectionError(f"seed must be an int >= 0, got {seed!r}")
    return int(seed)
