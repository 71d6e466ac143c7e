"""Statistics of the quality benchmark (torch-free): 95% intervals over paired seeds, rank
agreement, label-issue detection, and the frozen-feature probe (the evaluations' proxy)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and its 95% interval (Student's t over the values, e.g. one per seed).

    With fewer than two values the interval is unknown: ``(mean, nan, nan)``."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean()) if len(x) else math.nan
    if len(x) < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Mean difference ``a - b`` over paired seeds (same index = same selection and training
    seed) and its 95% interval."""
    if len(a) != len(b):
        raise ValueError(f"paired values differ in count: {len(a)} and {len(b)}")
    return interval(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))


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


def _probe(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, max_iter=100, random_state=seed)
    )


def probe_accuracy(
    train_f: np.ndarray,
    train_y: np.ndarray,
    test_f: np.ndarray,
    test_y: np.ndarray,
    subset: np.ndarray,
    seed: int,
) -> float:
    """The frozen-feature proxy: held-out accuracy of a multinomial logistic regression trained
    on the features (N, D) of ``subset`` (training indices). Deterministic under ``seed``."""
    y = train_y[subset]
    if len(np.unique(y)) < 2:
        values, counts = np.unique(y, return_counts=True)
        return float(np.mean(test_y == values[np.argmax(counts)]))
    model = _probe(seed).fit(train_f[subset], y)
    return float(np.mean(model.predict(test_f) == test_y))


def self_confidence(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0):
    """Cross-validated probability of each sample's given label (cleanlab's self-confidence):
    (N,) float64 in [0, 1]; low = a suspected label issue."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(_probe(seed), features, labels, cv=cv, method="predict_proba")
    classes = np.unique(labels)
    return proba[np.arange(len(labels)), np.searchsorted(classes, labels)]
