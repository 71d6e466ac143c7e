"""Kept embeddings (``dlcprune.core.embeddings``): float16 storage, PCA and its projection."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from dlcprune.core import embeddings as emb


def _data(n: int = 200, f: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # variance falls off along the axes, so the principal components are known: the axes
    return (rng.normal(size=(n, f)) * (10.0 * 0.5 ** np.arange(f))).astype(np.float32) + 5.0


def test_no_reduction_keeps_the_features_in_float16() -> None:
    x = _data()
    stored, projection = emb.reduce(x, None)
    assert projection is None and stored.dtype == np.float16 and stored.shape == x.shape
    assert np.array_equal(stored, x.astype(np.float16))
    wide, none = emb.reduce(x, 64)  # not below the width: kept whole
    assert none is None and wide.shape == (200, 32)


def test_pca_finds_the_high_variance_axes_deterministically() -> None:
    x = _data(n=4000)
    stored, projection = emb.reduce(x, 4)
    assert stored.shape == (4000, 4) and stored.dtype == np.float16
    assert projection is not None and projection.components.shape == (4, 32)
    # the top components are the first four axes, each signed positive
    assert np.allclose(np.abs(projection.components[:, :4]), np.eye(4), atol=0.05)
    assert np.all(projection.components[np.arange(4), np.arange(4)] > 0)
    assert np.allclose(projection.mean, x.mean(axis=0), atol=1e-4)
    assert np.allclose(projection.apply(x), stored.astype(np.float32), rtol=1e-2, atol=1e-2)
    again_stored, again = emb.reduce(x, 4)
    assert np.array_equal(again_stored, stored)
    assert np.array_equal(again.components, projection.components)  # type: ignore[union-attr]
    back = emb.Projection.from_bytes(projection.to_bytes())
    assert np.array_equal(back.components, projection.components)


def test_bounds() -> None:
    with pytest.raises(ValueError, match=r"0\.\.256"):
        emb.reduce(_data(), 257)
    with pytest.raises(ValueError, match="2-D"):
        emb.reduce(np.zeros(3), 2)


def test_npy_and_parquet_round_trip() -> None:
    x = _data(5, 3).astype(np.float16)
    assert np.array_equal(emb.from_npy(emb.to_npy(x)), x)
    table = pq.read_table(io.BytesIO(emb.to_parquet(x, ["a", "b", "c", "d", "é"], None)))
    assert table.column("sample_id").to_pylist() == ["a", "b", "c", "d", "é"]
    assert table.column("label").to_pylist() == [None] * 5
    assert np.array_equal(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), x)
