"""Subset selection from per-sample hardness scores: FlexRand, top-K easy/hard, random, stratified.

Everything here is pure numpy. A low score means an easy sample. The entry point is :func:`select`;
:func:`resolve_keep`, :func:`allocate` and :func:`flexrand_counts` are the integer rules it is
built from, public so that callers (and tests) can predict a selection's shape without running it.

Integer rules
-------------
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

Order and randomness
--------------------
Within a class, samples are ordered by ascending score, ties by ascending input index. Classes are
the sorted unique labels (``np.unique`` order); class ``c`` is the position in that order, and
unlabelled data is one class with index 0.

* ``flexrand``: per class, ``rng = default_rng(SeedSequence([seed, c]))`` draws ``n_easy``
  positions of the easy pool, then ``n_hard`` of the hard pool, each with
  ``rng.choice(pool, k, replace=False, shuffle=False)``. A pool taken whole draws nothing.
* ``easy`` / ``hard``: per class, the first / last ``t_c`` samples of the order above.
* ``stratified``: per class, the same per-class generator draws ``t_c`` of the class's samples
  taken in input order, so the subset does not depend on the scores.
* ``random``: ``default_rng(SeedSequence([seed]))`` draws ``total`` of all ``N`` samples,
  ignoring classes and scores.

A class kept whole (``t_c == size_c``) uses no generator. Results are reproducible for a given
seed and numpy version (numpy does not promise identical streams across major versions).

Cost: one O(N log N) sort (a single uint64 key sort for float16/float32 scores, np.lexsort
otherwise), O(N) array work, and Python-level work only per class that is partly kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = [
    "STRATEGIES",
    "SelectionError",
    "Subset",
    "allocate",
    "flexrand_counts",
    "resolve_keep",
    "select",
]

STRATEGIES: tuple[str, ...] = ("flexrand", "easy", "hard", "random", "stratified", "ccs")
CCS_BINS = 50
_SCORE_ORDERED = frozenset({"flexrand", "easy", "hard"})


class SelectionError(ValueError):
    """The selection request cannot be honoured (bad keep, split, seed, scores or labels)."""

    code = "invalid_selection"


@dataclass(frozen=True, eq=False)
class Subset:
    """The outcome of :func:`select`.

    Attributes:
        indices: int64, shape ``(size,)``, read-only; strictly ascending positions into the
            input ``scores`` / ``labels`` (the kept subset in input order).
        size: number of kept samples, equal to ``keep_total``.
        class_counts: kept samples per class, keyed by ``str(label)`` in sorted class order, every
            class present (0 allowed); ``{}`` for unlabelled data.
        strategy: one of :data:`STRATEGIES`.
        keep_total: the resolved size (:func:`resolve_keep`).
        split: the easy/hard split used by ``flexrand`` (recorded as given for other strategies).
        seed: the seed used (recorded even for the deterministic ``easy`` / ``hard``).
    """

    indices: np.ndarray
    size: int
    class_counts: dict[str, int]
    strategy: str
    keep_total: int
    split: float
    seed: int

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would compare the arrays element-wise and fail on truth-testing.
        if not isinstance(other, Subset):
            return NotImplemented
        return (
            np.array_equal(self.indices, other.indices)
            and self.size == other.size
            and self.class_counts == other.class_counts
            and self.strategy == other.strategy
            and self.keep_total == other.keep_total
            and self.split == other.split
            and self.seed == other.seed
        )

    __hash__ = None  # type: ignore[assignment]  # holds an array: not hashable


# --------------------------------------------------------------------------------------------
# Integer rules
# --------------------------------------------------------------------------------------------


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


# FlexRand's easy share g when a request names none: what bench/quality.py chose (docs/quality.md).
# Averaged over clean digits and digits with 20% of the labels flipped, 0.3 trained best: its
# hard half is drawn from a wider pool, so it keeps fewer mislabelled samples; on the clean set
# alone 0.5 and 0.7 did better.
DEFAULT_SPLIT = 0.3


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


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


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


def _check_scores(scores: Any) -> np.ndarray:
    arr = np.asarray(scores)
    if arr.ndim != 1:
        raise SelectionError(f"scores must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise SelectionError(f"scores must be real numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        n_nan = int(np.count_nonzero(np.isnan(arr)))
        if n_nan:
            raise SelectionError(f"scores contain {n_nan} NaN value(s) of {arr.size}")
    return arr


def _encode_labels(labels: Any, n: int) -> tuple[list[Any], np.ndarray]:
    """Sorted unique labels and, shape ``(n,)`` intp, each sample's class index."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise SelectionError(f"labels must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise SelectionError(f"labels has {arr.shape[0]} entries but scores has {n}")
    if arr.dtype.kind in "iu":
        low, high = int(arr.min()), int(arr.max())
        # Dense integer labels: a bincount is O(n), np.unique sorts the whole array.
        if high - low <= 4 * n + 1024:
            # Unsigned: arr >= min, so no wrap-around; signed: widen first so the span fits.
            if arr.dtype.kind == "u":
                offset = (arr - arr.min()).astype(np.intp)
            else:
                offset = (arr.astype(np.int64) - low).astype(np.intp, copy=False)
            present = np.bincount(offset) > 0
            class_of_offset = np.cumsum(present) - 1
            values = [low + i for i in np.flatnonzero(present).tolist()]
            return values, class_of_offset[offset]
    if arr.dtype.kind in "US":
        # Hashing is much faster than sorting a million strings; the class order (code-point
        # order) is the same as np.unique's.
        items = arr.tolist()
        values = sorted(dict.fromkeys(items))
        index = {v: i for i, v in enumerate(values)}
        inverse = np.fromiter(map(index.__getitem__, items), dtype=np.intp, count=n)
        return values, inverse
    try:
        uniq, inverse = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise SelectionError(f"labels cannot be ordered: {exc}") from exc
    return uniq.tolist(), inverse.reshape(-1).astype(np.intp, copy=False)


# --------------------------------------------------------------------------------------------
# Ordering and drawing
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def select(
    scores: Any,
    labels: Any = None,
    *,
    keep: float,
    strategy: str = "flexrand",
    split: float = DEFAULT_SPLIT,
    seed: int = 0,
    unscored: str = "error",
    keep_total: int | None = None,
    hard_cutoff: float = 0.1,
) -> Subset:
    """Choose a subset of samples from their hardness scores.

    Args:
        scores: 1-D real array-like, shape ``(N,)`` (float32/float64 in practice); low = easy.
            NaN is rejected, +-inf are ordinary extremes.
        labels: None, or a 1-D array-like of shape ``(N,)`` of anything ``np.unique`` can sort
            (ints, strings, ...). Per-class strategies run on one global class when None.
        keep: ratio in (0, 1] or count > 1 (see :func:`resolve_keep`).
        strategy: one of :data:`STRATEGIES`.
        split: FlexRand's easy share g in [0, 1]; validated for every strategy.
        seed: int >= 0.
        unscored: ``"error"`` (a NaN score is an error) or ``"exclude"``: samples with a NaN
            score (an instruction whose response was truncated away) are never kept; ``keep``
            still resolves against all N samples, and the total must fit in the scored ones.
        keep_total: internal: an already resolved size that overrides ``keep``.

    Returns:
        A :class:`Subset` with exactly ``resolve_keep(keep, N)`` sorted unique indices.

    Raises:
        SelectionError: on any invalid argument (the message says which and why).
    """
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise SelectionError(
            f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}"
        )
    split = _check_split(split)
    seed = _check_seed(seed)
    if unscored not in ("error", "exclude"):
        raise SelectionError(f"unscored must be 'error' or 'exclude', got {unscored!r}")
    if unscored == "exclude":
        arr = np.asarray(scores)
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            return _select_scored(arr, labels, keep, strategy, split, seed, hard_cutoff)
    values = _check_scores(scores)
    n = values.shape[0]
    total = resolve_keep(keep, n) if keep_total is None else keep_total
    if labels is None:
        class_values: list[Any] | None = None
        classes = None
        sizes = np.array([n], dtype=np.int64)
    else:
        class_values, classes = _encode_labels(labels, n)
        sizes = np.bincount(classes, minlength=len(class_values)).astype(np.int64)

    if strategy == "random":
        rng = np.random.default_rng(np.random.SeedSequence([seed]))
        chosen = np.sort(_draw(rng, n, total))
    elif strategy == "ccs":
        chosen = ccs_select(values, total, hard_cutoff=hard_cutoff, seed=seed)
    else:
        targets = allocate(sizes, total)
        chosen = _select_per_class(values, classes, sizes, targets, strategy, split, seed)

    indices = chosen.astype(np.int64, copy=False)
    indices.flags.writeable = False
    if class_values is None:
        class_counts: dict[str, int] = {}
    else:
        assert classes is not None
        kept = np.bincount(classes[indices], minlength=len(class_values))
        class_counts = {str(v): int(c) for v, c in zip(class_values, kept, strict=True)}
        if len(class_counts) != len(class_values):
            raise SelectionError("distinct labels have the same text; make labels unambiguous")
    return Subset(
        indices=indices,
        size=int(indices.shape[0]),
        class_counts=class_counts,
        strategy=strategy,
        keep_total=total,
        split=split,
        seed=seed,
    )


def ccs_select(
    scores: np.ndarray, total: int, *, hard_cutoff: float = 0.1, bins: int = CCS_BINS, seed: int = 0
) -> np.ndarray:
    """Coverage-centric selection (Zheng et al., 2023), over the whole dataset.

    The hardest ``beta = min(hard_cutoff, 1 - total / N)`` share (highest scores) is dropped;
    the rest is split into ``bins`` equal-width score strata; the budget goes to the strata from
    the smallest up, each taking at most an equal share of what is left (a stratum smaller than
    its share is taken whole); within a stratum samples are drawn uniformly from the seed.
    Returns ``total`` sorted positions, intp.
    """
    if not 0.0 <= hard_cutoff < 1.0:
        raise SelectionError(f"hard_cutoff must be in [0, 1), got {hard_cutoff!r}")
    n = scores.shape[0]
    beta = min(hard_cutoff, 1.0 - total / n)
    drop = int(np.floor(beta * n))
    order = np.lexsort((np.arange(n), scores))  # ascending score, ties by index
    pool = order[: n - drop]
    values = scores[pool].astype(np.float64)
    finite = np.isfinite(values)
    lo = float(values[finite].min()) if finite.any() else 0.0
    hi = float(values[finite].max()) if finite.any() else 0.0
    values = np.clip(values, lo, hi)  # infinite scores join the end strata
    if hi > lo:
        stratum = np.minimum(((values - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
    else:
        stratum = np.zeros(len(pool), dtype=np.int64)
    members = [pool[stratum == b] for b in range(bins)]
    members = [m for m in members if len(m)]
    # Smallest strata first; equal sizes keep their score order (deterministic).
    members.sort(key=len)
    rng = np.random.default_rng(np.random.SeedSequence([seed]))
    budget = total
    picks = []
    for i, m in enumerate(members):
        take = min(len(m), budget // (len(members) - i))
        picks.append(m[_draw(rng, len(m), take)])
        budget -= take
    chosen = np.sort(np.concatenate(picks)) if picks else np.empty(0, dtype=np.intp)
    assert len(chosen) == total
    return chosen.astype(np.intp)


def _select_scored(
    scores: np.ndarray,
    labels: Any,
    keep: float,
    strategy: str,
    split: float,
    seed: int,
    hard_cutoff: float = 0.1,
) -> Subset:
    """:func:`select` over the samples with a finite score; indices refer to the full input."""
    n = scores.shape[0]
    total = resolve_keep(keep, n)
    scored = np.flatnonzero(~np.isnan(scores))
    if total > len(scored):
        raise SelectionError(
            f"keep asks for {total} samples but only {len(scored)} of {n} have a score "
            f"({n - len(scored)} could not be scored)"
        )
    if len(scored) == 0:
        raise SelectionError("no sample has a score")
    sub_labels = None if labels is None else np.asarray(labels)[scored]
    inner = select(
        scores[scored],
        sub_labels,
        keep=1.0,
        strategy=strategy,
        split=split,
        seed=seed,
        keep_total=total,
        hard_cutoff=hard_cutoff,
    )
    indices = scored[inner.indices].astype(np.int64)
    indices.flags.writeable = False
    return Subset(
        indices=indices,
        size=inner.size,
        class_counts=inner.class_counts,
        strategy=strategy,
        keep_total=total,
        split=split,
        seed=seed,
    )


def _select_per_class(
    scores: np.ndarray,
    classes: np.ndarray | None,
    sizes: np.ndarray,
    targets: np.ndarray,
    strategy: str,
    split: float,
    seed: int,
) -> np.ndarray:
    """Sorted kept positions for a per-class strategy; shape ``(targets.sum(),)`` intp."""
    n = scores.shape[0]
    n_classes = sizes.shape[0]
    starts = np.cumsum(sizes) - sizes
    if strategy in _SCORE_ORDERED:
        order = _score_order(scores, classes, n_classes)
    elif classes is None:
        order = np.arange(n, dtype=np.intp)
    else:
        # Stratified draws among a class's members in input order: independent of the scores.
        order = np.argsort(_small_int(classes, n_classes), kind="stable")

    keep = np.zeros(n, dtype=bool)
    if strategy in ("easy", "hard"):
        # Rank of each sorted position inside its class, compared with the class's cut-off.
        class_sorted = np.repeat(np.arange(n_classes), sizes)
        rank = np.arange(n) - starts[class_sorted]
        if strategy == "easy":
            mask = rank < targets[class_sorted]
        else:
            mask = rank >= (sizes - targets)[class_sorted]
        keep[order[mask]] = True
        return np.flatnonzero(keep)

    full = targets == sizes
    if full.all():
        return np.arange(n, dtype=np.intp)
    if classes is not None and full.any():
        # Whole classes need no generator; doing them in bulk keeps the loop below short.
        keep |= full[classes]
    split_q = _decimal(split)
    low = split <= 0.5
    picks: list[np.ndarray] = []
    for c in np.flatnonzero((targets > 0) & ~full).tolist():
        size, target, start = int(sizes[c]), int(targets[c]), int(starts[c])
        rng = _class_rng(seed, c)
        if strategy == "stratified":
            picks.append(start + _draw(rng, size, target))
            continue
        n_easy, n_hard = _pool_counts(size, target, split_q, low)
        pool_easy = _round_half_up(size, split_q)
        picks.append(start + _draw(rng, pool_easy, n_easy))
        picks.append(start + pool_easy + _draw(rng, size - pool_easy, n_hard))
    if picks:
        keep[order[np.concatenate(picks)]] = True
    return np.flatnonzero(keep)
