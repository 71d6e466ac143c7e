"""The evaluation helpers (``dlcprune.core.evaluation``) on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dlcprune.core.evaluation import (
    EvaluationError,
    fit_probe,
    paired_difference,
    probe_accuracy,
    self_confidence,
    stratified_folds,
    stratified_holdout,
    suspected_mislabels,
    t_interval,
)


def _blobs(n_per_class: int, classes: int, dims: int, seed: int, spread: float = 0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)) * 3.0
    y = np.repeat(np.arange(classes), n_per_class)
    x = centres[y] + rng.normal(size=(len(y), dims)) * spread
    perm = rng.permutation(len(y))
    return x[perm].astype(np.float32), y[perm]


def test_holdout_is_stratified_exact_and_fixed_by_the_seed() -> None:
    y = np.array([0] * 10 + [1] * 5 + [2] * 1 + [3] * 2)
    train, held = stratified_holdout(y, 0.2, seed=7)
    # round half up per class: 10 -> 2, 5 -> 1, 1 -> 0 (kept whole), 2 -> 0 (0.4 rounds down)
    assert np.bincount(y[held], minlength=4).tolist() == [2, 1, 0, 0]
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(len(y)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(held) > 0)
    again_train, again_held = stratified_holdout(y, 0.2, seed=7)
    assert np.array_equal(held, again_held) and np.array_equal(train, again_train)
    _, other = stratified_holdout(y, 0.2, seed=8)
    assert not np.array_equal(held, other)


def test_holdout_leaves_every_class_a_training_sample() -> None:
    y = np.array([0, 0, 1, 1, 1])
    train, held = stratified_holdout(y, 0.9, seed=0)
    assert set(y[train].tolist()) == {0, 1}
    assert len(held) == 1 + 2


@pytest.mark.parametrize("share", [0.0, 1.0, -0.1, 1.5])
def test_holdout_refuses_a_share_outside_0_1(share: float) -> None:
    with pytest.raises(EvaluationError, match="holdout share"):
        stratified_holdout(np.zeros(10), share, seed=0)


def test_folds_spread_each_class_evenly() -> None:
    y = np.array([0] * 11 + [1] * 7)
    folds = stratified_folds(y, 5, seed=3)
    for c in (0, 1):
        counts = np.bincount(folds[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1 and counts.sum() == (y == c).sum()
    assert np.array_equal(folds, stratified_folds(y, 5, seed=3))


def test_probe_learns_separable_blobs_and_is_deterministic() -> None:
    x, y = _blobs(60, 4, 8, seed=1)
    train, held = stratified_holdout(y, 0.25, seed=0)
    acc = probe_accuracy(x[train], y[train], x[held], y[held], seed=0)
    assert acc == 1.0
    a = fit_probe(x[train], y[train], seed=3)
    b = fit_probe(x[train], y[train], seed=3)
    assert np.array_equal(a.model.coef_, b.model.coef_)  # type: ignore[union-attr]


def test_probe_on_noise_is_near_chance() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 16)).astype(np.float32)
    y = rng.integers(0, 4, size=2000)
    acc = probe_accuracy(x[:1000], y[:1000], x[1000:], y[1000:], seed=0)
    assert 0.18 < acc < 0.32


def test_probe_with_one_class_predicts_it() -> None:
    x, _ = _blobs(5, 2, 3, seed=0)
    probe = fit_probe(x[:4], np.array([2, 2, 2, 2]))
    assert probe.predict(x).tolist() == [2] * len(x)
    assert probe_accuracy(x[:4], np.full(4, 2), x[4:6], np.array([2, 1])) == 0.5


def test_t_interval_matches_the_formula() -> None:
    v = np.array([0.80, 0.82, 0.79, 0.85, 0.81])
    iv = t_interval(v)
    half = stats.t.ppf(0.975, 4) * v.std(ddof=1) / np.sqrt(5)
    assert iv.mean == pytest.approx(0.814)
    assert iv.low == pytest.approx(0.814 - half) and iv.high == pytest.approx(0.814 + half)
    assert iv.n == 5
    assert t_interval(np.array([0.5, 0.5, 0.5])).as_dict() == {
        "mean": 0.5,
        "low": 0.5,
        "high": 0.5,
        "n": 3,
    }
    one = t_interval(np.array([0.3]))
    assert (one.mean, one.low, one.high, one.n) == (0.3, None, None, 1)


def test_t_interval_refuses_empty_and_non_finite() -> None:
    with pytest.raises(EvaluationError, match="at least one"):
        t_interval(np.array([]))
    with pytest.raises(EvaluationError, match="finite"):
        t_interval(np.array([0.1, np.nan]))


def test_paired_difference_cancels_the_shared_seed_effect() -> None:
    # A constant gain of 0.01 on top of a large per-seed effect: the paired interval is exact.
    seed_effect = np.array([0.1, -0.2, 0.3, 0.0, -0.1])
    a = 0.7 + seed_effect + 0.01
    b = 0.7 + seed_effect
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(0.01)
    assert d.low == pytest.approx(0.01) and d.high == pytest.approx(0.01)
    unpaired = t_interval(a)
    assert unpaired.high - unpaired.low > 0.3  # type: ignore[operator]
    with pytest.raises(EvaluationError, match="match in length"):
        paired_difference(a, b[:3])


def test_self_confidence_finds_flipped_labels() -> None:
    x, y = _blobs(40, 3, 6, seed=2)
    noisy = y.copy()
    flipped = np.array([0, 5, 17, 33, 60])
    noisy[flipped] = (noisy[flipped] + 1) % 3
    conf = self_confidence(x, noisy, folds=5, seed=0)
    assert conf.dtype == np.float32 and conf.shape == (len(y),)
    assert np.all((conf >= 0) & (conf <= 1))
    # the five flipped samples are exactly the five least confident
    assert sorted(suspected_mislabels(conf, share=5 / len(y)).tolist()) == flipped.tolist()
    assert np.array_equal(conf, self_confidence(x, noisy, folds=5, seed=0))


def test_self_confidence_gives_zero_to_a_label_its_folds_never_saw() -> None:
    x, y = _blobs(10, 2, 4, seed=0)
    y = y.copy()
    lone = int(np.flatnonzero(y == 0)[0])
    y[lone] = 9  # a class of one sample: the other folds never see it
    conf = self_confidence(x, y, folds=3, seed=0)
    assert conf[lone] == 0.0


def test_suspected_by_share_and_threshold() -> None:
    conf = np.array([0.9, 0.1, 0.5, 0.1, 0.05, 0.95])
    assert suspected_mislabels(conf, share=0.5).tolist() == [4, 1, 3]
    assert suspected_mislabels(conf, threshold=0.5).tolist() == [4, 1, 3]
    assert suspected_mislabels(conf, threshold=0.05).tolist() == []
    assert suspected_mislabels(conf, share=0.0).tolist() == []
    with pytest.raises(EvaluationError, match="exactly one"):
        suspected_mislabels(conf)
    with pytest.raises(EvaluationError, match="share must be"):
        suspected_mislabels(conf, share=1.5)
