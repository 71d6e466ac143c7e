"""One pass over a prepared dataset: decode or tokenize every sample once, then batched forward
passes with a progress report after each batch. DLC and the baselines share it.

Images are prepared once as (N, 3, S, S) uint8 (vectors (N, D) float32) and normalised per batch
on the device; texts and instructions are tokenized once and batched in order of length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dlcprune.core.errors import ParameterError
from dlcprune.core.params import DLCParams
from worker.scoring import input_cache
from worker.scoring.backbones import Backbone
from worker.scoring.preprocess import DEFAULT_MEMORY_LIMIT, PreparedInputs, prepare_inputs


@dataclass(frozen=True)
class Progress:
    """Where scoring stands. ``levels_*`` count forward passes over the whole dataset: the
    unmasked pass plus one per level and draw. ``samples_*`` count within the current stage."""

    stage: str  # "prepare", "unmasked" or "level j/L"
    levels_done: int
    levels_total: int
    samples_done: int
    samples_total: int

    @property
    def fraction(self) -> float:
        """Overall share of the work done, in [0, 1]; decoding counts as one pass."""
        n = max(self.samples_total, 1)
        if self.stage == "prepare":
            done = self.samples_done / n
        else:
            done = 1 + self.levels_done + self.samples_done / n
        return min(1.0, done / (1 + self.levels_total))


ProgressCallback = Callable[[Progress], None]


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class ArrayInputs:
    """Prepared images (N, 3, S, S) uint8 or vectors (N, D) float32, processed in index order."""

    def __init__(self, prepared: PreparedInputs, backbone: Backbone) -> None:
        self.prepared = prepared
        self.array = prepared.array
        self.device = backbone.device
        self.is_image = self.array.dtype == np.uint8
        self.order = np.arange(len(self.array))
        self.memory_format = (
            torch.channels_last if backbone.channels_last else torch.contiguous_format
        )
        if self.is_image:
            mean = torch.tensor(backbone.mean, dtype=torch.float32, device=self.device)
            std = torch.tensor(backbone.std, dtype=torch.float32, device=self.device)
            # (x / 255 - mean) / std folded into one multiply-add per pixel.
            self.scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
            self.shift = (-mean / std).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.array)

    def gather(self, idx: np.ndarray, device: torch.device) -> torch.Tensor:
        """The samples ``idx`` (any order), ready for the model: for training."""
        x = torch.from_numpy(np.ascontiguousarray(self.array[np.asarray(idx)])).to(device)
        if self.is_image:
            x = x.float().mul_(self.scale.to(device)).add_(self.shift.to(device))
            return x.contiguous(memory_format=self.memory_format)
        return x.float()

    def batch(self, lo: int, hi: int) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(self.array[lo:hi])).to(self.device)
        if self.is_image:
            x = x.float().mul_(self.scale).add_(self.shift)
            return x.contiguous(memory_format=self.memory_format)
        return x.float()

    def close(self) -> None:
        self.prepared.close()


class TokenInputs:
    """Tokenized samples, processed in order of length (batches pad little)."""

    def __init__(self, tokenized: Any, device: torch.device) -> None:
        self.tokenized = tokenized
        self.device = device
        self.order = tokenized.order

    def __len__(self) -> int:
        return len(self.tokenized)

    def batch(self, lo: int, hi: int) -> dict[str, torch.Tensor]:
        return self.tokenized.batch(self.order[lo:hi], self.device)

    def gather(self, idx: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        return self.tokenized.batch(np.asarray(idx), device)

    def close(self) -> None:
        self.tokenized.close()


class Runner:
    """Batched forward passes over prepared inputs, with a progress report after every batch.

    ``fn(idx, output)`` receives the dataset indices of the batch and the backbone's output
    (features, or per-sample losses for the "lm" objective).
    """

    def __init__(
        self,
        backbone: Backbone,
        inputs: Any,
        batch_size: int,
        on_batch: Callable[[int], None],
        precision: str = "auto",
    ) -> None:
        self.backbone = backbone
        self.inputs = inputs
        self.batch_size = batch_size
        self.on_batch = on_batch
        device = backbone.device
        # bfloat16 autocast where the hardware is fast at it (a GPU), float32 elsewhere.
        self.bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
        self.device_type = device.type

    @torch.inference_mode()
    def run(self, fn: Callable[[np.ndarray, torch.Tensor], None]) -> None:
        n = len(self.inputs)
        order = self.inputs.order
        forward = (
            self.backbone.losses if self.backbone.objective == "lm" else self.backbone.features
        )
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            for lo in range(0, n, self.batch_size):
                hi = min(n, lo + self.batch_size)
                out = forward(self.inputs.batch(lo, hi))
                fn(order[lo:hi], out.float())
                self.on_batch(hi)


def check_kinds(backbone: Backbone, dataset: Any) -> None:
    """Language models take their own kind of data; images and vectors are checked later."""
    kind = backbone.input_kind
    language = ("text", "instruction")
    if kind != dataset.kind and (kind in language or dataset.kind in language):
        what = {"text": "text", "instruction": "instructions"}.get(kind, kind + "s")
        raise ParameterError(
            f"the model {backbone.name!r} takes {what}, but the dataset holds {dataset.kind} data"
        )


def prepare(
    dataset: Any,
    backbone: Backbone,
    params: DLCParams,
    memory_limit: int,
    cache_dir: str | None,
    report: Callable[[str, int, int], None],
    start: int = 0,
    stop: int | None = None,
) -> Any:
    """Decode or tokenize every sample once (samples ``start..stop-1`` only, for a shard)."""
    kind = backbone.input_kind
    if kind in ("text", "instruction"):
        if (start, stop) not in ((0, None), (0, len(dataset))):
            raise ParameterError("language data is scored whole, not in shards")
        from worker.scoring import text

        assert params.max_length is not None
        on_progress = lambda done, _total: report("prepare", 0, done)  # noqa: E731
        if kind == "text":
            tokenized = text.tokenize_texts(
                dataset, backbone.tokenizer, params.max_length, progress=on_progress
            )
        else:
            tokenized = text.tokenize_instructions(
                dataset,
                backbone.tokenizer,
                params.max_length,
                template=params.template,
                truncation=params.truncation,
                progress=on_progress,
            )
        return TokenInputs(tokenized, backbone.device)
    size = params.image_size or backbone.default_image_size
    # Decoded inputs kept between jobs (input_cache: on when the worker runs a job).
    store = input_cache.cached()
    key = None
    if store is not None:
        cache, content = store
        end = len(dataset) if stop is None else min(stop, len(dataset))
        key = cache.key(
            content=content,
            kind=kind,
            size=size if kind == "image" else None,
            crop=backbone.crop_pct if kind == "image" else None,
            interpolation=backbone.interpolation if kind == "image" else None,
            start=start,
            stop=end,
        )
        hit = cache.get(key)
        if hit is not None and len(hit) == end - start:
            report("prepare", 0, len(hit))
            return ArrayInputs(PreparedInputs(hit), backbone)
    prepared = prepare_inputs(
        dataset,
        input_kind=kind,
        image_size=size,
        crop_pct=backbone.crop_pct,
        interpolation=backbone.interpolation,
        memory_limit=memory_limit,
        cache_dir=cache_dir,
        progress=lambda done, _total: report("prepare", 0, done),
        start=start,
        stop=stop,
    )
    if store is not None and key is not None:
        store[0].put(key, prepared.array)
    return ArrayInputs(prepared, backbone)


__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "ArrayInputs",
    "Progress",
    "ProgressCallback",
    "Runner",
    "TokenInputs",
    "check_kinds",
    "prepare",
    "resolve_device",
]
