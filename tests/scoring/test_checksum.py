"""Scores are bit-identical across refactors: checksums of DLC scores on a fixed dataset.

The sha256 values were printed by the engine before the layers were rearranged (issue 12) and must
not change unless the method itself changes on purpose. The data: the first 120 of scikit-learn's
digits as 24x24 PNGs in class folders, scored with the bundled EfficientNet-Lite0 weights at 32 px
on the CPU, under three parameter sets (the linear path of 10 levels, the default until issue 13
made the paper's geometric 50 levels the default; a geometric path; random masks with two draws on
a linear path). The parameters are spelled out, so a change of defaults leaves them as recorded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from dlcprune.core.formats import open_dataset
from dlcprune.core.params import DLCParams
from worker.scoring import dlc
from worker.scoring.backbones import load_backbone

EXPECTED = {
    "default": "4ef104335652a1dec93aaafd28b7ccfeef084a8ad0f44bfb7eee22a329969618",
    "geometric": "3793d0df33c1e847e3a7c9cf86f2662e0a31278f41ea782aefe13b7ead74024b",
    "random": "bd09b549416b9d63d653144795c9a92f1657a708cbb9ee338a27e932f3fe27ca",
}
PARAMS = {
    "default": {"schedule": "linear", "levels": 10},
    "geometric": {"schedule": "geometric", "levels": 6},
    "random": {"schedule": "linear", "masking": "random", "draws": 2, "levels": 4, "seed": 3},
}


def _write_digits(root: Path) -> Path:
    digits = load_digits()
    for i in range(120):
        folder = root / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[i] * 16).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).resize((24, 24), Image.NEAREST).save(folder / f"{i:04d}.png")
    return root


@pytest.mark.slow
def test_scores_are_bit_identical_to_the_recorded_checksums(tmp_path: Path) -> None:
    backbone = load_backbone("efficientnet_lite0", None, device=torch.device("cpu"))
    got = {}
    with open_dataset(_write_digits(tmp_path / "digits")) as ds:
        for name, overrides in PARAMS.items():
            params = DLCParams(**overrides, image_size=32, batch_size=32)
            result = dlc.score(ds, backbone, params)
            scores = np.ascontiguousarray(result.scores, dtype=np.float32)
            got[name] = hashlib.sha256(scores.tobytes()).hexdigest()
    assert got == EXPECTED
