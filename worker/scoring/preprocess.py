"""Decode and resize every sample once, before any mask level is scored.

Images become (3, S, S) uint8 tensors with the backbone's own preprocessing: the shorter side is
resized to floor(S / crop_pct) with the backbone's interpolation, then centre-cropped to S x S (as
timm's evaluation transform does). Normalisation (mean, std) happens per batch on the float tensor.
Vectors stay float32 (D,). The prepared array lives in memory, or memory-mapped in a temporary file
when it is larger than ``memory_limit`` bytes, and serves every level.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from dlcprune.core.errors import DatasetError, ParameterError

INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}

DEFAULT_MEMORY_LIMIT = 2 * 2**30


def resize_crop(image: Image.Image, size: int, crop_pct: float, interpolation: str) -> np.ndarray:
    """RGB image -> (3, size, size) uint8: shorter side to floor(size / crop_pct), centre crop.

    The arithmetic is torchvision's ``Resize(int)`` + ``CenterCrop`` (timm's evaluation
    transform): the longer side is truncated, the crop offset rounded half to even.
    """
    resample = INTERPOLATIONS.get(interpolation, Image.Resampling.BICUBIC)
    scale = max(size, math.floor(size / crop_pct))
    w, h = image.size
    if w <= h:
        new_w, new_h = scale, int(scale * h / w)
    else:
        new_w, new_h = int(scale * w / h), scale
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), resample)
    top = round((new_h - size) / 2.0)
    left = round((new_w - size) / 2.0)
    image = image.crop((left, top, left + size, top + size))
    arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return arr.transpose(2, 0, 1)


class PreparedInputs:
    """The prepared samples: ``array`` is (N, 3, S, S) uint8 or (N, D) float32."""

    def __init__(self, array: np.ndarray, tmpdir: str | None = None) -> None:
        self.array = array
        self._tmpdir = tmpdir

    @property
    def memory_mapped(self) -> bool:
        return self._tmpdir is not None

    def __len__(self) -> int:
        return len(self.array)

    def close(self) -> None:
        if self._tmpdir is not None:
            arr = self.array
            self.array = np.empty((0, *arr.shape[1:]), dtype=arr.dtype)
            if isinstance(arr, np.memmap):
                arr._mmap.close()  # type: ignore[attr-defined]
            del arr
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> PreparedInputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _allocate(
    shape: tuple[int, ...], dtype: Any, memory_limit: int, cache_dir: str | None
) -> PreparedInputs:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes <= memory_limit:
        return PreparedInputs(np.empty(shape, dtype=dtype))
    tmpdir = tempfile.mkdtemp(prefix="dlc-prepared-", dir=cache_dir)
    arr = np.lib.format.open_memmap(
        os.path.join(tmpdir, "inputs.npy"), mode="w+", dtype=dtype, shape=shape
    )
    return PreparedInputs(arr, tmpdir)


def prepare_inputs(
    dataset: Any,
    *,
    input_kind: str,
    image_size: int,
    crop_pct: float = 0.875,
    interpolation: str = "bicubic",
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    cache_dir: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    start: int = 0,
    stop: int | None = None,
) -> PreparedInputs:
    """Read ``dataset`` once (one streaming pass) into a prepared array.

    ``start``/``stop``: only samples ``start..stop-1`` (a shard); row ``r`` of the result is
    sample ``start + r``. ``progress(done, total)`` is called after every sample block so callers
    can report and cancel.
    """
    stop = len(dataset) if stop is None else min(stop, len(dataset))
    n = stop - start
    if dataset.kind in ("text", "instruction"):
        raise ParameterError(f"{dataset.kind} data needs a language model, not an image backbone")
    if input_kind == "image" and dataset.kind != "image":
        raise ParameterError(
            f"the backbone takes images, but the dataset holds {dataset.kind}s "
            "(use a TorchScript model with input_kind='vector')"
        )
    if input_kind == "vector" and dataset.kind != "vector":
        raise ParameterError(f"the backbone takes vectors, but the dataset holds {dataset.kind}s")
    if input_kind == "image":
        if not isinstance(image_size, int) or not 8 <= image_size <= 1024:
            raise ParameterError(
                f"image_size must be a whole number in [8, 1024], got {image_size!r}"
            )
        out = _allocate((n, 3, image_size, image_size), np.uint8, memory_limit, cache_dir)
    else:
        out = None
    dim: int | None = None
    try:
        done = 0
        payloads = (
            dataset.iter_payloads()
            if (start, stop) == (0, len(dataset))
            else (dataset.iter_range(start, stop))
        )
        for i, payload in payloads:
            r = i - start
            if input_kind == "image":
                assert out is not None
                out.array[r] = resize_crop(payload, image_size, crop_pct, interpolation)
            else:
                vec = np.asarray(payload, dtype=np.float32).reshape(-1)
                if out is None:
                    dim = vec.shape[0]
                    out = _allocate((n, dim), np.float32, memory_limit, cache_dir)
                if vec.shape[0] != dim:
                    raise DatasetError(
                        f"sample {i} has {vec.shape[0]} features, expected {dim}",
                        path=str(dataset.path),
                    )
                out.array[r] = vec
            done += 1
            if progress is not None and (done % 64 == 0 or done == n):
                progress(done, n)
        if done != n:
            raise DatasetError(
                f"the reader yielded {done} samples, expected {n}", path=dataset.path
            )
    except BaseException:
        if out is not None:
            out.close()
        raise
    if out is None:
        raise DatasetError("the dataset has no samples", path=str(dataset.path))
    return out
