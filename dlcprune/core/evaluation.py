"""Measuring a subset: a held-out split, a frozen-feature probe, intervals and label confidence.

Everything here is torch-free (numpy, scikit-learn, scipy) and deterministic under its seeds.

* :func:`stratified_holdout` splits samples into a training pool and a held-out share, per class,
  fixed by a seed.
* :func:`fit_probe` / :func:`probe_accuracy` train a multinomial logistic regression on features
  (standardised with the training subset's mean and spread) and measure held-out accuracy. The
  probe is a *frozen-feature proxy* for fine-tuning: it says how well a linear classifier on the
  backbone's unmasked features learns from a subset, not what fine-tuning the whole network on it
  would reach.
* :func:`t_interval` and :func:`paired_difference` give a mean and its 95% Student-t interval.
* :func:`self_confidence` is cleanlab's self-confidence of each sample's given label: the
  out-of-fold predicted probability of that label from a cross-validated probe (computed here;
  cleanlab is not a dependency). Low values are suspected mislabels.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

__all__ = [
    "EvaluationError",
    "Interval",
    "Probe",
    "fit_probe",
    "paired_difference",
    "probe_accuracy",
    "self_confidence",
    "stratified_folds",
    "stratified_holdout",
    "suspected_mislabels",
    "t_interval",
]

DEFAULT_PROBE_C = 1.0
DEFAULT_PROBE_MAX_ITER = 100


class EvaluationError(ValueError):
    """Bad input to an evaluation helper (message names the argument)."""


def _labels_1d(labels: np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise EvaluationError(f"labels must be one-dimensional, got shape {y.shape}")
    return y


def _features_2d(features: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] != n:
        raise EvaluationError(f"features must have shape ({n}, dims), got {x.shape}")
    return x


def stratified_holdout(
    labels: np.ndarray, share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..N-1`` into (training pool, held-out), class by class.

    Per class ``c`` (``np.unique`` order) of ``n_c`` samples, ``h_c = round(n_c * share)``
    (half up) samples go to the held-out share, at most ``n_c - 1`` so every class keeps one
    training sample; a class of one sample stays whole in the pool. The ``h_c`` are drawn with
    ``default_rng(SeedSequence([seed, c])).permutation`` of the class's positions in input order,
    so the split depends on the labels and the seed only.

    Args:
        labels: shape ``(N,)``, any sortable dtype.
        share: in ``(0, 1)``.
        seed: a non-negative integer.

    Returns:
        Two int64 arrays, ascending, disjoint, together ``0..N-1``.
    """
    y = _labels_1d(labels)
    if not 0.0 < float(share) < 1.0:
        raise EvaluationError(f"holdout share must be in (0, 1), got {share}")
    if int(seed) < 0:
        raise EvaluationError(f"seed must be non-negative, got {seed}")
    classes, inverse = np.unique(y, return_inverse=True)
    held: list[np.ndarray] = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        n_c = len(members)
        h_c = min(math.floor(n_c * float(share) + 0.5), n_c - 1)
        if h_c <= 0:
            continue
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), c]))
        held.append(rng.permutation(members)[:h_c])
    holdout = np.sort(np.concatenate(held)) if held else np.empty(0, dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[holdout] = False
    return np.flatnonzero(mask).astype(np.int64), holdout.astype(np.int64)


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Assign each sample a fold in ``0..folds-1``, spreading every class over the folds.

    Per class ``c``, its positions are permuted with ``default_rng(SeedSequence([seed, c]))`` and
    dealt round-robin, starting at fold ``c % folds``, so fold sizes differ by at most one class
    by class. Returns int64, shape ``(N,)``.
    """
    y = _labels_1d(labels)
    if int(folds) < 2:
        raise EvaluationError(f"folds must be at least 2, got {folds}")
    classes, inverse = np.unique(y, return_inverse=True)
    out = np.empty(len(y), dtype=np.int64)
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), c]))
        order = rng.permutation(members)
        out[order] = (np.arange(len(order)) + c) % int(folds)
    return out


@dataclass(frozen=True)
class Probe:
    """A fitted frozen-feature probe. ``classes`` are the labels it can predict (sorted)."""

    classes: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    model: LogisticRegression | None

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Probabilities, shape ``(M, len(classes))``, rows summing to 1."""
        x = np.asarray(features, dtype=np.float32)
        if self.model is None:  # one class seen: it gets every sample
            return np.ones((len(x), 1), dtype=np.float64)
        z = (x - self.mean) / self.scale
        return self.model.predict_proba(z)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.classes[np.argmax(self.predict_proba(features), axis=1)]


def fit_probe(
    features: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    *,
    c: float = DEFAULT_PROBE_C,
    max_iter: int = DEFAULT_PROBE_MAX_ITER,
) -> Probe:
    """Fit a multinomial logistic regression (L2, ``C=c``, lbfgs) on standardised features.

    Deterministic: lbfgs takes no random steps and ``random_state=seed`` is recorded; the same
    inputs give the same coefficients bit for bit on the same machine. Stopping at ``max_iter``
    is expected on large sets (the convergence warning is silenced: the budget is the protocol).

    Args:
        features: shape ``(N, D)``, float; computed in float32.
        labels: shape ``(N,)``; at least one sample.
    """
    y = _labels_1d(labels)
    if len(y) == 0:
        raise EvaluationError("a probe needs at least one training sample")
    x = _features_2d(features, len(y)).astype(np.float32, copy=False)
    classes = np.unique(y)
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    scale = x.std(axis=0, dtype=np.float64).astype(np.float32)
    scale[scale < 1e-6] = 1.0
    if len(classes) == 1:
        return Probe(classes=classes, mean=mean, scale=scale, model=None)
    model = LogisticRegression(C=float(c), max_iter=int(max_iter), random_state=int(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit((x - mean) / scale, y)
    return Probe(classes=classes, mean=mean, scale=scale, model=model)


def probe_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    seed: int = 0,
    *,
    c: float = DEFAULT_PROBE_C,
    max_iter: int = DEFAULT_PROBE_MAX_ITER,
) -> float:
    """Held-out accuracy in ``[0, 1]`` of :func:`fit_probe` trained on ``(train_x, train_y)``."""
    ty = _labels_1d(test_y)
    if len(ty) == 0:
        raise EvaluationError("held-out set is empty")
    probe = fit_probe(train_x, train_y, seed, c=c, max_iter=max_iter)
    pred = probe.predict(_features_2d(test_x, len(ty)))
    return float(np.mean(pred == ty))


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided 95% Student-t interval over ``n`` values.

    ``low``/``high`` are ``None`` when ``n < 2`` (no spread to estimate); with zero spread they
    equal the mean.
    """

    mean: float
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def t_interval(values: np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean and ``mean ± t_{(1+confidence)/2, n-1} · s / sqrt(n)`` (``s``: sample std, ddof 1)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if len(v) == 0:
        raise EvaluationError("an interval needs at least one value")
    if not np.all(np.isfinite(v)):
        raise EvaluationError("values must be finite")
    if not 0.0 < confidence < 1.0:
        raise EvaluationError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(v.mean())
    if len(v) < 2:
        return Interval(mean=mean, low=None, high=None, n=1)
    half = float(
        stats.t.ppf((1.0 + confidence) / 2.0, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    )
    return Interval(mean=mean, low=mean - half, high=mean + half, n=len(v))


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> Interval:
    """:func:`t_interval` of ``a[i] - b[i]`` (pairs share a seed); shapes must match."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise EvaluationError(f"paired values must match in length, got {len(x)} and {len(y)}")
    return t_interval(x - y, confidence)


def self_confidence(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    c: float = DEFAULT_PROBE_C,
    max_iter: int = DEFAULT_PROBE_MAX_ITER,
) -> np.ndarray:
    """Out-of-fold probability of each sample's given label (cleanlab's self-confidence).

    Samples are dealt into ``folds`` by :func:`stratified_folds`; for each fold a probe
    (:func:`fit_probe`) is trained on the other folds and predicts the fold. A label the training
    folds lack gets probability 0. Returns float32, shape ``(N,)``, values in ``[0, 1]``; low
    means the features disagree with the label.
    """
    y = _labels_1d(labels)
    x = _features_2d(features, len(y))
    if len(y) < 2:
        raise EvaluationError("self-confidence needs at least two samples")
    folds = min(int(folds), len(y))
    assignment = stratified_folds(y, folds, seed)
    out = np.zeros(len(y), dtype=np.float32)
    for f in range(folds):
        test = assignment == f
        if not test.any():
            continue
        probe = fit_probe(x[~test], y[~test], seed, c=c, max_iter=max_iter)
        proba = probe.predict_proba(x[test])
        column = np.searchsorted(probe.classes, y[test])
        column = np.minimum(column, len(probe.classes) - 1)
        known = probe.classes[column] == y[test]
        picked = proba[np.arange(len(column)), column]
        out[np.flatnonzero(test)] = np.where(known, picked, 0.0)
    return out


def suspected_mislabels(
    confidence: np.ndarray, *, share: float | None = None, threshold: float | None = None
) -> np.ndarray:
    """Positions of suspected mislabels, lowest self-confidence first (ties by position).

    Exactly one of ``share`` (in ``[0, 1]``: the ``round(N * share)`` least confident, half up)
    or ``threshold`` (in ``[0, 1]``: every sample whose confidence is strictly below it).
    Returns int64.
    """
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    if (share is None) == (threshold is None):
        raise EvaluationError("give exactly one of share or threshold")
    order = np.lexsort((np.arange(len(conf)), conf))
    if share is not None:
        if not 0.0 <= float(share) <= 1.0:
            raise EvaluationError(f"share must be in [0, 1], got {share}")
        k = math.floor(len(conf) * float(share) + 0.5)
        return order[:k].astype(np.int64)
    if not 0.0 <= float(threshold) <= 1.0:
        raise EvaluationError(f"threshold must be in [0, 1], got {threshold}")
    return order[conf[order] < float(threshold)].astype(np.int64)
