"""Baseline scores to compare DLC against, under the same conventions: (N,) float32 per sample,
computed on the same prepared inputs.

Training-free (one unmasked pass of the pre-trained backbone):
- ``random``: uniform noise from the seed (selection by it is random selection);
- ``herding``: per class, greedy herding on the features (Welling, 2009): the rank at which a
  sample is picked so that the running mean stays closest to the class mean; low = picked first;
- ``kcenter_greedy``: per class, greedy k-center on the features (Sener & Savarese, 2018): the
  rank at which a sample becomes a center, starting from the one nearest the class mean;
- ``moderate``: Moderate-DS (Xia et al., 2023): |distance to the class median feature - the median
  of those distances|; low = moderate.

Training-based: the backbone plus a linear head is fine-tuned on the whole dataset for
``epochs`` passes, once per seed (that training is what DLC avoids), then, averaged over seeds:
- ``el2n``: the L2 norm of softmax(f(x)) - onehot(y) (Paul et al., 2021);
- ``grand``: the norm of the loss gradient with respect to the head, ||p - y|| sqrt(||z||^2 + 1)
  (the last-layer form of GraNd, as common implementations use);
- ``forgetting``: forgetting events (Toneva et al., 2019): correct after one pass, wrong after the
  next, counted over the passes; a sample never learned gets ``epochs``;
- ``entropy``, ``margin`` (1 - (p1 - p2)), ``least_confidence`` (1 - p_max): uncertainty of the
  fine-tuned predictions.
For every training-based score, high = hard. ``STRATEGY`` gives each method's usual selection.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dlcprune.core.errors import ParameterError
from dlcprune.core.params import (
    BASELINES,
    TRAINING_BASED,
    BaselineParams,
    DLCParams,
)
from worker.scoring.backbones import Backbone
from worker.scoring.dlc import class_targets
from worker.scoring.passes import (
    DEFAULT_MEMORY_LIMIT,
    Progress,
    ProgressCallback,
    Runner,
    prepare,
)


def _features(inputs: Any, backbone: Backbone, params: Any, report: Any) -> np.ndarray:
    n = len(inputs)
    feats: np.ndarray | None = None

    def keep(idx: np.ndarray, z: torch.Tensor) -> None:
        nonlocal feats
        if feats is None:
            feats = np.empty((n, z.shape[1]), dtype=np.float32)
        feats[idx] = z.cpu().numpy()

    Runner(
        backbone,
        inputs,
        params.batch_size,
        on_batch=lambda hi: report("features", 0, hi),
        precision="fp32",
    ).run(keep)
    assert feats is not None
    return feats


def herding_ranks(features: np.ndarray) -> np.ndarray:
    """(n, F) -> (n,) pick rank / n in [0, 1): greedy herding towards the mean."""
    n = len(features)
    mu = features.mean(axis=0, dtype=np.float64)
    chosen = np.zeros(n, dtype=bool)
    ranks = np.empty(n, dtype=np.float64)
    total = np.zeros_like(mu)
    x = features.astype(np.float64)
    for k in range(n):
        # The sample whose addition brings the running mean closest to mu.
        cand = (total[None, :] + x) / (k + 1)
        dist = np.linalg.norm(cand - mu[None, :], axis=1)
        dist[chosen] = np.inf
        i = int(np.argmin(dist))
        chosen[i] = True
        ranks[i] = k / n
        total += x[i]
    return ranks


def kcenter_ranks(features: np.ndarray) -> np.ndarray:
    """(n, F) -> (n,) rank / n at which each sample becomes a center (farthest-first), starting
    from the sample nearest the mean."""
    n = len(features)
    x = features.astype(np.float64)
    ranks = np.empty(n, dtype=np.float64)
    chosen = np.zeros(n, dtype=bool)
    current = int(np.argmin(np.linalg.norm(x - x.mean(axis=0), axis=1)))
    dist = np.full(n, np.inf)
    for k in range(n):
        ranks[current] = k / n
        chosen[current] = True
        dist = np.minimum(dist, np.linalg.norm(x - x[current], axis=1))
        dist[chosen] = -np.inf
        current = int(np.argmax(dist))
    return ranks


def moderate_scores(features: np.ndarray) -> np.ndarray:
    """(n, F) -> (n,) |d - median(d)| with d the distance to the class median feature."""
    median = np.median(features, axis=0)
    d = np.linalg.norm(features - median, axis=1)
    return np.abs(d - np.median(d))


def _per_class(
    fn: Callable[[np.ndarray], np.ndarray], feats: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    out = np.empty(len(feats), dtype=np.float64)
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        out[idx] = fn(feats[idx])
    return out


def score_baseline(
    dataset: Any,
    backbone: Backbone,
    method: str,
    params: BaselineParams | None = None,
    *,
    progress: ProgressCallback | None = None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    features_out: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Scores (N,) float32 of ``method`` for a labelled dataset, and timings.

    With ``features_out``, the samples' unmasked backbone features (N, F) float32 are left in it
    under ``"features"`` (the training-free methods have them anyway; ``random`` and the
    training-based ones make one more unmasked pass for them)."""
    if method not in BASELINES:
        raise ParameterError(f"unknown method {method!r}; baselines: {', '.join(BASELINES)}")
    params = (params or BaselineParams()).validate()
    t0 = time.perf_counter()
    n = len(dataset)
    classes = list(dataset.classes)
    targets = class_targets(dataset.labels, classes)
    if len(classes) < 2:
        raise ParameterError("the baselines need at least two classes")
    if method == "random" and features_out is None:
        rng = np.random.default_rng(np.random.SeedSequence([params.seed, 7919]))
        return rng.random(n).astype(np.float32), {"total_s": time.perf_counter() - t0}
    training = method in TRAINING_BASED
    passes = 1 if not training else 1 + params.seeds * (params.epochs + 1)
    if training and features_out is not None:
        passes += 1

    def report(stage: str, done: int, samples: int) -> None:
        if progress is not None:
            progress(Progress(stage, min(done, passes), passes, samples, n))

    dlc_like = DLCParams(
        image_size=params.image_size, max_length=params.max_length, batch_size=params.batch_size
    ).resolved(dataset.kind)
    inputs = prepare(dataset, backbone, dlc_like, memory_limit, None, report)
    try:
        if method == "random":
            features_out["features"] = _features(inputs, backbone, params, report)  # type: ignore[index]
            rng = np.random.default_rng(np.random.SeedSequence([params.seed, 7919]))
            scores = rng.random(n)
        elif not training:
            feats = _features(inputs, backbone, params, report)
            if features_out is not None:
                features_out["features"] = feats
            if method == "herding":
                scores = _per_class(herding_ranks, feats, targets)
            elif method == "kcenter_greedy":
                scores = _per_class(kcenter_ranks, feats, targets)
            else:
                scores = _per_class(moderate_scores, feats, targets)
        else:
            if features_out is not None:
                features_out["features"] = _features(inputs, backbone, params, report)
            scores = _training_scores(
                inputs, backbone, targets, len(classes), method, params, report
            )
    finally:
        inputs.close()
    report("done", passes, n)
    return scores.astype(np.float32), {"total_s": time.perf_counter() - t0}


def training_signals(
    inputs: Any,
    backbone: Backbone,
    targets: np.ndarray,
    num_classes: int,
    params: BaselineParams,
    report: Callable[[str, int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Fine-tune on everything, ``params.seeds`` times; every training-based score, (N,) each,
    averaged over seeds (one shared training serves all six)."""
    sums = {m: np.zeros(len(inputs), dtype=np.float64) for m in TRAINING_BASED}
    for s in range(params.seeds):
        for name, values in _one_seed(
            inputs, backbone, targets, num_classes, params, s, report
        ).items():
            sums[name] += values
    return {m: v / params.seeds for m, v in sums.items()}


def _one_seed(
    inputs: Any,
    backbone: Backbone,
    targets: np.ndarray,
    num_classes: int,
    params: BaselineParams,
    s: int,
    report: Callable[[str, int, int], None] | None,
) -> dict[str, np.ndarray]:
    from worker.scoring import training

    n = len(inputs)
    everyone = np.arange(n)
    seed = int(np.random.SeedSequence([params.seed, s]).generate_state(1)[0])
    probe = inputs.gather(everyone[:2], backbone.device)
    torch.manual_seed(seed)  # the head's initial weights come from the seed too
    model = training.Classifier(backbone, num_classes, training.feature_dim(backbone, probe))
    model.to(backbone.device)
    state = {"correct": np.zeros(n, dtype=bool)}
    learned = np.zeros(n, dtype=bool)
    forgets = np.zeros(n, dtype=np.float64)

    def on_epoch(epoch: int) -> None:
        probs, _ = training.predict(model, inputs, everyone)
        correct = probs.argmax(axis=1) == targets
        forgets[state["correct"] & ~correct] += 1
        learned[correct] = True
        state["correct"] = correct
        if report is not None:
            report(f"training seed {s + 1}/{params.seeds}", 1 + s * (params.epochs + 1) + epoch, n)

    config = training.TrainConfig(
        steps=params.epochs * math.ceil(n / params.train_batch_size),
        batch_size=params.train_batch_size,
        lr=params.lr,
        head_lr=params.head_lr,
        seed=seed,
    )
    training.train(model, inputs, targets, everyone, config, on_epoch=on_epoch)
    probs, feats = training.predict(model, inputs, everyone)
    on_epoch(params.epochs)  # the state after the last pass counts for forgetting too
    p = probs.astype(np.float64)
    onehot = np.eye(num_classes, dtype=np.float64)[targets]
    err = np.linalg.norm(p - onehot, axis=1)
    top2 = np.sort(p, axis=1)[:, -2:]
    return {
        "el2n": err,
        "grand": err * np.sqrt((feats.astype(np.float64) ** 2).sum(axis=1) + 1.0),
        "forgetting": np.where(learned, forgets, float(params.epochs)),
        "entropy": -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1),
        "margin": 1.0 - (top2[:, 1] - top2[:, 0]),
        "least_confidence": 1.0 - p.max(axis=1),
    }


def _training_scores(
    inputs: Any,
    backbone: Backbone,
    targets: np.ndarray,
    num_classes: int,
    method: str,
    params: BaselineParams,
    report: Callable[[str, int, int], None],
) -> np.ndarray:
    return training_signals(inputs, backbone, targets, num_classes, params, report)[method]
