"""Tests for dlcprune.core.selection.select: known answers, the fast internal paths against plain
numpy, hypothesis properties, scale, unscored samples and CCS. The integer rules are in
test_rules.py."""

from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcprune.core.selection import (
    STRATEGIES,
    SelectionError,
    Subset,
    allocate,
    flexrand_counts,
    resolve_keep,
    select,
)
from dlcprune.core.selection.order import _score_order
from dlcprune.core.selection.strategies import _encode_labels

# --------------------------------------------------------------------------------------------
# Reference helpers (deliberately simple, loop-based)
# --------------------------------------------------------------------------------------------


def class_orders(scores: np.ndarray, labels: Any) -> tuple[list[Any], list[np.ndarray]]:
    """Sorted unique labels and, per class, its members by (score, index) ascending."""
    if labels is None:
        uniq: list[Any] = [None]
        members = [np.arange(len(scores))]
    else:
        lab = np.asarray(labels)
        uniq_arr = np.unique(lab)
        uniq = uniq_arr.tolist()
        members = [np.flatnonzero(lab == u) for u in uniq_arr]
    wide = np.asarray(scores, dtype=np.float64)
    orders = [m[np.argsort(wide[m], kind="stable")] for m in members]
    return uniq, orders


# --------------------------------------------------------------------------------------------
# select: known answers
# --------------------------------------------------------------------------------------------


def test_flexrand_draws_from_each_pool_in_the_right_numbers() -> None:
    rng = np.random.default_rng(7)
    scores = rng.permutation(100).astype(np.float64)  # distinct: score k is the k-th easiest
    for keep, split, expected in [(0.3, 0.5, (15, 15)), (0.9, 0.2, (20, 70)), (0.5, 0.9, (40, 10))]:
        sel = select(scores, keep=keep, split=split, seed=3)
        pool_easy = round(100 * split)
        picked = scores[sel.indices]
        assert (int((picked < pool_easy).sum()), int((picked >= pool_easy).sum())) == expected


def test_flexrand_with_ties_uses_index_order_for_pools() -> None:
    # All scores equal: the easy pool is the first half of the input, the hard pool the rest.
    sel = select(np.zeros(10, dtype=np.float32), keep=4, split=0.5, seed=0)
    assert int((sel.indices < 5).sum()) == 2 and int((sel.indices >= 5).sum()) == 2


def test_easy_and_hard_take_the_extremes() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0], dtype=np.float32)
    assert select(scores, keep=3, strategy="easy").indices.tolist() == [1, 5, 9]
    assert select(scores, keep=3, strategy="hard").indices.tolist() == [0, 4, 6]


def test_easy_and_hard_break_ties_by_index() -> None:
    scores = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    assert select(scores, keep=2, strategy="easy").indices.tolist() == [1, 3]
    assert select(scores, keep=2, strategy="hard").indices.tolist() == [2, 4]
    # -0.0 and 0.0 tie too, also through the packed float32 key.
    signed = np.array([0.0, -0.0, 0.0, -0.0], dtype=np.float32)
    assert select(signed, keep=2, strategy="easy").indices.tolist() == [0, 1]


def test_small_labelled_example() -> None:
    labels = ["b", "a", "b", "a", "a", "b", "c", "a"]
    scores = np.array([0.3, 0.9, 0.1, 0.2, 0.5, 0.7, 0.4, 0.1])
    # sizes a=4, b=3, c=1; keep 4 -> quotas 2, 1.5, 0.5 -> floors 2, 1, 0; b wins the tie.
    assert allocate(np.array([4, 3, 1]), 4).tolist() == [2, 2, 0]
    easy = select(scores, labels, keep=4, strategy="easy")
    # a by score: 7 (0.1), 3 (0.2), 4 (0.5), 1 (0.9); b: 2 (0.1), 0 (0.3), 5 (0.7)
    assert easy.indices.tolist() == [0, 2, 3, 7]
    assert easy.class_counts == {"a": 2, "b": 2, "c": 0}
    assert list(easy.class_counts) == ["a", "b", "c"]
    hard = select(scores, labels, keep=4, strategy="hard")
    assert hard.indices.tolist() == [0, 1, 4, 5]
    flex = select(scores, labels, keep=4, strategy="flexrand", split=0.5, seed=1)
    # a: E=2 {7, 3}, H=2 {4, 1}: one of each; b: E=2 {2, 0}, H=1 {5}: t=2 -> (1, 1).
    kept = set(flex.indices.tolist())
    assert len(kept & {7, 3}) == 1 and len(kept & {4, 1}) == 1
    assert len(kept & {2, 0}) == 1 and 5 in kept
    assert flex.class_counts == {"a": 2, "b": 2, "c": 0}


def test_selection_fields() -> None:
    sel = select(np.arange(10.0), [1, 2] * 5, keep=0.5, strategy="stratified", split=0.25, seed=9)
    assert isinstance(sel, Subset)
    assert sel.indices.dtype == np.int64 and not sel.indices.flags.writeable
    assert (sel.size, sel.keep_total, sel.strategy, sel.split, sel.seed) == (
        5,
        5,
        "stratified",
        0.25,
        9,
    )
    assert sel.class_counts.keys() == {"1", "2"} and sum(sel.class_counts.values()) == 5
    again = select(np.arange(10.0), [1, 2] * 5, keep=0.5, strategy="stratified", split=0.25, seed=9)
    assert sel == again
    assert sel != select(np.arange(10.0), keep=0.5)


def test_unlabelled_class_counts_are_empty() -> None:
    for strategy in STRATEGIES:
        assert select(np.arange(5.0), keep=2, strategy=strategy).class_counts == {}


def test_different_seeds_give_different_flexrand_subsets() -> None:
    scores = np.random.default_rng(0).random(1000)
    labels = np.arange(1000) % 4
    subsets = {tuple(select(scores, labels, keep=0.3, seed=s).indices.tolist()) for s in range(5)}
    assert len(subsets) == 5
    for strategy in ("stratified", "random"):
        a = select(scores, labels, keep=0.3, strategy=strategy, seed=0).indices
        b = select(scores, labels, keep=0.3, strategy=strategy, seed=1).indices
        assert not np.array_equal(a, b)


def test_stratified_ignores_scores_and_random_ignores_labels() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 300)
    a = select(rng.random(300), labels, keep=0.2, strategy="stratified", seed=4)
    b = select(rng.random(300), labels, keep=0.2, strategy="stratified", seed=4)
    assert np.array_equal(a.indices, b.indices)
    c = select(rng.random(300), labels, keep=0.2, strategy="random", seed=4)
    d = select(rng.random(300), None, keep=0.2, strategy="random", seed=4)
    assert np.array_equal(c.indices, d.indices)


def test_keep_all_returns_everything() -> None:
    scores = np.random.default_rng(2).random(50)
    for strategy in STRATEGIES:
        assert select(scores, np.arange(50) % 3, keep=1, strategy=strategy).indices.tolist() == (
            list(range(50))
        )


def test_classes_of_size_one_and_rare_classes() -> None:
    labels = [0] * 20 + [1, 2, 3]
    scores = np.linspace(0, 1, 23)
    sel = select(scores, labels, keep=0.5, strategy="flexrand", seed=0)
    assert sel.class_counts == {"0": 10, "1": 1, "2": 1, "3": 0}  # 10.43, 0.52 x3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": [0.1, float("nan"), float("nan")], "keep": 1}, "contain 2 NaN"),
        ({"scores": [0.1, 0.2], "labels": [1, 2, 3], "keep": 1}, "3 entries but scores has 2"),
        ({"scores": [0.1, 0.2], "labels": [[1, 2]], "keep": 1}, "labels must be 1-D"),
        ({"scores": [[0.1, 0.2]], "keep": 1}, "scores must be 1-D"),
        ({"scores": ["a", "b"], "keep": 1}, "real numbers"),
        ({"scores": [1 + 2j], "keep": 1}, "real numbers"),
        ({"scores": [], "keep": 1}, "no samples"),
        ({"scores": [0.1], "keep": 1, "split": -0.1}, "split must be in"),
        ({"scores": [0.1], "keep": 1, "split": 1.5}, "split must be in"),
        ({"scores": [0.1], "keep": 1, "split": float("nan")}, "split must be in"),
        ({"scores": [0.1], "keep": 1, "split": True}, "split must be a number"),
        ({"scores": [0.1], "keep": 1, "strategy": "topk"}, "flexrand, easy, hard, random"),
        ({"scores": [0.1], "keep": 1, "strategy": None}, "valid strategies"),
        ({"scores": [0.1], "keep": 1, "seed": -1}, "seed must be an int >= 0"),
        ({"scores": [0.1], "keep": 1, "seed": 1.0}, "seed must be an int >= 0"),
        ({"scores": [0.1], "keep": 1, "seed": True}, "seed must be an int >= 0"),
        ({"scores": [0.1], "keep": 2}, "exceeds the 1 samples"),
        ({"scores": [0.1, 0.2], "keep": 0.1}, "selects no sample of 2"),
        (
            {"scores": [0.1, 0.2], "labels": np.array([1, "a"], dtype=object), "keep": 1},
            "labels cannot be ordered",
        ),
    ],
)
def test_select_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        select(**kwargs)


# --------------------------------------------------------------------------------------------
# Internals with a fast path: they must agree with the plain numpy route
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [
        np.array([5, -3, 5, 7, -3], dtype=np.int64),
        np.array([-100, 100, 0, -100, 27], dtype=np.int8),  # span overflows int8
        np.array([2**64 - 1, 2**64 - 3, 2**64 - 1, 5], dtype=np.uint64),  # sparse: np.unique
        np.array([2**64 - 1, 2**64 - 3, 2**64 - 1, 2**64 - 2, 2**64 - 3], dtype=np.uint64),
        np.array([10**15, 3, 3, 10**15, 4]),  # sparse: np.unique
        np.array(["b", "a", "ä", "B", "a"]),
        np.array([b"y", b"x", b"y", b"z", b"x"]),
        np.array([1.5, -2.0, 1.5, 0.0, 3.25]),
        np.array([True, False, True, True, False]),
    ],
)
def test_encode_labels_matches_np_unique(labels: np.ndarray) -> None:
    values, inverse = _encode_labels(labels, len(labels))
    uniq, expected = np.unique(labels, return_inverse=True)
    assert values == uniq.tolist()
    assert inverse.tolist() == expected.reshape(-1).tolist()


special_floats = st.sampled_from([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, 1e-40, -1e-40, 3e38])


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.one_of(special_floats, st.floats(-1e6, 1e6, width=32), st.integers(-3, 3).map(float)),
        min_size=1,
        max_size=300,
    ),
    n_classes=st.integers(1, 300),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    data=st.data(),
)
def test_score_order_matches_lexsort(
    values: list[float], n_classes: int, dtype: type, data: st.DataObject
) -> None:
    with np.errstate(over="ignore"):  # float16 overflows to inf: still a valid score
        scores = np.array(values).astype(dtype)
    n = len(scores)
    classes = np.array(data.draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n)))
    expected = np.lexsort((scores.astype(np.float64), classes))
    assert _score_order(scores, classes, n_classes).tolist() == expected.tolist()
    assert _score_order(scores, None, 1).tolist() == np.lexsort((scores,)).tolist()


# --------------------------------------------------------------------------------------------
# select: properties
# --------------------------------------------------------------------------------------------


@st.composite
def problems(draw: st.DrawFn) -> dict[str, Any]:
    """A random select() call: scores with ties, optional labels, keep as ratio or count."""
    n = draw(st.integers(1, 500))
    pool = draw(
        st.lists(
            st.one_of(st.integers(-3, 3).map(float), st.floats(-1e3, 1e3), special_floats),
            min_size=1,
            max_size=30,
        )
    )
    picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=n, max_size=n))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    scores = np.array([pool[i] for i in picks]).astype(dtype)

    labels: Any = None
    if draw(st.booleans()):
        k = draw(st.integers(1, 10))
        names = draw(st.sampled_from([list(range(k)), [f"c{i}" for i in range(k)]]))
        # A skewed draw makes classes of size 1 common.
        weights = draw(st.lists(st.integers(0, n), min_size=n, max_size=n))
        labels = [names[w % k] if w % 3 else names[0] for w in weights]

    total = draw(st.integers(1, n))
    form = draw(st.sampled_from(["count", "float_count", "ratio", "free_ratio"]))
    if form == "count" and total > 1:
        keep: float = total
    elif form == "float_count" and total > 1:
        keep = float(total)
    elif form == "free_ratio":
        keep = draw(st.floats(0.0, 1.0, exclude_min=True))
    else:
        keep = total / n
    return {
        "scores": scores,
        "labels": labels,
        "keep": keep,
        "split": draw(st.floats(0.0, 1.0)),
        "seed": draw(st.integers(0, 2**32)),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(), strategy=st.sampled_from(STRATEGIES))
def test_select_properties(problem: dict[str, Any], strategy: str) -> None:
    scores, labels, keep = problem["scores"], problem["labels"], problem["keep"]
    n = len(scores)
    try:
        total = resolve_keep(keep, n)
    except SelectionError:
        with pytest.raises(SelectionError, match="selects no sample"):
            select(scores, labels, keep=keep, strategy=strategy)
        return

    sel = select(
        scores, labels, keep=keep, strategy=strategy, split=problem["split"], seed=problem["seed"]
    )
    idx = sel.indices
    assert sel.size == sel.keep_total == total == len(idx)
    assert idx.dtype == np.int64
    assert np.all(np.diff(idx) > 0)  # sorted and unique
    assert idx.size == 0 or (idx[0] >= 0 and idx[-1] < n)
    again = select(
        scores, labels, keep=keep, strategy=strategy, split=problem["split"], seed=problem["seed"]
    )
    assert sel == again

    uniq, orders = class_orders(scores, labels)
    kept = np.zeros(n, dtype=bool)
    kept[idx] = True
    per_class = [int(kept[order].sum()) for order in orders]
    if labels is None:
        assert sel.class_counts == {}
    else:
        assert list(sel.class_counts) == [str(u) for u in uniq]
        assert list(sel.class_counts.values()) == per_class

    if strategy in ("random", "ccs"):  # global strategies: no per-class allocation
        return
    sizes = np.array([len(order) for order in orders])
    targets = allocate(sizes, total).tolist()
    assert per_class == targets
    for order, t in zip(orders, targets, strict=True):
        if strategy == "easy":
            assert set(order[:t].tolist()) == set(order[kept[order]].tolist())
        elif strategy == "hard":
            assert set(order[len(order) - t :].tolist()) == set(order[kept[order]].tolist())
        elif strategy == "flexrand":
            n_easy, n_hard = flexrand_counts(len(order), t, problem["split"])
            pool_easy = math.floor(len(order) * Fraction(repr(problem["split"])) + Fraction(1, 2))
            assert int(kept[order[:pool_easy]].sum()) == n_easy
            assert int(kept[order[pool_easy:]].sum()) == n_hard


# --------------------------------------------------------------------------------------------
# Scale
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [1, 1000])
def test_select_on_a_million_scores(n_classes: int) -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    scores = rng.random(n, dtype=np.float32)
    labels = rng.integers(0, n_classes, n) if n_classes > 1 else None
    started = time.perf_counter()
    for strategy in STRATEGIES:
        sel = select(scores, labels, keep=0.3, strategy=strategy, split=0.4, seed=1)
        assert sel.size == 300_000 and np.all(np.diff(sel.indices) > 0)
        if labels is not None and strategy not in ("random", "ccs"):
            sizes = np.bincount(labels, minlength=n_classes)
            assert list(sel.class_counts.values()) == allocate(sizes, 300_000).tolist()
    # Not a benchmark, only a guard against an accidental per-sample Python loop.
    assert time.perf_counter() - started < 30


def test_unscored_samples_are_excluded_when_asked() -> None:
    scores = np.array([0.1, np.nan, 0.3, 0.2, np.nan, 0.9, 0.5, 0.7])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    with pytest.raises(SelectionError, match="NaN"):
        select(scores, labels, keep=0.5)
    sel = select(scores, labels, keep=0.5, unscored="exclude", seed=2)
    assert sel.size == 4 == sel.keep_total
    assert not set(sel.indices.tolist()) & {1, 4}
    assert list(sel.indices) == sorted(set(sel.indices.tolist()))
    again = select(scores, labels, keep=0.5, unscored="exclude", seed=2)
    assert np.array_equal(sel.indices, again.indices)
    easy = select(scores, None, keep=3, strategy="easy", unscored="exclude")
    assert easy.indices.tolist() == [0, 2, 3]
    with pytest.raises(SelectionError, match="only 6 of 8 have a score"):
        select(scores, labels, keep=7, unscored="exclude")
    # Without NaN, "exclude" is the plain selection.
    clean = np.nan_to_num(scores, nan=0.4)
    assert np.array_equal(
        select(clean, labels, keep=0.5, unscored="exclude").indices,
        select(clean, labels, keep=0.5).indices,
    )


def test_ccs_drops_the_hardest_and_covers_the_score_range() -> None:
    from dlcprune.core.selection import ccs_select

    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0, 1, 900), rng.normal(8, 0.5, 100)])
    sel = select(scores, None, keep=0.3, strategy="ccs", seed=1, hard_cutoff=0.1)
    assert sel.size == 300 == len(set(sel.indices.tolist()))
    hardest = np.argsort(scores)[-100:]
    assert not set(sel.indices.tolist()) & set(hardest.tolist())
    # Coverage: the kept scores span the kept range far more evenly than their density would.
    kept = scores[sel.indices]
    assert kept.min() < -2 and kept.max() > 2
    assert np.array_equal(ccs_select(scores, 300, seed=1), sel.indices)
    assert not np.array_equal(ccs_select(scores, 300, seed=2), sel.indices)
    # A keep ratio above 1 - cutoff drops less.
    big = select(scores, None, keep=0.95, strategy="ccs")
    assert big.size == 950


@given(
    n=st.integers(1, 300),
    keep=st.floats(0.01, 1.0),
    cutoff=st.floats(0.0, 0.9),
    seed=st.integers(0, 10),
)
@settings(max_examples=100, deadline=None)
def test_ccs_exact_sizes(n: int, keep: float, cutoff: float, seed: int) -> None:
    scores = np.random.default_rng(seed).gamma(2.0, 1.0, n)
    try:
        total = resolve_keep(keep, n)
    except SelectionError:
        return
    sel = select(scores, None, keep=keep, strategy="ccs", hard_cutoff=cutoff, seed=seed)
    assert sel.size == total == len(np.unique(sel.indices))
    assert np.all(np.diff(sel.indices) > 0)
