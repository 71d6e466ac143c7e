"""Weight masks along DLC's learning path.

The path is a sequence of cumulative mask counts k_1 <= k_2 <= ... <= k_L over the T maskable
weight entries of a backbone (all maskable tensors flattened and concatenated, in order). Level j
zeros the first k_j entries of an *order* over those T entries:

- ``l1``: ascending magnitude |w| (the smallest weights go first), computed once with a stable
  sort, so every level's global threshold comes from one sort rather than a fresh one per level;
- ``random``: a seeded uniform permutation; one permutation per Monte Carlo draw.

Since the order is fixed, the masks are nested and moving from level j-1 to level j zeros only
entries ``order[k_{j-1}:k_j]``: the masks are applied in place and incrementally, and the original
weights are copied back exactly by ``restore``.

Schedules:
- ``linear``: fractions evenly spaced from ``start`` to ``end`` (the paper's {2%, 4%, ..., 98%}
  with 49 levels); k_j = floor(f_j * T + 0.5).
- ``geometric``: each step masks ``step`` of the weights that remain, as repeated
  ``torch.nn.utils.prune.global_unstructured(..., L1Unstructured, amount=step)`` does in the
  authors' code: k_j = k_{j-1} + round(step * (T - k_{j-1})), with Python's round (half to even),
  which is the rounding that torch's pruning uses. 50 steps of 2% end near 63.6%.
"""

from __future__ import annotations

import numpy as np
import torch

from dlcprune.core.errors import ParameterError
from dlcprune.core.params import LABELLED_PATH, MASKINGS, SCHEDULES, SCOPES, DLCParams

# The path's defaults are the parameters' (one definition): the schedule has none here, since it
# depends on the data (DLCParams.resolved).
_STEP: float = LABELLED_PATH["step"]
_START: float = DLCParams.start
_END: float = DLCParams.end


def mask_counts(
    total: int,
    levels: int,
    schedule: str,
    *,
    step: float = _STEP,
    start: float = _START,
    end: float = _END,
) -> np.ndarray:
    """Cumulative number of masked entries at levels 1..L: (L,) int64, non-decreasing, <= total.

    ``step`` is the geometric schedule's share per level, ``start`` and ``end`` the linear one's
    first and last share, all in [0, 1]."""
    if schedule not in SCHEDULES:
        raise ParameterError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if not isinstance(levels, (int, np.integer)) or isinstance(levels, bool) or levels < 0:
        raise ParameterError(f"levels must be a whole number >= 0, got {levels!r}")
    if total <= 0:
        raise ParameterError("the model has no weights to mask")
    if schedule == "geometric":
        if not 0.0 < step < 1.0:
            raise ParameterError(f"step must be in (0, 1), got {step!r}")
        counts = np.empty(levels, dtype=np.int64)
        k = 0
        for j in range(levels):
            # Same expression as torch.nn.utils.prune._compute_nparams_toprune on the remainder.
            k += round(step * (total - k))
            counts[j] = k
        return counts
    if not (0.0 <= start <= end <= 1.0):
        raise ParameterError(f"need 0 <= start <= end <= 1, got start={start!r}, end={end!r}")
    fractions = np.linspace(start, end, levels, dtype=np.float64)
    return np.floor(fractions * total + 0.5).astype(np.int64)


class WeightMasker:
    """Zeros entries of a list of weight tensors in place, and puts them back exactly.

    ``tensors``: the maskable weights (any shapes, one dtype and device each). Entry ``i`` of the
    flat concatenation belongs to the tensor whose ``offsets`` range holds ``i``.
    """

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        if not tensors:
            raise ParameterError("the model has no weights to mask")
        self.tensors = tensors
        sizes = np.array([t.numel() for t in tensors], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.total = int(self.offsets[-1])
        # Exact copies (same dtype) so restore is bit-for-bit; GPU weights are kept on the CPU,
        # where memory is usually larger (a large language model's Linear weights).
        self._originals = [
            t.detach().to("cpu", copy=True) if t.is_cuda else t.detach().clone() for t in tensors
        ]
        self.masked = 0

    def magnitude_order(self) -> np.ndarray:
        """(T,) int64: flat indices by ascending |w| of the original weights, ties by index."""
        mags = np.concatenate(
            [o.detach().abs().float().reshape(-1).cpu().numpy() for o in self._originals]
        )
        return np.argsort(mags, kind="stable").astype(np.int64)

    def random_order(self, seed: int, draw: int = 0) -> np.ndarray:
        """(T,) int64: a uniform permutation, reproducible from (seed, draw)."""
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(draw)]))
        return rng.permutation(self.total).astype(np.int64)

    @torch.no_grad()
    def zero(self, flat_indices: np.ndarray) -> None:
        """Zero the given flat entries (any order, no duplicates needed)."""
        if len(flat_indices) == 0:
            return
        idx = np.sort(np.asarray(flat_indices, dtype=np.int64))
        owners = np.searchsorted(self.offsets, idx, side="right") - 1
        bounds = np.searchsorted(owners, np.arange(len(self.tensors) + 1), side="left")
        for t_i in range(len(self.tensors)):
            lo, hi = bounds[t_i], bounds[t_i + 1]
            if lo == hi:
                continue
            local = torch.from_numpy(idx[lo:hi] - self.offsets[t_i])
            tensor = self.tensors[t_i]
            # Logical (row-major) positions, whatever the memory layout (channels_last included).
            tensor[torch.unravel_index(local.to(tensor.device), tensor.shape)] = 0
        self.masked += len(idx)

    @torch.no_grad()
    def unzero(self, flat_indices: np.ndarray) -> None:
        """Put the original values back at the given flat entries (moving down the path)."""
        if len(flat_indices) == 0:
            return
        idx = np.sort(np.asarray(flat_indices, dtype=np.int64))
        owners = np.searchsorted(self.offsets, idx, side="right") - 1
        bounds = np.searchsorted(owners, np.arange(len(self.tensors) + 1), side="left")
        for t_i in range(len(self.tensors)):
            lo, hi = bounds[t_i], bounds[t_i + 1]
            if lo == hi:
                continue
            local = torch.from_numpy(idx[lo:hi] - self.offsets[t_i])
            tensor, original = self.tensors[t_i], self._originals[t_i]
            pos = torch.unravel_index(local, tensor.shape)
            values = original[pos].to(tensor.device)
            tensor[tuple(p.to(tensor.device) for p in pos)] = values
        self.masked -= len(idx)

    @torch.no_grad()
    def restore(self) -> None:
        """Copy the original weights back, bit for bit."""
        for t, o in zip(self.tensors, self._originals, strict=True):
            t.copy_(o.to(t.device, non_blocking=False))
        self.masked = 0

    def tensor_magnitude_order(self, i: int) -> np.ndarray:
        """(numel,) int64: tensor ``i``'s local indices by ascending |w|, ties by index."""
        mags = self._originals[i].detach().abs().float().reshape(-1).cpu().numpy()
        return np.argsort(mags, kind="stable").astype(np.int64)

    def __enter__(self) -> WeightMasker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


class MaskPlan:
    """The entries to zero when moving from level j-1 to level j, for one mask path.

    ``scope="global"``: one order over all maskable entries (the smallest magnitudes of the whole
    network first, as ``prune.global_unstructured`` does). ``scope="layer"``: every tensor is
    masked by the same share of its own entries, by its own order (as ``prune.l1_unstructured``
    per module does). ``masking="random"`` replaces the magnitude orders by seeded permutations,
    one per ``draw``.
    """

    def __init__(
        self,
        masker: WeightMasker,
        levels: int,
        schedule: str,
        *,
        masking: str = "l1",
        scope: str = "global",
        seed: int = 0,
        draw: int = 0,
        step: float = _STEP,
        start: float = _START,
        end: float = _END,
    ) -> None:
        if scope not in SCOPES:
            raise ParameterError(f"mask scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if masking not in MASKINGS:
            raise ParameterError(f"masking must be one of {', '.join(MASKINGS)}")
        self.masker = masker
        self.levels = levels
        self.scope = scope

        def counts(total: int) -> np.ndarray:
            return mask_counts(total, levels, schedule, step=step, start=start, end=end)

        if scope == "global":
            if masking == "l1":
                self.orders = [masker.magnitude_order()]
            else:
                self.orders = [masker.random_order(seed, draw)]
            self.bases = [0]
            self.counts = [counts(masker.total)]
        else:
            self.orders, self.bases, self.counts = [], [], []
            for i, t in enumerate(masker.tensors):
                if masking == "l1":
                    order = masker.tensor_magnitude_order(i)
                else:
                    rng = np.random.default_rng(np.random.SeedSequence([seed, draw, i]))
                    order = rng.permutation(t.numel()).astype(np.int64)
                self.orders.append(order)
                self.bases.append(int(masker.offsets[i]))
                self.counts.append(counts(t.numel()))

    def entries(self, level_from: int, level_to: int) -> np.ndarray:
        """Flat indices masked at ``level_to`` but not at ``level_from`` (levels are nested, so
        going up zeros these, going down restores the reverse)."""
        lo_level, hi_level = sorted((level_from, level_to))
        parts = []
        for order, base, counts in zip(self.orders, self.bases, self.counts, strict=True):
            lo = int(counts[lo_level - 1]) if lo_level >= 1 else 0
            hi = int(counts[hi_level - 1]) if hi_level >= 1 else 0
            if hi > lo:
                parts.append(order[lo:hi] + base)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def move(self, level_from: int, level_to: int) -> None:
        """Change the weights from ``level_from``'s mask to ``level_to``'s, in place."""
        delta = self.entries(level_from, level_to)
        if level_to > level_from:
            self.masker.zero(delta)
        elif level_to < level_from:
            self.masker.unzero(delta)

    def chunk(self, level: int) -> np.ndarray:
        """Flat indices newly masked at ``level`` (1-based), given levels before it are applied."""
        parts = []
        for order, base, counts in zip(self.orders, self.bases, self.counts, strict=True):
            lo = int(counts[level - 2]) if level >= 2 else 0
            hi = int(counts[level - 1])
            if hi > lo:
                parts.append(order[lo:hi] + base)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def masked_fraction(self, level: int) -> float:
        """Share of all maskable entries zeroed at ``level`` (0 = unmasked)."""
        if level == 0:
            return 0.0
        return sum(int(c[level - 1]) for c in self.counts) / self.masker.total
