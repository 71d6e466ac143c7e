"""Baseline scores: known answers for the training-free ones, contracts for the training-based
ones (which fine-tune a copy of the backbone on the whole dataset)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from dlcprune.core.errors import ParameterError
from dlcprune.core.formats import open_dataset
from dlcprune.core.params import BASELINES, STRATEGY, TRAINING_BASED, BaselineParams
from tests.scoring.conftest import write_image_folder
from worker.scoring.backbones import load_backbone
from worker.scoring.baselines import (
    herding_ranks,
    kcenter_ranks,
    moderate_scores,
    score_baseline,
)


def test_herding_picks_the_sample_closest_to_the_mean_first() -> None:
    x = np.array([[0.0], [10.0], [4.0], [6.0]])  # mean 5
    ranks = herding_ranks(x)
    assert sorted(ranks.tolist()) == [0.0, 0.25, 0.5, 0.75]
    assert ranks[2] == 0.0 or ranks[3] == 0.0  # 4 and 6 are equally close to 5
    # The second pick pulls the running mean back towards 5: the opposite side.
    first = 2 if ranks[2] == 0.0 else 3
    second = int(np.argsort(ranks)[1])
    assert {first, second} == {2, 3}


def test_kcenter_starts_at_the_center_and_goes_farthest_first() -> None:
    x = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [-9.0, 0.0], [0.0, 5.0]])
    ranks = kcenter_ranks(x)
    order = np.argsort(ranks).tolist()
    assert order[0] in (0, 1)  # nearest the mean (0.22, 1.0)
    assert order[1] == 2  # farthest from it
    assert order[2] == 3
    assert sorted(ranks.tolist()) == [0.0, 0.2, 0.4, 0.6, 0.8]


def test_moderate_scores_distance_from_the_median_distance() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0], [100.0]])
    s = moderate_scores(x)
    assert s.argmax() == 4  # the outlier is least moderate
    assert s.min() == 0.0


def test_every_method_has_a_usual_strategy() -> None:
    assert set(STRATEGY) == {"dlc", *BASELINES}
    assert {STRATEGY[m] for m in TRAINING_BASED} == {"hard"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("baselines")
    data = write_image_folder(root / "imgs", per_class=6)
    torch.manual_seed(0)
    torch.save(timm.create_model("test_efficientnet").state_dict(), root / "w.pth")
    return data, load_backbone("test_efficientnet", root / "w.pth")


@pytest.mark.parametrize("method", BASELINES)
def test_every_baseline_scores_every_sample(tiny, method: str) -> None:  # type: ignore[no-untyped-def]
    data, bb = tiny
    before = copy.deepcopy(bb.model.state_dict())
    params = BaselineParams(image_size=32, seeds=1, epochs=2, train_batch_size=8, seed=3)
    with open_dataset(data) as ds:
        scores, info = score_baseline(ds, bb, method, params)
        again, _ = score_baseline(ds, bb, method, params)
    assert scores.shape == (18,) and scores.dtype == np.float32
    assert np.isfinite(scores).all() and info["total_s"] >= 0
    assert np.array_equal(scores, again)  # deterministic under the seed
    for key, value in bb.model.state_dict().items():
        assert torch.equal(value, before[key]), key  # the backbone is never trained in place


def test_training_based_scores_need_a_trainable_backbone(tmp_path: Path) -> None:
    from tests.scoring.conftest import write_mlp, write_vector_npz

    write_vector_npz(tmp_path / "v.npz")
    bb = load_backbone(str(write_mlp(tmp_path / "m.pt")), input_kind="vector")
    with open_dataset(tmp_path / "v.npz") as ds:
        scores, _ = score_baseline(ds, bb, "moderate")  # training-free works on any backbone
        assert scores.shape == (60,)
        with pytest.raises(ParameterError, match="fine-tune"):
            score_baseline(ds, bb, "el2n")
        with pytest.raises(ParameterError, match="unknown method"):
            score_baseline(ds, bb, "cleverness")
