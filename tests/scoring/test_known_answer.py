"""Known answer on real data: DLC from ImageNet EfficientNet-Lite0 finds flipped digit labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from dlcprune.core.formats import open_dataset
from dlcprune.core.params import DLCParams
from worker.scoring.backbones import load_backbone
from worker.scoring.dlc import score


def write_digits_folder(root: Path, flip_share: float, seed: int) -> dict[str, bool]:
    """scikit-learn's 1,797 digits as 8x8 PNGs in class folders; ``flip_share`` of the labels
    moved to a different class at random. Returns sample id -> was flipped."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    labels = digits.target.copy()
    flipped = rng.random(len(labels)) < flip_share
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, int(flipped.sum()))) % 10
    truth = {}
    for i, (img, lab) in enumerate(zip(digits.images, labels, strict=True)):
        folder = root / str(lab)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")
        truth[f"{lab}/{i:04d}.png"] = bool(flipped[i])
    return truth


@pytest.mark.slow
def test_dlc_ranks_flipped_digits_as_hard(tmp_path: Path) -> None:
    truth = write_digits_folder(tmp_path / "digits", flip_share=0.10, seed=0)
    backbone = load_backbone("efficientnet_lite0")
    with open_dataset(tmp_path / "digits") as ds:
        assert len(ds) == 1797 and len(ds.classes) == 10
        result = score(
            ds, backbone, DLCParams(levels=5, schedule="geometric", image_size=64, batch_size=128)
        )
    was_flipped = np.array([truth[i] for i in result.ids])
    auc = roc_auc_score(was_flipped, result.scores)
    print(f"AUROC of DLC for flipped labels: {auc:.3f} ({was_flipped.sum()} flipped of 1797)")
    assert auc >= 0.85
