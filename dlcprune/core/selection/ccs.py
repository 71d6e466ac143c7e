"""Coverage-centric selection (CCS; Zheng et al., 2023) over the whole dataset."""

from __future__ import annotations

import numpy as np

from dlcprune.core.selection.order import _draw
from dlcprune.core.selection.rules import SelectionError
from dlcprune.names import DEFAULT_HARD_CUTOFF

# Equal-width score strata the budget is spread over.
CCS_BINS = 50


def ccs_select(
    scores: np.ndarray,
    total: int,
    *,
    hard_cutoff: float = DEFAULT_HARD_CUTOFF,
    bins: int = CCS_BINS,
    seed: int = 0,
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
