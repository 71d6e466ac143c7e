"""Feature-space selection: k-Center greedy, Herding and Moderate-DS over stored embeddings.

Pure numpy. These strategies look at each sample's unmasked backbone features (the embeddings a
scoring job keeps), not at its score; they run on demand with no model pass. Like the score
strategies, they are per class: the kept total is :func:`~.rules.resolve_keep` of the eligible
samples' count base, split over the classes by :func:`~.rules.allocate`, and each class picks its
``t_c`` samples from its own features.

* ``kcenter`` (k-Center greedy, Sener & Savarese 2018): per class, start at one sample drawn by
  ``default_rng(SeedSequence([seed, c]))``, then repeatedly add the sample farthest (Euclidean)
  from everything picked so far (ties: the lowest position). Cost O(t_c · n_c · d).
* ``herding`` (Welling 2009; Chen et al. 2010): per class, greedily add the sample that brings the
  mean of the picked samples closest to the class mean (ties: the lowest position). Deterministic;
  the seed is recorded but unused. Cost O(t_c · n_c · d).
* ``moderate`` (Moderate-DS, Xia et al. 2023): per class, the ``t_c`` samples whose distance to
  the class mean is closest to the median distance (ties: the lowest position). Deterministic;
  cost O(n_c · d).

Features are used in float32 whatever their stored type (float16 in the blob store).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcprune.core.selection.order import _class_rng
from dlcprune.core.selection.rules import SelectionError, _check_seed, allocate, resolve_keep
from dlcprune.core.selection.strategies import Subset, _encode_labels
from dlcprune.names import DEFAULT_SPLIT, FEATURE_STRATEGIES

__all__ = ["FEATURE_STRATEGIES", "select_features"]


def _kcenter(x: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    if t >= n:
        return np.arange(n)
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64).astype(np.float32)
    first = int(rng.integers(n))
    picked = [first]
    dmin = sq - 2.0 * (x @ x[first]) + sq[first]
    dmin[first] = -np.inf
    for _ in range(t - 1):
        nxt = int(np.argmax(dmin))
        picked.append(nxt)
        np.minimum(dmin, sq - 2.0 * (x @ x[nxt]) + sq[nxt], out=dmin)
        dmin[nxt] = -np.inf
    return np.asarray(picked, dtype=np.int64)


def _herding(x: np.ndarray, t: int) -> np.ndarray:
    n = len(x)
    if t >= n:
        return np.arange(n)
    mu = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64).astype(np.float32)
    total = np.zeros(x.shape[1], dtype=np.float32)
    taken = np.zeros(n, dtype=bool)
    picked = np.empty(t, dtype=np.int64)
    for k in range(t):
        # || total + x_i - (k+1) mu ||^2 up to a constant: ||x_i||^2 + 2 x_i . (total - (k+1) mu)
        cost = sq + 2.0 * (x @ (total - (k + 1) * mu))
        cost[taken] = np.inf
        i = int(np.argmin(cost))
        picked[k] = i
        taken[i] = True
        total += x[i]
    return picked


def _moderate(x: np.ndarray, t: int) -> np.ndarray:
    n = len(x)
    if t >= n:
        return np.arange(n)
    mu = x.mean(axis=0, dtype=np.float64)
    dist = np.linalg.norm(x.astype(np.float64) - mu, axis=1)
    gap = np.abs(dist - np.median(dist))
    return np.lexsort((np.arange(n), gap))[:t].astype(np.int64)


def select_features(
    features: Any,
    labels: Any = None,
    *,
    keep: float,
    strategy: str,
    seed: int = 0,
    eligible: np.ndarray | None = None,
    keep_total: int | None = None,
) -> Subset:
    """Choose a subset by the samples' features.

    Args:
        features: shape ``(N, D)``, real (float16 / float32); finite.
        labels: None (one class) or shape ``(N,)``, as for :func:`~.strategies.select`.
        keep: a ratio in (0, 1] or a count above 1, resolved against ``N``
            (:func:`~.rules.resolve_keep`); it must fit in the eligible samples.
        strategy: one of :data:`FEATURE_STRATEGIES`.
        seed: int >= 0 (``kcenter``'s first centre per class; recorded by the others).
        eligible: optional bool ``(N,)``; samples marked False are never kept (unscored samples,
            suspected mislabels). Classes are allocated over the eligible samples.
        keep_total: internal: an already resolved size that overrides ``keep``.

    Returns:
        A :class:`~.strategies.Subset` with exactly ``resolve_keep(keep, N)`` ascending indices.
    """
    if not isinstance(strategy, str) or strategy not in FEATURE_STRATEGIES:
        raise SelectionError(
            f"unknown feature strategy {strategy!r}; valid: {', '.join(FEATURE_STRATEGIES)}"
        )
    seed = _check_seed(seed)
    x = np.asarray(features)
    if x.ndim != 2 or x.dtype.kind not in "iuf":
        raise SelectionError(f"features must be a real (N, D) array, got shape {x.shape}")
    n = x.shape[0]
    if n == 0:
        raise SelectionError("no samples to select from")
    total = resolve_keep(keep, n) if keep_total is None else int(keep_total)
    mask = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    if mask.shape != (n,):
        raise SelectionError(f"eligible must have shape ({n},), got {mask.shape}")
    pool = np.flatnonzero(mask)
    if total > len(pool):
        raise SelectionError(
            f"keep asks for {total} samples but only {len(pool)} of {n} may be kept "
            f"({n - len(pool)} left out)"
        )
    if labels is None:
        class_values: list[Any] | None = None
        classes = np.zeros(n, dtype=np.intp)
        num_classes = 1
    else:
        class_values, classes = _encode_labels(labels, n)
        num_classes = len(class_values)
    sizes = np.bincount(classes[pool], minlength=num_classes).astype(np.int64)
    targets = allocate(sizes, total)
    chosen: list[np.ndarray] = []
    for c in range(num_classes):
        t_c = int(targets[c])
        if t_c == 0:
            continue
        members = pool[classes[pool] == c]
        xc = np.ascontiguousarray(x[members], dtype=np.float32)
        if not np.all(np.isfinite(xc)):
            raise SelectionError("features contain non-finite values")
        if strategy == "kcenter":
            local = _kcenter(xc, t_c, _class_rng(seed, c))
        elif strategy == "herding":
            local = _herding(xc, t_c)
        else:
            local = _moderate(xc, t_c)
        chosen.append(members[local])
    indices = np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)
    indices = indices.astype(np.int64, copy=False)
    indices.flags.writeable = False
    if class_values is None:
        class_counts: dict[str, int] = {}
    else:
        kept = np.bincount(classes[indices], minlength=num_classes)
        class_counts = {str(v): int(k) for v, k in zip(class_values, kept, strict=True)}
    return Subset(
        indices=indices,
        size=int(indices.shape[0]),
        class_counts=class_counts,
        strategy=strategy,
        keep_total=total,
        split=DEFAULT_SPLIT,
        seed=seed,
    )
