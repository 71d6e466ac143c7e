"""Tests for dlcprune.core.selection's integer rules (resolve_keep, allocate, flexrand_counts):
known answers, errors, and hypothesis properties against loop-based references."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlcprune.core.selection import SelectionError, allocate, flexrand_counts, resolve_keep

# --------------------------------------------------------------------------------------------
# Reference helpers (deliberately simple, loop-based)
# --------------------------------------------------------------------------------------------


def allocate_reference(sizes: list[int], total: int) -> list[int]:
    """Largest remainder with exact fractions and an explicit (remainder desc, index asc) sort."""
    n = sum(sizes)
    quotas = [Fraction(s * total, n) for s in sizes]
    out = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(sizes)), key=lambda c: (-(quotas[c] - out[c]), c))
    for c in by_remainder[: total - sum(out)]:
        out[c] += 1
    return out


# --------------------------------------------------------------------------------------------
# resolve_keep
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keep", "n", "expected"),
    [
        (0.5, 10, 5),
        (0.25, 10, 3),  # 2.5 rounds half up
        (0.05, 10, 1),  # 0.5 rounds half up
        (0.7, 5, 4),  # 3.5 exactly as written, although the binary 0.7 is 0.6999...
        (0.58, 25, 15),  # float arithmetic gives 14.499999999999998 -> 14
        (0.145, 100, 15),
        (0.3333, 3, 1),
        (1, 7, 7),
        (1.0, 7, 7),
        (np.float32(0.5), 10, 5),
        (np.float64(0.5), 10, 5),
        (2, 2, 2),
        (30, 100, 30),
        (30.0, 100, 30),
        (np.int64(5), 10, 5),
        (100, 100, 100),
        (1e-9, 10**9, 1),
    ],
)
def test_resolve_keep_known(keep: float, n: int, expected: int) -> None:
    assert resolve_keep(keep, n) == expected


@pytest.mark.parametrize(
    ("keep", "n", "message"),
    [
        (0, 10, "must be > 0"),
        (0.0, 10, "must be > 0"),
        (-0.5, 10, "must be > 0"),
        (-3, 10, "must be > 0"),
        (float("nan"), 10, "finite"),
        (float("inf"), 10, "finite"),
        (float("-inf"), 10, "finite"),
        (2.5, 10, "neither a ratio"),
        (1.0000001, 10, "neither a ratio"),
        (101, 100, "exceeds the 100 samples"),
        (101.0, 100, "exceeds the 100 samples"),
        (True, 10, "ratio in \\(0, 1\\] or a count"),
        (False, 10, "ratio in \\(0, 1\\] or a count"),
        (np.True_, 10, "ratio in \\(0, 1\\] or a count"),
        ("0.5", 10, "ratio in \\(0, 1\\] or a count"),
        (None, 10, "ratio in \\(0, 1\\] or a count"),
        (0.01, 10, "selects no sample of 10"),
        (0.04, 10, "selects no sample of 10"),
        (0.5, 0, "no samples"),
        (5, 0, "no samples"),
        (0.5, -1, "int >= 0"),
        (0.5, True, "int >= 0"),
        (0.5, 2.0, "int >= 0"),
    ],
)
def test_resolve_keep_errors(keep: Any, n: Any, message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        resolve_keep(keep, n)


def test_selection_error_is_value_error_with_code() -> None:
    assert issubclass(SelectionError, ValueError)
    assert SelectionError.code == "invalid_selection"


@given(n=st.integers(1, 10**6), m=st.integers(1, 10**6))
def test_resolve_keep_ratio_m_over_n_gives_m(n: int, m: int) -> None:
    m = min(m, n)
    assert resolve_keep(m / n, n) == m


# --------------------------------------------------------------------------------------------
# allocate
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "total", "expected"),
    [
        ([5, 3, 2], 5, [3, 1, 1]),  # quotas 2.5, 1.5, 1: remainders tie, lower index wins
        ([3, 3, 4], 5, [2, 1, 2]),  # quotas 1.5, 1.5, 2
        ([6, 3, 1], 4, [3, 1, 0]),  # quotas 2.4, 1.2, 0.4: 0.4 ties 0.4, class 0 first
        ([1, 1, 1], 2, [1, 1, 0]),
        ([1, 1, 1], 1, [1, 0, 0]),
        ([1, 2, 3], 6, [1, 2, 3]),
        ([1, 2, 3], 0, [0, 0, 0]),
        ([0, 4, 0, 4], 3, [0, 2, 0, 1]),
        ([10], 7, [7]),
        # quotas 2.33 (x4) and 0.67: two units missing, the small class's 0.67 beats the 0.33 tie
        ([7, 7, 7, 7, 2], 10, [3, 2, 2, 2, 1]),
    ],
)
def test_allocate_known(sizes: list[int], total: int, expected: list[int]) -> None:
    out = allocate(np.array(sizes), total)
    assert out.dtype == np.int64
    assert out.tolist() == expected
    assert out.tolist() == allocate_reference(sizes, total)


def test_allocate_is_exact_beyond_int64_products() -> None:
    # size * total exceeds 2**63, which forces the Python-int path.
    sizes = np.array([3_000_000_007, 4_000_000_009, 1], dtype=np.int64)
    total = 5_000_000_003
    out = allocate(sizes, total)
    assert out.tolist() == allocate_reference(sizes.tolist(), total)
    assert int(out.sum()) == total


def test_allocate_is_exact_where_floats_are_not() -> None:
    # N > 2**53: a float quota would lose the remainder that decides the tie-break.
    sizes = [2**53 + 1, 2**53 - 1]
    out = allocate(np.array(sizes, dtype=np.int64), 3)
    assert out.tolist() == allocate_reference(sizes, 3) == [2, 1]


@pytest.mark.parametrize(
    ("sizes", "total", "message"),
    [
        (np.array([3, -1]), 1, ">= 0"),
        (np.array([1.0, 2.0]), 1, "integers"),
        (np.array([[1, 2]]), 1, "1-D"),
        (np.array([0, 0]), 0, "positive sum"),
        (np.array([], dtype=np.int64), 0, "positive sum"),
        (np.array([2, 3]), 6, "outside \\[0, 5\\]"),
        (np.array([2, 3]), -1, "outside \\[0, 5\\]"),
        (np.array([2, 3]), True, "must be an int"),
        (np.array([2, 3]), 2.0, "must be an int"),
    ],
)
def test_allocate_errors(sizes: np.ndarray, total: Any, message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        allocate(sizes, total)


@given(
    sizes=st.lists(st.integers(0, 10**12), min_size=1, max_size=12).filter(lambda s: sum(s) > 0),
    data=st.data(),
)
def test_allocate_matches_reference(sizes: list[int], data: st.DataObject) -> None:
    total = data.draw(st.integers(0, sum(sizes)))
    out = allocate(np.array(sizes, dtype=np.int64), total)
    assert out.tolist() == allocate_reference(sizes, total)
    assert int(out.sum()) == total
    assert all(0 <= t <= s for t, s in zip(out.tolist(), sizes, strict=True))


# --------------------------------------------------------------------------------------------
# flexrand_counts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "t", "split", "expected"),
    [
        (10, 2, 0.5, (1, 1)),
        (10, 3, 0.5, (1, 2)),  # odd unit to the hard side when g <= 0.5
        (10, 8, 0.5, (4, 4)),
        (10, 10, 0.5, (5, 5)),
        (10, 9, 0.3, (3, 6)),  # E=3 runs out: taken whole
        (10, 3, 0.3, (1, 2)),
        (10, 9, 0.8, (7, 2)),  # H=2 runs out: taken whole
        (10, 3, 0.8, (2, 1)),  # odd unit to the easy side when g > 0.5
        (10, 4, 0.0, (0, 4)),  # g = 0: everything is hard
        (10, 10, 0.0, (0, 10)),
        (10, 4, 1.0, (4, 0)),  # g = 1: everything is easy
        (10, 10, 1.0, (10, 0)),
        (3, 3, 0.5, (2, 1)),  # E = floor(1.5 + 0.5) = 2, H = 1
        (3, 1, 0.5, (0, 1)),
        (1, 1, 0.5, (1, 0)),  # E = 1, H = 0
        (1, 1, 0.4, (0, 1)),  # E = 0, H = 1
        (7, 0, 0.5, (0, 0)),
        (100, 40, 0.3, (20, 20)),
        (100, 80, 0.3, (30, 50)),
        (100, 60, 0.8, (40, 20)),
        (20, 5, 0.55, (3, 2)),  # E = 11 > H = 9: hard side gets t // 2
    ],
)
def test_flexrand_counts_known(n: int, t: int, split: float, expected: tuple[int, int]) -> None:
    assert flexrand_counts(n, t, split) == expected


@pytest.mark.parametrize(
    ("n", "split", "keep"),
    [(100, 0.3, 0.4), (100, 0.3, 0.8), (100, 0.8, 0.6), (100, 0.8, 0.2), (200, 0.5, 0.5)],
)
def test_flexrand_counts_matches_design_shares(n: int, split: float, keep: float) -> None:
    # Where every share is a whole number of samples, the integers equal the design's
    # e = min(g, b/2), h = b - e (mirrored for g > 0.5).
    g, b = Fraction(str(split)), Fraction(str(keep))
    if g <= Fraction(1, 2):
        e = min(g, b / 2)
        h = b - e
    else:
        h = min(1 - g, b / 2)
        e = b - h
    assert (n * e).denominator == 1 and (n * h).denominator == 1
    assert flexrand_counts(n, int(n * b), split) == (int(n * e), int(n * h))


@pytest.mark.parametrize(
    ("n", "t", "split", "message"),
    [
        (10, 11, 0.5, "outside \\[0, 10\\]"),
        (10, -1, 0.5, "outside \\[0, 10\\]"),
        (10, 5, -0.1, "split must be in \\[0, 1\\]"),
        (10, 5, 1.1, "split must be in \\[0, 1\\]"),
        (10, 5, float("nan"), "split must be in \\[0, 1\\]"),
        (10, 5, "0.5", "split must be a number"),
        (10.0, 5, 0.5, "n must be an int"),
        (10, True, 0.5, "t must be an int"),
    ],
)
def test_flexrand_counts_errors(n: Any, t: Any, split: Any, message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        flexrand_counts(n, t, split)


@given(n=st.integers(0, 2000), data=st.data(), split=st.floats(0.0, 1.0))
def test_flexrand_counts_invariants(n: int, data: st.DataObject, split: float) -> None:
    t = data.draw(st.integers(0, n))
    n_easy, n_hard = flexrand_counts(n, t, split)
    pool_easy = math.floor(n * Fraction(repr(split)) + Fraction(1, 2))
    pool_hard = n - pool_easy
    assert n_easy + n_hard == t
    assert 0 <= n_easy <= pool_easy and 0 <= n_hard <= pool_hard
    # The side of the (nominally) smaller pool gets floor(t/2) unless that pool runs out.
    if split <= 0.5:
        assert n_easy == min(pool_easy, t // 2) or n_hard == pool_hard
    else:
        assert n_hard == min(pool_hard, t // 2) or n_easy == pool_easy
