"""Subset selection from per-sample hardness scores: FlexRand, top-K easy/hard, random,
stratified and CCS.

Everything here is pure numpy. A low score means an easy sample. The entry point is :func:`select`.
The integer rules it is built from (:func:`resolve_keep`, :func:`allocate`,
:func:`flexrand_counts`) are defined exactly in :mod:`.rules`; :mod:`.order` sorts and draws;
:mod:`.ccs` is coverage-centric selection.

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

from dataclasses import dataclass
from typing import Any

import numpy as np

from dlcprune.core.selection.ccs import ccs_select
from dlcprune.core.selection.order import _class_rng, _draw, _score_order, _small_int
from dlcprune.core.selection.rules import (
    SelectionError,
    _check_seed,
    _check_split,
    _decimal,
    _pool_counts,
    _round_half_up,
    allocate,
    resolve_keep,
)
from dlcprune.names import DEFAULT_HARD_CUTOFF, DEFAULT_SPLIT, DEFAULT_STRATEGY, STRATEGIES

__all__ = ["STRATEGIES", "Subset", "select"]

_SCORE_ORDERED = frozenset({"flexrand", "easy", "hard"})


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
# Entry point
# --------------------------------------------------------------------------------------------


def select(
    scores: Any,
    labels: Any = None,
    *,
    keep: float,
    strategy: str = DEFAULT_STRATEGY,
    split: float = DEFAULT_SPLIT,
    seed: int = 0,
    unscored: str = "error",
    keep_total: int | None = None,
    hard_cutoff: float = DEFAULT_HARD_CUTOFF,
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
            return _select_scored(arr, labels, keep, strategy, split, seed, hard_cutoff, keep_total)
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


def _select_scored(
    scores: np.ndarray,
    labels: Any,
    keep: float,
    strategy: str,
    split: float,
    seed: int,
    hard_cutoff: float = DEFAULT_HARD_CUTOFF,
    keep_total: int | None = None,
) -> Subset:
    """:func:`select` over the samples with a finite score; indices refer to the full input."""
    n = scores.shape[0]
    total = resolve_keep(keep, n) if keep_total is None else keep_total
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
