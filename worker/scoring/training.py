"""Fine-tuning a backbone with a classification head: the training-based baselines train on the
full dataset first (the cost DLC removes), and the quality benchmark trains on pruned subsets.

Inputs are the prepared tensors the DLC engine uses (images decoded once, texts tokenized once),
so every method sees identical data. The backbone is copied: the scoring backbone (and its
cached weights in a worker) is never changed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dlcprune.core.errors import ParameterError
from worker.scoring.backbones import Backbone


@dataclass
class TrainConfig:
    """One fixed protocol. ``steps`` optimisation steps of ``batch_size`` samples drawn by
    cycling through seeded shuffles of the training set (so subsets of any size get the same
    number of steps); AdamW with a linear warm-up over 10% of the steps and cosine decay."""

    steps: int = 150
    batch_size: int = 32
    lr: float = 1e-3
    head_lr: float = 1e-2
    weight_decay: float = 1e-4
    seed: int = 0


class Classifier(nn.Module):
    """The backbone's feature function followed by a linear head over K classes."""

    def __init__(self, backbone: Backbone, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.trunk = copy.deepcopy(backbone.model)
        self.head = nn.Linear(feature_dim, num_classes)
        self._fn = _rebind(backbone, self.trunk)

    def features(self, batch: Any) -> torch.Tensor:
        return self._fn(batch)

    def forward(self, batch: Any) -> torch.Tensor:
        return self.head(self.features(batch).float())


def _rebind(backbone: Backbone, trunk: nn.Module) -> Callable[[Any], torch.Tensor]:
    """The backbone's feature function, pointed at the copied trunk."""
    if backbone.input_kind == "text":
        from worker.scoring.text import encoder_features

        return encoder_features(trunk)
    if hasattr(trunk, "forward_head") and hasattr(trunk, "forward_features"):
        return lambda x: trunk.forward_head(trunk.forward_features(x), pre_logits=True)
    raise ParameterError(
        "training-based baselines fine-tune timm image models and Hugging Face text encoders; "
        f"{backbone.name!r} is neither"
    )


def feature_dim(backbone: Backbone, sample_batch: Any) -> int:
    with torch.inference_mode():
        return int(backbone.features(sample_batch).shape[1])


def _schedule(step: int, total: int) -> float:
    warm = max(1, total // 10)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * progress))


def train(
    model: Classifier,
    inputs: Any,
    targets: np.ndarray,
    indices: np.ndarray,
    config: TrainConfig,
    on_step: Callable[[int], None] | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> Classifier:
    """Train ``model`` on the samples ``indices`` of ``inputs`` (any prepared input with a
    ``gather(idx, device)`` method) for ``config.steps`` steps. ``on_epoch(e)`` is called each
    time the shuffled order has been used up (a pass over ``indices``)."""
    device = next(model.parameters()).device
    gen = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    params = [
        {"params": model.trunk.parameters(), "lr": config.lr},
        {"params": model.head.parameters(), "lr": config.head_lr},
    ]
    opt = torch.optim.AdamW(params, weight_decay=config.weight_decay)
    base = [g["lr"] for g in opt.param_groups]
    y_all = torch.from_numpy(targets).to(device)
    order = gen.permutation(indices)
    pos, epoch = 0, 0
    model.train()
    for step in range(config.steps):
        scale = _schedule(step, config.steps)
        for g, lr in zip(opt.param_groups, base, strict=True):
            g["lr"] = lr * scale
        take = []
        while len(take) < config.batch_size:
            if pos == len(order):
                epoch += 1
                if on_epoch is not None:
                    model.eval()
                    on_epoch(epoch)
                    model.train()
                order, pos = gen.permutation(indices), 0
            chunk = order[pos : pos + config.batch_size - len(take)]
            take.extend(chunk.tolist())
            pos += len(chunk)
        idx = np.asarray(take)
        loss = nn.functional.cross_entropy(
            model(inputs.gather(idx, device)), y_all[torch.from_numpy(idx).to(device)]
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step + 1)
    model.eval()
    return model


@torch.inference_mode()
def predict(model: Classifier, inputs: Any, indices: np.ndarray, batch_size: int = 256):  # type: ignore[no-untyped-def]
    """Softmax probabilities (n, K) float32 and penultimate features (n, F) for ``indices``."""
    device = next(model.parameters()).device
    model.eval()
    probs, feats = [], []
    for lo in range(0, len(indices), batch_size):
        idx = indices[lo : lo + batch_size]
        z = model.features(inputs.gather(idx, device)).float()
        probs.append(torch.softmax(model.head(z), dim=1).cpu().numpy())
        feats.append(z.cpu().numpy())
    return np.concatenate(probs), np.concatenate(feats)


def accuracy(model: Classifier, inputs: Any, targets: np.ndarray, indices: np.ndarray) -> float:
    probs, _ = predict(model, inputs, indices)
    return float((probs.argmax(axis=1) == targets[indices]).mean())
