"""Kept embeddings: each sample's unmasked backbone features, as a scoring job leaves them.

Stored per job in the blob store under a prefix (``embeddings/<job id>``):

* ``features.npy``: float16, shape ``(N, D)``, rows in dataset order (``np.save``, no pickle);
* ``projection.npz`` (only when reduced by PCA): ``mean`` float32 ``(F,)`` and ``components``
  float32 ``(D, F)``, so that ``features ≈ (raw - mean) @ components.T``; a client can project
  new samples' raw features the same way.

:func:`reduce` is the PCA (at most :data:`MAX_PCA_DIMS` dimensions): the eigenvectors of the
features' covariance (accumulated in float64) with the largest eigenvalues, each signed so that
its largest-magnitude entry is positive, so the same features always give the same projection.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FEATURES_FILE",
    "MAX_PCA_DIMS",
    "PROJECTION_FILE",
    "Projection",
    "from_npy",
    "reduce",
    "to_npy",
    "to_parquet",
]

MAX_PCA_DIMS = 256
FEATURES_FILE = "features.npy"
PROJECTION_FILE = "projection.npz"


@dataclass(frozen=True)
class Projection:
    """A PCA projection: ``(raw - mean) @ components.T``."""

    mean: np.ndarray  # (F,) float32
    components: np.ndarray  # (D, F) float32

    def apply(self, raw: np.ndarray) -> np.ndarray:
        return (np.asarray(raw, dtype=np.float32) - self.mean) @ self.components.T

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, mean=self.mean, components=self.components)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Projection:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(mean=z["mean"], components=z["components"])


def reduce(features: np.ndarray, dims: int | None) -> tuple[np.ndarray, Projection | None]:
    """Features as stored: float16 ``(N, D)`` and the projection used (None: kept whole).

    ``dims`` None or 0, or not below the feature width, keeps the features as they are (in
    float16). Otherwise ``dims`` in ``1..MAX_PCA_DIMS`` principal components, at most ``N``.
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {x.shape}")
    if dims is not None and not 0 <= int(dims) <= MAX_PCA_DIMS:
        raise ValueError(f"PCA dimensions must be in 0..{MAX_PCA_DIMS}, got {dims}")
    if not dims or int(dims) >= x.shape[1]:
        return x.astype(np.float16), None
    k = min(int(dims), x.shape[0])
    mean = x.mean(axis=0, dtype=np.float64)
    centred = x.astype(np.float64) - mean
    cov = centred.T @ centred
    values, vectors = np.linalg.eigh(cov)  # ascending
    top = vectors[:, np.argsort(-values, kind="stable")[:k]].T  # (k, F)
    flip = np.sign(top[np.arange(k), np.argmax(np.abs(top), axis=1)])
    flip[flip == 0] = 1.0
    components = (top * flip[:, None]).astype(np.float32)
    projection = Projection(mean=mean.astype(np.float32), components=components)
    return projection.apply(x).astype(np.float16), projection


def to_npy(features: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(features), allow_pickle=False)
    return buf.getvalue()


def from_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def to_parquet(features: np.ndarray, ids: list[str], labels: list[str] | None) -> bytes:
    """One row per sample: ``index`` (int64), ``sample_id``, ``label`` (null when unlabelled)
    and ``embedding`` (fixed-size list of float16)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.ascontiguousarray(features, dtype=np.float16)
    n, d = x.shape
    table = pa.table(
        {
            "index": pa.array(np.arange(n, dtype=np.int64)),
            "sample_id": pa.array(ids, type=pa.string()),
            "label": pa.array(labels if labels is not None else [None] * n, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(x.reshape(-1), type=pa.float16()), d
            ),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()
