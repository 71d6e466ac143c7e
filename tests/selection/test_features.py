"""Feature-space strategies (``dlcprune.core.selection.features``) on small known geometry."""

from __future__ import annotations

import numpy as np
import pytest

from dlcprune.core.selection import SelectionError
from dlcprune.core.selection.features import select_features


def _line() -> np.ndarray:
    # ten points on a line at 0..9, one class
    return np.arange(10, dtype=np.float32).reshape(-1, 1)


def test_kcenter_covers_the_extremes_first() -> None:
    x = _line()
    sub = select_features(x, None, keep=3, strategy="kcenter", seed=0)
    first = int(np.random.default_rng(np.random.SeedSequence([0, 0])).integers(10))
    # from any start on a line, the farthest point is an end, then the other end (or the middle)
    assert sub.size == 3 and first in sub.indices.tolist()
    assert {0, 9} & set(sub.indices.tolist())
    assert sub == select_features(x, None, keep=3, strategy="kcenter", seed=0)


def test_kcenter_picks_one_per_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], dtype=np.float32)
    x = np.concatenate([c + rng.normal(size=(25, 2)).astype(np.float32) for c in centres])
    for seed in range(5):
        sub = select_features(x, None, keep=4, strategy="kcenter", seed=seed)
        assert sorted((sub.indices // 25).tolist()) == [0, 1, 2, 3]


def test_herding_matches_the_mean_greedily() -> None:
    x = np.array([[0.0], [10.0], [4.0], [6.0], [5.2]], dtype=np.float32)  # mean 5.04
    sub = select_features(x, None, keep=0.2, strategy="herding")
    assert sub.indices.tolist() == [4]
    # then the sample that brings the pair's mean closest to 5.04: 4.0 ((5.2+4)/2 = 4.6)
    # beats 6.0 (5.6)
    assert select_features(x, None, keep=0.4, strategy="herding").indices.tolist() == [2, 4]


def test_moderate_keeps_the_median_distance_band() -> None:
    # distances to the mean (0) are 1..9: the median is 5, so the band is 5, then 4 and 6
    x = np.array([[d] for d in [1, -2, 3, -4, 5, -6, 7, -8, 9]], dtype=np.float32)
    x = np.concatenate([x, -x.sum(keepdims=True)])  # a tenth point at 5 keeps the mean at 0
    sub = select_features(x, None, keep=3, strategy="moderate")
    dist = np.abs(x[:, 0])
    assert sorted(dist[sub.indices].tolist()) in ([4.0, 5.0, 5.0], [5.0, 5.0, 6.0])


@pytest.mark.parametrize("strategy", ["kcenter", "herding", "moderate"])
def test_exact_size_per_class_and_eligibility(strategy: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)).astype(np.float16)
    y = np.repeat(np.array(["a", "b", "c"]), [150, 100, 50])
    eligible = np.ones(300, dtype=bool)
    eligible[::7] = False
    sub = select_features(x, y, keep=0.3, strategy=strategy, seed=4, eligible=eligible)
    assert sub.size == 90 and sub.keep_total == 90
    assert np.all(np.diff(sub.indices) > 0)
    assert not set(sub.indices.tolist()) & set(range(0, 300, 7))
    assert sum(sub.class_counts.values()) == 90 and set(sub.class_counts) == {"a", "b", "c"}
    assert sub == select_features(x, y, keep=0.3, strategy=strategy, seed=4, eligible=eligible)
    full = select_features(x, y, keep=1.0, strategy=strategy, seed=4)
    assert full.indices.tolist() == list(range(300))


def test_refusals_name_the_problem() -> None:
    x = np.zeros((10, 2), dtype=np.float32)
    with pytest.raises(SelectionError, match="unknown feature strategy 'nope'"):
        select_features(x, None, keep=0.5, strategy="nope")
    with pytest.raises(SelectionError, match="only 2 of 10 may be kept"):
        select_features(x, None, keep=0.5, strategy="moderate", eligible=np.arange(10) < 2)
    with pytest.raises(SelectionError, match="features must be"):
        select_features(np.zeros(10), None, keep=0.5, strategy="moderate")
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(SelectionError, match="non-finite"):
        select_features(bad, None, keep=0.5, strategy="herding")
