"""DLC on tiny synthetic data with known answers; determinism; restore; progress; errors."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from dlcprune.core.errors import Cancelled, MissingFieldError, ParameterError
from dlcprune.core.formats import open_dataset
from dlcprune.core.params import DLCParams
from tests.scoring.conftest import write_image_folder
from worker.scoring.backbones import load_backbone
from worker.scoring.dlc import Progress, prototype_loss, score


def auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def test_prototype_loss_known_answer() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    c = torch.tensor([[0.0, 0.0], [0.0, 4.0]])
    y = torch.tensor([0, 1])
    # Sample 0: distances 1 and sqrt(17) -> logits 1, 1/sqrt(17); sample 1: 3 and 1 -> 1/3, 1.
    logits = torch.tensor([[1.0, 17**-0.5], [1 / 3, 1.0]])
    expected = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(prototype_loss(z, c, y), expected)
    # On the prototype itself the logit is clamped, not infinite.
    assert torch.isfinite(prototype_loss(c, c, y)).all()


def test_prototype_loss_equals_cross_entropy_and_keeps_tiny_losses_apart() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(64, 16, generator=gen) * 3
    c = torch.randn(5, 16, generator=gen) * 3
    y = torch.randint(0, 5, (64,), generator=gen)
    reference = torch.nn.functional.cross_entropy(
        1.0 / torch.cdist(z.double(), c.double()), y, reduction="none"
    )
    assert torch.allclose(prototype_loss(z, c, y).double(), reference, rtol=1e-5, atol=1e-7)
    # Features very close to their prototype: plain cross-entropy rounds all of these to 0.
    # (Distances 0.02 to 0.08: logit margins of about 12 to 50, below float32's ~100 floor.)
    near = c[[0, 0, 0]] + torch.tensor([[5e-3], [1e-2], [2e-2]])
    tiny = prototype_loss(near, c, torch.zeros(3, dtype=torch.long))
    assert (tiny > 0).all()
    assert tiny[0] < tiny[1] < tiny[2]


def test_flipped_labels_score_hard(vector_data: tuple[Path, Path, np.ndarray]) -> None:
    data, model, flipped = vector_data
    bb = load_backbone(str(model), input_kind="vector")
    with open_dataset(data) as ds:
        result = score(ds, bb, DLCParams(levels=10, schedule="linear"), return_losses=True)
    assert result.scores.shape == (60,) and result.scores.dtype == np.float32
    assert result.losses is not None and result.losses.shape == (11, 60)
    assert np.allclose(result.scores, result.losses.mean(axis=0), rtol=1e-6)
    assert auroc(flipped, result.scores) == 1.0
    assert result.mask_fractions[0] == 0.0
    assert result.mask_fractions[-1] == pytest.approx(0.98, abs=0.01)
    assert result.ids == [str(i) for i in range(60)]
    assert result.classes == ["0", "1"]


def test_weights_are_restored_exactly_after_scoring(
    vector_data: tuple[Path, Path, np.ndarray],
) -> None:
    data, model, _ = vector_data
    bb = load_backbone(str(model), input_kind="vector")
    before = copy.deepcopy(bb.model.state_dict())
    with open_dataset(data) as ds:
        score(ds, bb, DLCParams(levels=5, masking="random", draws=2))
    for key, value in bb.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_cancel_from_progress_restores_weights(vector_data: tuple[Path, Path, np.ndarray]) -> None:
    data, model, _ = vector_data
    bb = load_backbone(str(model), input_kind="vector")
    before = copy.deepcopy(bb.model.state_dict())
    seen: list[Progress] = []

    def cancel_mid_path(p: Progress) -> None:
        seen.append(p)
        if p.stage.startswith("level 3"):
            # Weights are masked right now; cancelling must still put them back.
            assert any(bool((t == 0).any()) for _, t in bb.maskable)
            raise Cancelled()

    with open_dataset(data) as ds, pytest.raises(Cancelled):
        score(ds, bb, DLCParams(levels=8, batch_size=16), progress=cancel_mid_path)
    assert seen[-1].stage == "level 3/8"
    for key, value in bb.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_scores_are_deterministic_under_a_seed(vector_data: tuple[Path, Path, np.ndarray]) -> None:
    data, model, _ = vector_data
    bb = load_backbone(str(model), input_kind="vector")
    with open_dataset(data) as ds:
        a = score(ds, bb, DLCParams(levels=6, masking="random", draws=3, seed=7)).scores
        b = score(ds, bb, DLCParams(levels=6, masking="random", draws=3, seed=7)).scores
        c = score(ds, bb, DLCParams(levels=6, masking="random", draws=3, seed=8)).scores
        d = score(ds, bb, DLCParams(levels=6, masking="l1")).scores
        e = score(ds, bb, DLCParams(levels=6, masking="l1")).scores
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(d, e)


def test_random_masking_averages_draws(vector_data: tuple[Path, Path, np.ndarray]) -> None:
    data, model, _ = vector_data
    bb = load_backbone(str(model), input_kind="vector")
    with open_dataset(data) as ds:
        many = score(
            ds, bb, DLCParams(levels=4, masking="random", draws=3, seed=1), return_losses=True
        )
        single = score(
            ds, bb, DLCParams(levels=4, masking="random", draws=1, seed=1), return_losses=True
        )
    assert many.losses is not None and single.losses is not None
    # The unmasked level does not depend on masks.
    assert np.array_equal(many.losses[0], single.losses[0])
    # Draw 0 of the 3-draw run is the single-draw run; averaging in two more draws moves it.
    assert not np.allclose(many.losses[1:], single.losses[1:])


def test_progress_is_monotonic_and_complete(vector_data: tuple[Path, Path, np.ndarray]) -> None:
    data, model, _ = vector_data
    bb = load_backbone(str(model), input_kind="vector")
    events: list[Progress] = []
    with open_dataset(data) as ds:
        score(ds, bb, DLCParams(levels=3, batch_size=25), progress=events.append)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0)
    assert all(e.levels_total == 4 for e in events)
    # Every batch reports: 60 samples in batches of 25 -> 3 reports per pass, 4 passes.
    assert sum(1 for e in events if e.stage != "prepare" and e.stage != "done") == 12


def test_levels_zero_is_the_unmasked_loss(vector_data: tuple[Path, Path, np.ndarray]) -> None:
    data, model, _ = vector_data
    bb = load_backbone(str(model), input_kind="vector")
    with open_dataset(data) as ds:
        flat = score(ds, bb, DLCParams(levels=0), return_losses=True)
        path = score(ds, bb, DLCParams(levels=3), return_losses=True)
    assert flat.losses is not None and path.losses is not None
    assert np.array_equal(flat.scores, flat.losses[0])
    assert np.array_equal(flat.losses[0], path.losses[0])


def test_image_folder_end_to_end_with_a_small_cnn(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs")
    torch.manual_seed(0)
    net = timm.create_model("test_efficientnet", pretrained=False)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    bb = load_backbone("test_efficientnet", tmp_path / "w.pth")
    before = copy.deepcopy(bb.model.state_dict())
    with open_dataset(root) as ds:
        result = score(ds, bb, DLCParams(levels=3, image_size=32, batch_size=4))
    assert result.ids[:2] == ["blue/000.png", "blue/001.png"]
    assert result.labels is not None and result.labels[0] == "blue"
    assert np.isfinite(result.scores).all() and (result.scores > 0).all()
    assert result.params["image_size"] == 32
    for key, value in bb.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_unlabelled_and_single_class_data_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((4, 8), dtype=np.float32))
    np.savez(tmp_path / "oneclass.npz", x=np.zeros((4, 8), dtype=np.float32), y=np.zeros(4))
    from tests.scoring.conftest import write_mlp

    bb = load_backbone(str(write_mlp(tmp_path / "mlp.pt")), input_kind="vector")
    with open_dataset(tmp_path / "nolabels.npz") as ds, pytest.raises(MissingFieldError):
        score(ds, bb, DLCParams(levels=1))
    with open_dataset(tmp_path / "oneclass.npz") as ds, pytest.raises(ParameterError, match="two"):
        score(ds, bb, DLCParams(levels=1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"levels": -1}, "levels"),
        ({"schedule": "cosine"}, "schedule"),
        ({"masking": "l2"}, "masking"),
        ({"masking": "l1", "draws": 3}, "draws"),
        ({"draws": 0, "masking": "random"}, "draws"),
        ({"step": 1.5}, "step"),
        ({"batch_size": 0}, "batch_size"),
        ({"image_size": 4}, "image_size"),
    ],
)
def test_bad_parameters_are_refused(
    vector_data: tuple[Path, Path, np.ndarray], kwargs: dict, match: str
) -> None:
    data, model, _ = vector_data
    bb = load_backbone(str(model), input_kind="vector")
    with open_dataset(data) as ds, pytest.raises(ParameterError, match=match):
        score(ds, bb, DLCParams(**kwargs))


def test_image_backbone_refuses_vectors(vector_data: tuple[Path, Path, np.ndarray]) -> None:
    data, _, _ = vector_data
    bb = load_backbone("efficientnet_lite0")
    with open_dataset(data) as ds, pytest.raises(ParameterError, match="takes images"):
        score(ds, bb, DLCParams(levels=1))


def test_spread_order_covers_the_path_early() -> None:
    from worker.scoring.dlc import spread_order

    for levels in (1, 2, 7, 50, 63):
        order = spread_order(levels)
        assert sorted(order) == list(range(1, levels + 1))
    first = spread_order(50)[:7]
    # The first levels visited reach both halves of the path, not only its start.
    assert min(first) <= 10 and max(first) >= 40


def test_early_stop_uses_fewer_levels_and_keeps_the_ranking(
    vector_data: tuple[Path, Path, np.ndarray],
) -> None:
    from worker.scoring.dlc import rank_correlation

    data, model, _ = vector_data
    bb = load_backbone(str(model), input_kind="vector")
    with open_dataset(data) as ds:
        full = score(ds, bb, DLCParams(levels=40, schedule="linear"))
        quick = score(
            ds, bb, DLCParams(levels=40, schedule="linear", early_stop=True), return_losses=True
        )
    assert full.levels_used == list(range(41))
    assert quick.levels_used[0] == 0 and quick.levels_used == sorted(quick.levels_used)
    assert 7 <= len(quick.levels_used) < 41
    assert quick.losses is not None and quick.losses.shape == (len(quick.levels_used), 60)
    assert len(quick.mask_fractions) == len(quick.levels_used)
    assert rank_correlation(quick.scores, full.scores) >= 0.99


def test_bf16_scores_rank_like_fp32(vector_data: tuple[Path, Path, np.ndarray]) -> None:
    from worker.scoring.dlc import rank_correlation

    data, model, _ = vector_data
    bb = load_backbone(str(model), input_kind="vector")
    with open_dataset(data) as ds:
        fp32 = score(ds, bb, DLCParams(levels=5, precision="fp32")).scores
        bf16 = score(ds, bb, DLCParams(levels=5, precision="bf16")).scores
    assert not np.array_equal(fp32, bf16)  # bf16 really ran
    assert rank_correlation(fp32, bf16) >= 0.99


@pytest.mark.parametrize("size", [(20, 20), (37, 23), (23, 61), (300, 200)])
def test_preprocessing_matches_torchvision_eval_transform(size: tuple[int, int]) -> None:
    from PIL import Image
    from torchvision import transforms

    from worker.scoring.preprocess import resize_crop

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    reference = transforms.Compose(
        [
            transforms.Resize(int(32 / 0.875), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(32),
            transforms.PILToTensor(),
        ]
    )
    assert np.array_equal(resize_crop(image, 32, 0.875, "bicubic"), reference(image).numpy())


def test_sharded_scores_equal_the_unsharded_ones_exactly(
    vector_data: tuple[Path, Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.scoring import dlc

    monkeypatch.setattr(dlc, "PROTOTYPE_GROUP", 8)
    data, model, _ = vector_data
    bb = load_backbone(str(model), input_kind="vector")
    params = DLCParams(levels=6, batch_size=4, masking="random", draws=2, seed=3)
    with open_dataset(data) as ds:
        whole = dlc.score(
            ds,
            bb,
            DLCParams(levels=6, batch_size=4, masking="random", draws=2, seed=3),
            return_losses=True,
        )
        bounds = dlc.shard_bounds(len(ds), shard_size=20, batch_size=4)
        assert bounds == [(0, 16), (16, 32), (32, 48), (48, 60)]
        parts = [dlc.shard_prototype_sums(ds, bb, params, lo, hi) for lo, hi in bounds]
        ids = np.concatenate([p[0] for p in parts])
        assert ids.tolist() == list(range(8))
        prototypes = dlc.reduce_prototypes(
            np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
        )
        pieces = [dlc.shard_losses(ds, bb, params, prototypes, lo, hi) for lo, hi in bounds]
    losses = np.concatenate([p[0] for p in pieces], axis=1)
    assert np.array_equal(losses, whole.losses)
    scores = losses.mean(axis=0, dtype=np.float64).astype(np.float32)
    assert np.array_equal(scores, whole.scores)
    assert np.array_equal(pieces[0][1], whole.mask_fractions)


def test_shards_refuse_what_cannot_shard(vector_data: tuple[Path, Path, np.ndarray]) -> None:
    from worker.scoring import dlc

    data, model, _ = vector_data
    bb = load_backbone(str(model), input_kind="vector")
    with open_dataset(data) as ds, pytest.raises(ParameterError, match="early stopping"):
        dlc.shard_prototype_sums(ds, bb, DLCParams(early_stop=True), 0, 10)


def test_default_paths_by_kind_and_schedule() -> None:
    """The paper's defaults (bench/quality.py found no interval excluding zero against them):
    the geometric path of 50 levels of 2% for labelled data; a linear request without levels
    gets the paper's 49 (2% to 98%); instructions keep 20% per step for 3 steps."""

    image = DLCParams().resolved("image")
    assert (image.schedule, image.levels, image.step, image.masking) == (
        "geometric",
        50,
        0.02,
        "l1",
    )
    for kind in ("vector", "text"):
        assert DLCParams().resolved(kind).identity(kind)["schedule"] == "geometric"
    lin = DLCParams(schedule="linear").resolved("image")
    assert (lin.levels, lin.start, lin.end) == (49, 0.02, 0.98)
    assert DLCParams(schedule="linear", levels=7).resolved("image").levels == 7
    assert DLCParams(levels=10).resolved("image").schedule == "geometric"
    inst = DLCParams().resolved("instruction")
    assert (inst.schedule, inst.levels, inst.step) == ("geometric", 3, 0.2)
    # Equivalent requests share cached scores: the implicit default equals the explicit one.
    assert DLCParams().identity("image") == DLCParams(schedule="geometric", levels=50).identity(
        "image"
    )
