"""Tiny seeded datasets and models for the engine's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn


def write_vector_npz(
    path: Path, n_per_class: int = 30, flips: int = 6, seed: int = 0
) -> np.ndarray:
    """Two well separated Gaussian classes in 8-D with ``flips`` labels flipped.

    Returns the (N,) bool mask of flipped samples.
    """
    rng = np.random.default_rng(seed)
    centers = np.zeros((2, 8), dtype=np.float32)
    centers[0, 0] = 4.0
    centers[1, 1] = 4.0
    y = np.repeat([0, 1], n_per_class)
    x = centers[y] + rng.normal(0, 0.5, size=(len(y), 8)).astype(np.float32)
    flipped = np.zeros(len(y), dtype=bool)
    flipped[rng.choice(len(y), flips, replace=False)] = True
    y = np.where(flipped, 1 - y, y)
    np.savez(path, x=x, y=y)
    return flipped


def write_mlp(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16))
    torch.jit.save(torch.jit.script(net), path)
    return path


def write_image_folder(root: Path, per_class: int = 6, size: int = 20, seed: int = 0) -> Path:
    """Three classes of small coloured PNGs with a class-specific tint."""
    rng = np.random.default_rng(seed)
    tints = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}
    for name, tint in tints.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            noise = rng.integers(-40, 40, size=(size, size, 3))
            arr = np.clip(np.array(tint)[None, None, :] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture
def vector_data(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    flipped = write_vector_npz(tmp_path / "vectors.npz")
    return tmp_path / "vectors.npz", write_mlp(tmp_path / "mlp.pt"), flipped
