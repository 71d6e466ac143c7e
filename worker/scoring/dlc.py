"""DLC: Distorting-based Learning Complexity, a training-free hardness score.

For a labelled dataset and a pre-trained backbone with features z(x):

- prototypes c_k: the mean unmasked feature of class k, (K, F) float32;
- the loss of sample x at mask level m is the cross-entropy of logits 1 / ||z_m(x) - c_k||_2 with
  the sample's class: (N,) float32, >= 0; a sample near its own prototype and far from the others
  gets a low loss;
- DLC(x) is the mean of that loss over the unmasked level and the L masked levels of the path
  (see ``masking``): a Monte Carlo estimate of the area under the loss curve. Low = easy.

No gradient step is taken: each level is one forward pass over the prepared dataset with a share
of the weights zeroed in place; the weights are restored exactly afterwards, even on error or
cancellation.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dlcprune.core.errors import MissingFieldError, ParameterError
from dlcprune.core.params import DLCParams
from worker.scoring.backbones import Backbone
from worker.scoring.masking import MaskPlan, WeightMasker
from worker.scoring.passes import (
    DEFAULT_MEMORY_LIMIT,
    Progress,
    ProgressCallback,
    Runner,
    TokenInputs,
    check_kinds,
    prepare,
    resolve_device,
)


@dataclass
class ScoreResult:
    """Scores of one dataset. ``losses`` row 0 is the unmasked level."""

    ids: list[str]
    labels: list[str] | None
    classes: list[str]
    scores: np.ndarray  # (N,) float32
    mask_fractions: np.ndarray  # (L+1,) float64, share of maskable weights zeroed per level
    params: dict[str, Any]
    losses: np.ndarray | None = None  # (L+1, N) float32
    timings: dict[str, float] = field(default_factory=dict)
    # Instructions: response tokens scored per sample (N,) int32; ids with none left (NaN score).
    tokens: np.ndarray | None = None
    unscored: list[str] = field(default_factory=list)
    # Path levels the score averages (0 = unmasked); all of 0..L unless stopped early.
    levels_used: list[int] = field(default_factory=list)
    # The unmasked backbone features (N, F) float32 (labelled data; None for instructions and
    # for shards, whose features are spread over workers).
    features: np.ndarray | None = None

    def write_csv(self, path: str) -> None:
        """``sample_id,label,score``: one row per sample in dataset order; scores round-trip.

        Written to a temporary file beside ``path`` and renamed, so a reader never sees half.
        """
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                write_scores_csv(fh, self.ids, self.labels, self.scores)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_scores_csv(fh: Any, ids: list[str], labels: list[str] | None, scores: np.ndarray) -> None:
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(["sample_id", "label", "score"])
    for i, sid in enumerate(ids):
        # 9 significant digits round-trip any float32 exactly.
        value = float(scores[i])
        # An empty cell: the sample could not be scored (its response was truncated away).
        cell = f"{value:.9g}" if math.isfinite(value) else ""
        writer.writerow([sid, labels[i] if labels is not None else "", cell])


def prototype_loss(
    features: torch.Tensor, prototypes: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of inverse-distance logits.

    features (B, F) float32, prototypes (K, F) float32, targets (B,) int64 in [0, K)
    -> (B,) float32 >= 0. A distance of 0 is clamped so its logit stays finite.

    Equal to ``cross_entropy(1 / dist, targets)``, computed in float64 as
    ``log1p(sum_{k != y} exp(l_k - l_y))`` when the true class has the largest logit: the usual
    ``logsumexp(l) - l_y`` rounds every loss below ~1e-7 to exactly 0, and 1/distance logits are
    large for a sample close to its prototype, so the easiest samples would all tie at 0.
    """
    dist = torch.cdist(
        features.float(), prototypes.float(), compute_mode="donot_use_mm_for_euclid_dist"
    )
    logits = 1.0 / dist.double().clamp_min(1e-12)
    margin = logits - logits.gather(1, targets.view(-1, 1))  # (B, K), 0 at the true class
    top = margin.max(dim=1).values.clamp_min(0.0)  # (B,) >= 0
    others = torch.exp(margin - top[:, None]).scatter(1, targets.view(-1, 1), 0.0).sum(dim=1)
    loss = torch.where(top > 0, top + torch.log(torch.exp(-top) + others), torch.log1p(others))
    return loss.float()


def class_targets(labels: list[str] | None, classes: list[str]) -> np.ndarray:
    """Label names -> (N,) int64 class indices into ``classes``."""
    if labels is None:
        raise MissingFieldError("DLC with an image or vector backbone needs labelled data")
    index = {c: i for i, c in enumerate(classes)}
    return np.fromiter((index[lab] for lab in labels), dtype=np.int64, count=len(labels))


# Class sums are accumulated per group of this many consecutive samples, then the groups are
# added in order. A shard covers whole groups, so sharded and unsharded runs do the same
# floating-point additions in the same order and get bit-identical prototypes.
PROTOTYPE_GROUP = int(os.environ.get("DLCPRUNE_PROTOTYPE_GROUP", "4096"))


def group_class_sums(
    features: np.ndarray, targets: np.ndarray, num_classes: int, first_index: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group class sums of features whose first row is sample ``first_index`` (a multiple of
    ``PROTOTYPE_GROUP``). Returns group ids (G,) int64, sums (G, K, F) float64, counts (G, K)."""
    group = PROTOTYPE_GROUP
    if first_index % group:
        raise ValueError("a shard must start on a prototype group boundary")
    n = len(features)
    ids, sums, counts = [], [], []
    for lo in range(0, n, group):
        hi = min(n, lo + group)
        s = np.zeros((num_classes, features.shape[1]), dtype=np.float64)
        np.add.at(s, targets[lo:hi], features[lo:hi].astype(np.float64))
        ids.append((first_index + lo) // group)
        sums.append(s)
        counts.append(np.bincount(targets[lo:hi], minlength=num_classes))
    return np.asarray(ids, dtype=np.int64), np.stack(sums), np.stack(counts).astype(np.int64)


def reduce_prototypes(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Group sums (G, K, F) and counts (G, K), in group order -> (K, F) float32 class means."""
    total = np.zeros(sums.shape[1:], dtype=np.float64)
    for g in range(len(sums)):
        total += sums[g]
    count = counts.sum(axis=0).astype(np.float64)
    if np.any(count == 0):
        raise ParameterError("every class needs at least one sample")
    return (total / count[:, None]).astype(np.float32)


def compute_prototypes(features: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, F) features, (N,) targets -> (K, F) float32 class means (accumulated in float64)."""
    _, sums, counts = group_class_sums(features, targets, num_classes)
    return reduce_prototypes(sums, counts)


def score(
    dataset: Any,
    backbone: Backbone,
    params: DLCParams | None = None,
    *,
    return_losses: bool = False,
    progress: ProgressCallback | None = None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    cache_dir: str | None = None,
) -> ScoreResult:
    """DLC scores of every sample of ``dataset`` (a ``dlcprune.core.formats.Reader``).

    ``params`` (``DLCParams``; default: all defaults) is validated, and its ``levels``,
    ``schedule``, ``step`` and ``max_length`` left at None take the data kind's defaults
    (``params.KIND_DEFAULTS``). Labelled images, vectors and texts use the prototype loss;
    instructions use the response NLL of a causal LM.
    Returns scores (N,) float32 in dataset order (NaN for an instruction whose response was cut
    away entirely: see ``ScoreResult.unscored``), and with ``return_losses`` the per-level losses
    (L+1, N) float32 (row 0 unmasked). ``progress`` is called after every batch; raising from it
    (for example ``errors.Cancelled``) stops scoring, and the weights are restored either way.
    Deterministic for the same inputs, parameters and batch size.
    """
    if params is not None and not isinstance(params, DLCParams):
        raise TypeError(f"params must be DLCParams, not {type(params).__name__}")
    params = (params or DLCParams()).validate().resolved(dataset.kind)
    assert params.levels is not None
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    n = len(dataset)
    check_kinds(backbone, dataset)
    if backbone.objective == "lm":
        classes: list[str] = []
        targets_np = None
    else:
        classes = list(dataset.classes)
        targets_np = class_targets(dataset.labels, classes)
        if len(classes) < 2:
            raise ParameterError(
                "DLC needs at least two classes: prototype distances compare classes"
            )
    total_passes = 1 + params.levels * params.draws

    def report(stage: str, levels_done: int, samples_done: int) -> None:
        if progress is not None:
            progress(Progress(stage, levels_done, total_passes, samples_done, n))

    inputs = prepare(dataset, backbone, params, memory_limit, cache_dir, report)
    timings["prepare_s"] = time.perf_counter() - t0
    kept: dict[str, np.ndarray] = {}
    try:
        losses, fractions, used = _score_prepared(
            inputs, targets_np, len(classes), backbone, params, report, features_out=kept
        )
    finally:
        inputs.close()
    # With early stopping only some levels were computed; the score averages those.
    losses, fractions = losses[used], fractions[used]
    timings["total_s"] = time.perf_counter() - t0
    tokens = None
    unscored: list[str] = []
    if isinstance(inputs, TokenInputs) and inputs.tokenized.response_tokens is not None:
        tokens = inputs.tokenized.response_tokens
        unscored = [dataset.ids[i] for i in np.flatnonzero(tokens == 0)]
    with np.errstate(invalid="ignore"):
        scores = losses.mean(axis=0, dtype=np.float64).astype(np.float32)
    extra: dict[str, Any] = {"model": backbone.name}
    if backbone.input_kind == "image":
        extra["image_size"] = params.image_size or backbone.default_image_size
    return ScoreResult(
        ids=list(dataset.ids),
        labels=list(dataset.labels) if dataset.labels is not None else None,
        classes=classes,
        scores=scores,
        mask_fractions=fractions,
        params=params.to_dict() | extra,
        losses=losses if return_losses else None,
        timings=timings,
        tokens=tokens,
        unscored=unscored,
        levels_used=used,
        features=kept.get("features"),
    )


def _score_prepared(
    inputs: Any,
    targets_np: np.ndarray | None,
    num_classes: int,
    backbone: Backbone,
    params: DLCParams,
    report: Callable[[str, int, int], None],
    prototypes_np: np.ndarray | None = None,
    features_out: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Losses (L+1, N) float32 (row 0 unmasked, row j level j), the masked share per level, and
    the levels computed (all, or fewer with early stopping).

    ``prototypes_np`` (K, F): given by a shard's coordinator; otherwise computed here from the
    unmasked features of all the inputs; then, with ``features_out``, those features (N, F)
    float32 are left in it under ``"features"``."""
    assert params.levels is not None
    n = len(inputs)
    losses = np.zeros((params.levels + 1, n), dtype=np.float32)
    stage = {"name": "unmasked", "done": 0}
    runner = Runner(
        backbone,
        inputs,
        params.batch_size,
        on_batch=lambda hi: report(stage["name"], stage["done"], hi),
        precision=params.precision,
    )
    backbone.model.eval()

    if backbone.objective == "lm":

        def level_loss(idx: np.ndarray, out: torch.Tensor) -> np.ndarray:
            return out.cpu().numpy()

        def unmasked(idx: np.ndarray, out: torch.Tensor) -> None:
            losses[0, idx] = level_loss(idx, out)

        runner.run(unmasked)
    else:
        assert targets_np is not None
        targets = torch.from_numpy(targets_np).to(backbone.device)

        def level_loss(idx: np.ndarray, out: torch.Tensor) -> np.ndarray:
            index = torch.from_numpy(idx).to(backbone.device)
            return prototype_loss(out, prototypes, targets[index]).cpu().numpy()

    if backbone.objective != "lm" and prototypes_np is not None:
        prototypes = torch.from_numpy(prototypes_np).to(backbone.device)

        def unmasked_loss(idx: np.ndarray, out: torch.Tensor) -> None:
            losses[0, idx] = level_loss(idx, out)

        runner.run(unmasked_loss)
    elif backbone.objective != "lm":
        assert targets_np is not None
        # Unmasked pass: keep the features; the prototypes (so the losses) need all of them.
        features: np.ndarray | None = None

        def keep_features(idx: np.ndarray, z: torch.Tensor) -> None:
            nonlocal features
            if features is None:
                features = np.empty((n, z.shape[1]), dtype=np.float32)
            features[idx] = z.cpu().numpy()

        runner.run(keep_features)
        assert features is not None
        prototypes_np = compute_prototypes(features, targets_np, num_classes)
        prototypes = torch.from_numpy(prototypes_np).to(backbone.device)
        for lo in range(0, n, params.batch_size):
            hi = min(n, lo + params.batch_size)
            z = torch.from_numpy(features[lo:hi]).to(backbone.device)
            losses[0, lo:hi] = prototype_loss(z, prototypes, targets[lo:hi]).cpu().numpy()
        if features_out is not None:
            features_out["features"] = features
        del features

    stage["done"] = 1
    fractions = np.zeros(params.levels + 1, dtype=np.float64)
    if params.levels == 0:
        return losses, fractions, [0]
    # Resolved parameters: the data kind's defaults are filled in.
    assert params.schedule is not None and params.step is not None
    masker = WeightMasker([t for _, t in backbone.maskable])
    plans = [
        MaskPlan(
            masker,
            params.levels,
            params.schedule,
            masking=params.masking,
            scope=params.scope,
            seed=params.seed,
            draw=draw,
            step=params.step,
            start=params.start,
            end=params.end,
        )
        for draw in range(params.draws)
    ]
    visit = spread_order(params.levels) if params.early_stop else list(range(1, params.levels + 1))
    computed = [0]
    history: list[np.ndarray] = []
    current = 0
    try:
        for j in visit:
            row = np.zeros(n, dtype=np.float64)
            stage["name"] = f"level {j}/{params.levels}"
            for plan in plans:
                if params.draws == 1:
                    plan.move(current, j)  # incremental: only the entries that change
                else:
                    masker.restore()
                    plan.move(0, j)

                def add_loss(idx: np.ndarray, out: torch.Tensor, row: np.ndarray = row) -> None:
                    row[idx] += level_loss(idx, out)

                runner.run(add_loss)
                stage["done"] += 1
            current = j
            losses[j] = (row / params.draws).astype(np.float32)
            fractions[j] = plans[0].masked_fraction(j)
            computed.append(j)
            if params.early_stop:
                with np.errstate(invalid="ignore"):
                    running = losses[computed].mean(axis=0, dtype=np.float64)
                history.append(running)
                if _converged(history, params):
                    break
    finally:
        masker.restore()
    report("done", stage["done"], n)
    return losses, fractions, sorted(computed)


def spread_order(levels: int) -> list[int]:
    """Levels 1..L in an order that covers the whole path early: the base-2 van der Corput
    sequence (1/2, 1/4, 3/4, 1/8, ...) scaled to L, then any level it skipped. A prefix of this
    order is spread over the path instead of bunched at its start."""
    order: list[int] = []
    seen: set[int] = set()
    k = 1
    while k < 4 * levels + 4:
        v, denom, x = 0.0, 1.0, k
        while x:
            denom *= 2
            v += (x & 1) / denom
            x >>= 1
        level = min(levels, max(1, round(v * levels + 0.5)))
        if level not in seen:
            seen.add(level)
            order.append(level)
        k += 1
    order.extend(j for j in range(1, levels + 1) if j not in seen)
    return order


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two score vectors (ties by position; NaN ignored)."""
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 3:
        return 1.0
    ra = np.argsort(np.argsort(a[ok], kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b[ok], kind="stable"), kind="stable").astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom else 1.0


def _converged(history: list[np.ndarray], params: DLCParams) -> bool:
    """The running score's ranking stopped changing: its Spearman correlation with its value
    ``early_stop_window`` levels earlier is at least ``early_stop_tol``."""
    window = params.early_stop_window
    if len(history) < max(params.early_stop_min, window + 1):
        return False
    return rank_correlation(history[-1], history[-1 - window]) >= params.early_stop_tol


# Shards ----------------------------------------------------------------------------------------
#
# A large dataset is scored by several workers: each computes its shard's per-group class sums
# (one unmasked pass), a coordinator reduces them to the prototypes, then each computes its
# shard's losses along the same deterministic mask path. Shards start on prototype-group and batch
# boundaries, so every batch, every class sum and every loss is the one the unsharded run
# computes: the merged scores are bit-identical.


def shard_bounds(n: int, shard_size: int, batch_size: int) -> list[tuple[int, int]]:
    """Contiguous shards of about ``shard_size`` samples, each a multiple of the prototype group
    and of the batch size (the last takes the rest)."""
    unit = math.lcm(PROTOTYPE_GROUP, max(1, batch_size))
    size = max(unit, (shard_size // unit) * unit)
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def _shard_setup(dataset: Any, backbone: Backbone, params: DLCParams) -> tuple[DLCParams, Any]:
    params = params.validate().resolved(dataset.kind)
    check_kinds(backbone, dataset)
    if backbone.input_kind in ("text", "instruction") or backbone.objective == "lm":
        raise ParameterError("language data is scored whole, not in shards")
    if params.early_stop:
        raise ParameterError("early stopping needs every sample's score: it does not shard")
    classes = list(dataset.classes)
    if len(classes) < 2:
        raise ParameterError("DLC needs at least two classes: prototype distances compare classes")
    return params, class_targets(dataset.labels, classes)


def shard_prototype_sums(
    dataset: Any,
    backbone: Backbone,
    params: DLCParams,
    start: int,
    stop: int,
    *,
    progress: ProgressCallback | None = None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    cache_dir: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase 1 of a shard: unmasked features of samples ``start..stop-1`` reduced to per-group
    class sums: group ids (G,), sums (G, K, F) float64, counts (G, K)."""
    params, targets_all = _shard_setup(dataset, backbone, params)
    n = stop - start

    def report(stage: str, levels_done: int, samples_done: int) -> None:
        if progress is not None:
            progress(Progress(stage, levels_done, 1, samples_done, n))

    inputs = prepare(dataset, backbone, params, memory_limit, cache_dir, report, start, stop)
    features = np.empty((0, 0), dtype=np.float32)
    try:
        runner = Runner(
            backbone,
            inputs,
            params.batch_size,
            on_batch=lambda hi: report("prototypes", 0, hi),
            precision=params.precision,
        )
        backbone.model.eval()
        chunks: dict[int, np.ndarray] = {}
        runner.run(lambda idx, z: chunks.__setitem__(int(idx[0]), z.cpu().numpy()))
        features = np.concatenate([chunks[k] for k in sorted(chunks)])
    finally:
        inputs.close()
    report("done", 1, n)
    return group_class_sums(
        features, targets_all[start:stop], len(dataset.classes), first_index=start
    )


def shard_losses(
    dataset: Any,
    backbone: Backbone,
    params: DLCParams,
    prototypes: np.ndarray,
    start: int,
    stop: int,
    *,
    progress: ProgressCallback | None = None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    cache_dir: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Phase 2 of a shard: losses (L+1, stop-start) float32 of its samples along the mask path
    with the dataset's prototypes, and the masked share per level (L+1,)."""
    params, targets_all = _shard_setup(dataset, backbone, params)
    assert params.levels is not None
    n = stop - start
    total_passes = 1 + params.levels * params.draws

    def report(stage: str, levels_done: int, samples_done: int) -> None:
        if progress is not None:
            progress(Progress(stage, levels_done, total_passes, samples_done, n))

    inputs = prepare(dataset, backbone, params, memory_limit, cache_dir, report, start, stop)
    try:
        losses, fractions, _ = _score_prepared(
            inputs,
            targets_all[start:stop],
            len(dataset.classes),
            backbone,
            params,
            report,
            prototypes_np=prototypes,
        )
    finally:
        inputs.close()
    return losses, fractions


__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "PROTOTYPE_GROUP",
    "DLCParams",
    "Progress",
    "ScoreResult",
    "class_targets",
    "compute_prototypes",
    "prototype_loss",
    "resolve_device",
    "score",
    "shard_bounds",
    "shard_losses",
    "shard_prototype_sums",
    "write_scores_csv",
]
