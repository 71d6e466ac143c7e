"""The work of an evaluation, torch-free: split, select, train a probe, measure, summarise.

``run(features, labels, scores, request)`` is the whole computation; the worker task
(``worker.evaluate``) feeds it a job's kept embeddings and stores what it returns, and
``bench/evaluation.py`` times it. Selections are made by the service's own code
(:func:`app.selections.service.run_strategy`), the probe and intervals come from
:mod:`dlcprune.core.evaluation`.

Protocol:
1. one stratified held-out share (``holdout``), fixed by seed 0, the same for every cell;
2. for each seed ``s`` in ``0..seeds-1``, strategy and keep ratio: select from the remaining
   samples with selection seed ``s`` and train the probe with seed ``s`` (paired seeds: every
   strategy of a row shares them), then measure held-out accuracy;
3. the control ``stratified`` (class-stratified random) always runs, and so does the full
   remaining set (one probe: the logistic probe is deterministic, so every seed gives the same);
4. per cell: mean accuracy with its 95% t interval, and the paired difference from the control
   at the same keep ratio with its 95% interval;
5. the recommendation: the smallest keep ratio, with its strategy (highest mean at that ratio),
   whose interval's lower end is within ``tolerance`` of the full-set accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.selections.service import run_strategy
from dlcprune.core.evaluation import (
    DEFAULT_PROBE_MAX_ITER,
    paired_difference,
    probe_accuracy,
    stratified_holdout,
    t_interval,
)
from dlcprune.names import DEFAULT_HARD_CUTOFF, DEFAULT_SPLIT

CONTROL = "stratified"
# Strategies whose subset does not depend on the seed: selected once per keep ratio.
DETERMINISTIC = frozenset({"easy", "hard", "herding", "moderate"})
HOLDOUT_SEED = 0
PROBE = (
    "a frozen-feature proxy: multinomial logistic regression (L2, C=1, lbfgs) trained on the "
    "subset's kept backbone embeddings and measured on a stratified held-out share; it ranks "
    "subsets by how well a linear classifier on the pre-trained features learns from them, not "
    "by what fine-tuning the whole network on them would reach. In the project's benchmark "
    "(docs/quality.md) its ranking of subsets agreed with a fine-tuning protocol's with Spearman "
    "0.33 to 0.97 across four data sets, and 0.13 to 0.95 among strategies within a few points "
    "of each other: a screen, not the fine-tuned accuracy"
)


@dataclass(frozen=True)
class _Pick:
    keep: float
    strategy: str
    seed: int
    split: float = DEFAULT_SPLIT
    hard_cutoff: float = DEFAULT_HARD_CUTOFF


class Cancelled(Exception):
    pass


def cells_total(strategies: list[str], keep: list[float], seeds: int) -> int:
    return len(strategies) * len(keep) * seeds + 1


def run(
    features: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    request: dict[str, Any],
    progress: Callable[[int, int], bool] | None = None,
    max_iter: int = DEFAULT_PROBE_MAX_ITER,
    threads: int = 1,
) -> dict[str, Any]:
    """The evaluation's result (JSON-ready). ``progress(done, total)`` is called after every
    probe; returning True cancels (raises :class:`Cancelled`).

    BLAS and OpenMP run with ``threads`` threads (``DLCPRUNE_EVALUATION_THREADS``, default 1):
    the probes are small products, and on a shared machine more threads than free cores slow
    each fit down many times over (measured: 0.39 s with one thread, 11 s with the default
    two, under a load of 13 on 2 cores)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, int(threads))):
        return _run(features, labels, scores, request, progress, max_iter)


def _run(
    features: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    request: dict[str, Any],
    progress: Callable[[int, int], bool] | None,
    max_iter: int,
) -> dict[str, Any]:
    strategies = list(dict.fromkeys([CONTROL, *request["strategies"]]))
    keeps = sorted(float(k) for k in request["keep"])
    seeds = int(request["seeds"])
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels)
    pool, held = stratified_holdout(y, float(request["holdout"]), HOLDOUT_SEED)
    px, py, ps = x[pool], y[pool], np.asarray(scores)[pool]
    hx, hy = x[held], y[held]
    total = cells_total(strategies, keeps, seeds)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None and progress(done, total):
            raise Cancelled()

    full = probe_accuracy(px, py, hx, hy, 0, max_iter=max_iter)
    step()
    acc: dict[tuple[str, float], list[float]] = {}
    sizes: dict[tuple[str, float], int] = {}
    fixed: dict[tuple[str, float], np.ndarray] = {}
    for seed in range(seeds):
        for strategy in strategies:
            for keep in keeps:
                idx = fixed.get((strategy, keep))
                if idx is None:
                    idx = run_strategy(ps, py, _Pick(keep, strategy, seed), features=px).indices
                    if strategy in DETERMINISTIC:
                        fixed[(strategy, keep)] = idx
                sizes[(strategy, keep)] = len(idx)
                a = probe_accuracy(px[idx], py[idx], hx, hy, seed, max_iter=max_iter)
                acc.setdefault((strategy, keep), []).append(a)
                step()
    cells = []
    for strategy in strategies:
        for keep in keeps:
            values = np.array(acc[(strategy, keep)])
            control = np.array(acc[(CONTROL, keep)])
            diff = None if strategy == CONTROL else paired_difference(values, control).as_dict()
            cells.append(
                {
                    "strategy": strategy,
                    "keep": keep,
                    "size": sizes[(strategy, keep)],
                    "accuracies": [round(float(v), 6) for v in values],
                    "accuracy": t_interval(values).as_dict(),
                    "difference_from_control": diff,
                }
            )
    return {
        "probe": PROBE,
        "control": CONTROL,
        "strategies": strategies,
        "keep": keeps,
        "seeds": seeds,
        "holdout": {"share": float(request["holdout"]), "size": len(held), "seed": 0},
        "train_pool_size": len(pool),
        "full": {"accuracy": full, "size": len(pool)},
        "cells": cells,
        "recommendation": recommend(cells, full, float(request["tolerance"])),
    }


def recommend(cells: list[dict[str, Any]], full: float, tolerance: float) -> dict[str, Any] | None:
    """The smallest keep ratio whose best strategy (highest mean) has an interval lower end
    (the mean when there is one seed) at least ``full - tolerance``; None when none does."""
    ok = []
    for cell in cells:
        low = cell["accuracy"]["low"]
        low = cell["accuracy"]["mean"] if low is None else low
        if low >= full - tolerance:
            ok.append((cell["keep"], -cell["accuracy"]["mean"], cell["strategy"], cell))
    if not ok:
        return None
    keep, _, strategy, cell = min(ok, key=lambda t: (t[0], t[1], t[2]))
    return {
        "keep": keep,
        "strategy": strategy,
        "accuracy": cell["accuracy"],
        "full_accuracy": full,
        "tolerance": tolerance,
        "reason": f"the smallest keep ratio whose accuracy interval's lower end is within "
        f"{tolerance:g} of the full set's {full:.4f}",
    }
