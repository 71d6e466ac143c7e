"""The mask path: counts per schedule, prune-equivalence, nesting, exact restore."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from dlcprune.core.errors import ParameterError
from worker.scoring.masking import WeightMasker, mask_counts


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3),
        nn.ReLU(),
        nn.Conv2d(16, 16, 1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )


def conv_weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight.data for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_linear_schedule_is_the_papers_two_percent_grid() -> None:
    counts = mask_counts(10_000, 49, "linear")
    assert counts.tolist() == [200 * j for j in range(1, 50)]


def test_geometric_schedule_masks_two_percent_of_the_remainder() -> None:
    total = 1_000_003
    counts = mask_counts(total, 50, "geometric", step=0.02)
    k = 0
    for j in range(50):
        k += round(0.02 * (total - k))
        assert counts[j] == k
    assert counts[-1] / total == pytest.approx(1 - 0.98**50, abs=1e-4)
    assert np.all(np.diff(counts) > 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "cosine"}, "schedule"),
        ({"schedule": "geometric", "step": 0.0}, "step"),
        ({"schedule": "linear", "start": 0.5, "end": 0.1}, "start"),
    ],
)
def test_mask_counts_rejects_bad_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        mask_counts(100, 5, **kwargs)


def test_geometric_l1_equals_repeated_torch_prune_level_by_level() -> None:
    """The authors' procedure: global L1 pruning of 2% of what remains, applied repeatedly."""
    ours = small_cnn()
    ref = copy.deepcopy(ours)
    ref_params = [(m, "weight") for m in ref.modules() if isinstance(m, nn.Conv2d)]
    masker = WeightMasker(conv_weights(ours))
    order = masker.magnitude_order()
    counts = mask_counts(masker.total, 30, "geometric", step=0.02)
    prev = 0
    for j in range(30):
        prune.global_unstructured(ref_params, pruning_method=prune.L1Unstructured, amount=0.02)
        masker.zero(order[prev : counts[j]])
        prev = int(counts[j])
        ref_masks = torch.cat([m.weight_mask.reshape(-1) for m, _ in ref_params])
        our_zero = torch.cat([w.reshape(-1) == 0 for w in conv_weights(ours)])
        assert torch.equal(our_zero, ref_masks == 0), f"level {j + 1} differs"
        assert int(our_zero.sum()) == counts[j]
        # The surviving weights are untouched.
        ref_w = torch.cat([m.weight.reshape(-1) for m, _ in ref_params])
        assert torch.equal(torch.cat([w.reshape(-1) for w in conv_weights(ours)]), ref_w)


def test_restore_is_bit_exact_and_masks_apply_in_place() -> None:
    model = small_cnn(1)
    before = copy.deepcopy(model.state_dict())
    weights = conv_weights(model)
    with WeightMasker(weights) as masker:
        masker.zero(masker.magnitude_order()[: masker.total // 2])
        assert sum(int((w == 0).sum()) for w in weights) == masker.total // 2
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_zero_handles_channels_last_weights() -> None:
    model = small_cnn(2).to(memory_format=torch.channels_last)
    weights = conv_weights(model)
    reference = [w.clone().contiguous() for w in weights]
    masker = WeightMasker(weights)
    idx = np.array([0, 5, masker.total - 1])
    masker.zero(idx)
    flat = torch.cat([w.reshape(-1) for w in weights])
    ref_flat = torch.cat([w.reshape(-1) for w in reference])
    assert torch.count_nonzero(flat == 0) == 3
    assert flat[0] == 0 and flat[5] == 0 and flat[-1] == 0
    masker.restore()
    assert torch.equal(torch.cat([w.reshape(-1) for w in weights]), ref_flat)


def test_random_orders_are_seeded_permutations() -> None:
    masker = WeightMasker(conv_weights(small_cnn()))
    a = masker.random_order(seed=3, draw=0)
    assert np.array_equal(np.sort(a), np.arange(masker.total))
    assert np.array_equal(a, masker.random_order(seed=3, draw=0))
    assert not np.array_equal(a, masker.random_order(seed=3, draw=1))
    assert not np.array_equal(a, masker.random_order(seed=4, draw=0))


def test_magnitude_order_is_ascending_magnitude() -> None:
    weights = conv_weights(small_cnn())
    masker = WeightMasker(weights)
    mags = torch.cat([w.abs().reshape(-1) for w in weights]).numpy()
    assert np.all(np.diff(mags[masker.magnitude_order()]) >= 0)


def test_moving_down_the_path_restores_exactly() -> None:
    from worker.scoring.masking import MaskPlan

    model = small_cnn(3)
    weights = conv_weights(model)
    pristine = [w.clone() for w in weights]
    masker = WeightMasker(weights)
    plan = MaskPlan(masker, 10, "geometric", step=0.1)

    def snapshot() -> list[torch.Tensor]:
        return [w.clone() for w in weights]

    at = {}
    level = 0
    for target in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10):  # up, one level at a time
        plan.move(level, target)
        level = target
        at[target] = snapshot()
    for target in (3, 9, 1, 10, 5, 0):  # jumps in any direction land on the same weights
        plan.move(level, target)
        level = target
        expected = at.get(target, pristine)
        assert all(torch.equal(a, b) for a, b in zip(weights, expected, strict=True)), target
