"""Statistics of the quality benchmark (torch-free): 95% intervals over paired seeds, rank
agreement, label-issue detection, and the frozen-feature probe (the evaluations' proxy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dlcprune.core import evaluation


def _triple(ci: Any) -> tuple[float, float, float]:
    low = math.nan if ci.low is None else ci.low
    high = math.nan if ci.high is None else ci.high
    return ci.mean, low, high


def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and its 95% interval (Student's t over the values, e.g. one per seed), by the
    service's own :func:`dlcprune.core.evaluation.t_interval`.

    With fewer than two values the interval is unknown: ``(mean, nan, nan)``."""
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    return _triple(evaluation.t_interval(np.asarray(values, dtype=np.float64)))


def paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Mean difference ``a - b`` over paired seeds (same index = same selection and training
    seed) and its 95% interval."""
    if len(a) != len(b):
        raise ValueError(f"paired values differ in count: {len(a)} and {len(b)}")
    return _triple(evaluation.paired_difference(np.asarray(a), np.asarray(b)))


def excludes_zero(ci: tuple[float, float, float]) -> bool:
    _, lo, hi = ci
    return not (math.isnan(lo) or lo <= 0.0 <= hi)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation of two equally long sequences (nan when either is constant)."""
    from scipy.stats import spearmanr

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` (higher = more likely positive) for the boolean
    ``positive``; nan when only one class is present."""
    from sklearn.metrics import roc_auc_score

    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return math.nan
    return float(roc_auc_score(positive, score))


def probe_accuracy(
    train_f: np.ndarray,
    train_y: np.ndarray,
    test_f: np.ndarray,
    test_y: np.ndarray,
    subset: np.ndarray,
    seed: int,
) -> float:
    """The frozen-feature proxy: the evaluations' probe
    (:func:`dlcprune.core.evaluation.probe_accuracy`) trained on the features (N, D) of
    ``subset`` (training indices) and measured on the test split. Deterministic under ``seed``."""
    return evaluation.probe_accuracy(train_f[subset], train_y[subset], test_f, test_y, seed)


def self_confidence(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0):
    """Cross-validated probability of each sample's given label (cleanlab's self-confidence), as
    the service computes it for label issues: (N,) in [0, 1]; low = a suspected label issue."""
    return evaluation.self_confidence(features, labels, folds=folds, seed=seed).astype(np.float64)
