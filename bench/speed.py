"""DLC scoring speed: the engine against the straightforward procedure, on the same data.

    python bench/speed.py                      # all sections, about 15 minutes on 2 CPU cores
    python bench/speed.py --quick              # smaller data, a few minutes
    python bench/speed.py --device cuda        # on a GPU machine

The reference (implemented here only) is what the DLC authors' code does: a DataLoader that
decodes and resizes every image again at every level, and
``torch.nn.utils.prune.global_unstructured(..., L1Unstructured, amount=0.02)`` applied once per
level over the Conv2d weights. The engine runs the same data, model and mask path in the same
process. For each dataset the script prints throughput (sample-levels per second) of both, their
ratio, the engine's distance from the floor ((levels + 1) x the plain inference time of the same
backbone on the same prepared tensors), peak memory (RSS) of each, and checks that both give the
same scores (relative difference at most 1e-4, Spearman at least 0.9999). A last section runs the
engine with ``early_stop`` on the 50-level geometric path against the reference's full path.

Data are generated, seeded: small JPEG and PNG files in class folders, the same images as .npz
arrays, and 224 px JPEG files.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.nn.utils import prune  # noqa: E402

from dlcprune.core.formats import open_dataset  # noqa: E402
from dlcprune.core.params import DLCParams  # noqa: E402
from worker.scoring.backbones import Backbone, load_backbone  # noqa: E402
from worker.scoring.dlc import rank_correlation, score  # noqa: E402
from worker.scoring.preprocess import prepare_inputs  # noqa: E402

# Data ------------------------------------------------------------------------------------------


def synthetic_images(n: int, size: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size, 3) uint8 images and (n,) labels: class-specific blobs and stripes on
    noise, so that a pre-trained network sees real structure and classes differ."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    labels = rng.integers(0, classes, n)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        angle = np.pi * c / classes
        stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (4 + c) * np.pi)
        cx, cy = rng.uniform(0.25, 0.75, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) * 20)
        base = np.stack([stripes, blob, stripes * blob], axis=-1) * 90 + 128
        noise = rng.normal(0, 25, (size, size, 3))
        images[i] = np.clip(base + noise, 0, 255).astype(np.uint8)
    return images, labels


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, fmt: str) -> Path:
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        folder = root / f"class{lab:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:06d}.{fmt}", quality=90)
    return root


# Memory ----------------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples the process's resident memory every 20 ms while the block runs."""

    def __enter__(self) -> PeakRSS:
        self.peak = rss_bytes()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss_bytes())


def timed(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return out, seconds, mem.peak


# The reference -------------------------------------------------------------------------------


class _FileImages(torch.utils.data.Dataset):
    """Decodes, resizes and normalises one image per access, as a plain training loop does."""

    def __init__(self, items: list[tuple[Any, int]], transform: Callable[[Image.Image], Any]):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        source, label = self.items[i]
        image = Image.open(source) if isinstance(source, (str, Path)) else Image.fromarray(source)
        return self.transform(image.convert("RGB")), label


def reference_scores(
    data: Path, bb: Backbone, levels: int, image_size: int, batch_size: int
) -> np.ndarray:
    """DLC the straightforward way: re-decode every level, prune with torch.nn.utils.prune."""
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.Resize(
                int(image_size / bb.crop_pct), interpolation=transforms.InterpolationMode.BICUBIC
            ),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(bb.mean, bb.std),
        ]
    )
    with open_dataset(data) as ds:
        classes = list(ds.classes)
        labels = [classes.index(lab) for lab in ds.labels]
        if ds.format == "npz":
            items = [(ds.read_rows(i, i + 1)[0], labels[i]) for i in range(len(ds))]
        else:
            items = [(str(data / sid), labels[i]) for i, sid in enumerate(ds.ids)]
    loader = torch.utils.data.DataLoader(
        _FileImages(items, transform), batch_size=batch_size, shuffle=False, num_workers=0
    )
    model = bb.model
    device = bb.device
    params = [(m, "weight") for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    y_all = torch.tensor(labels)

    def features() -> torch.Tensor:
        out = []
        with torch.no_grad():
            for x, _ in loader:
                out.append(bb.feature_fn(x.to(device)).float().cpu())
        return torch.cat(out)

    def losses(z: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
        logits = 1.0 / torch.cdist(z.double(), protos.double())
        return torch.nn.functional.cross_entropy(logits, y_all, reduction="none")

    z0 = features()
    protos = torch.stack([z0[y_all == k].mean(0) for k in range(len(classes))])
    rows = [losses(z0, protos)]
    for _ in range(levels):
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.02)
        rows.append(losses(features(), protos))
    for module, name in params:
        prune.remove(module, name)
    return torch.stack(rows).mean(0).float().numpy()


# The floor -------------------------------------------------------------------------------------


def plain_inference_seconds(data: Path, bb: Backbone, image_size: int, batch_size: int) -> float:
    """One forward pass of the backbone over already prepared tensors: no masks, no loss."""
    with open_dataset(data) as ds:
        prepared = prepare_inputs(
            ds,
            input_kind="image",
            image_size=image_size,
            crop_pct=bb.crop_pct,
            interpolation=bb.interpolation,
        )
    arr = prepared.array
    mean = torch.tensor(bb.mean).view(1, -1, 1, 1) * 255
    std = torch.tensor(bb.std).view(1, -1, 1, 1) * 255
    fmt = torch.channels_last if bb.channels_last else torch.contiguous_format
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        with torch.inference_mode():
            for lo in range(0, len(arr), batch_size):
                x = torch.from_numpy(arr[lo : lo + batch_size]).to(bb.device).float()
                x = ((x - mean.to(x.device)) / std.to(x.device)).contiguous(memory_format=fmt)
                bb.feature_fn(x)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    prepared.close()
    return best


# Sections --------------------------------------------------------------------------------------


def compare(name: str, data: Path, n: int, args: argparse.Namespace, size: int) -> dict:
    levels = args.levels
    bb_ref = load_backbone("efficientnet_lite0", device=args.device)
    bb_ref.channels_last = False
    bb_ref.to(args.device)
    ref, ref_s, ref_peak = timed(
        lambda: reference_scores(data, bb_ref, levels, size, args.batch_size)
    )
    bb = load_backbone("efficientnet_lite0", device=args.device)
    with open_dataset(data) as ds:
        eng, eng_s, eng_peak = timed(
            lambda: (
                score(
                    ds,
                    bb,
                    DLCParams(
                        levels=levels,
                        schedule="geometric",
                        image_size=size,
                        batch_size=args.batch_size,
                        precision="fp32",
                    ),
                ).scores
            )
        )
    floor = plain_inference_seconds(data, bb, size, args.batch_size) * (levels + 1)
    rel = float(np.max(np.abs(eng - ref) / np.maximum(np.abs(ref), 1e-12)))
    rho = rank_correlation(eng, ref)
    work = n * (levels + 1)
    row = {
        "data": name,
        "n": n,
        "levels": levels,
        "ref_s": ref_s,
        "eng_s": eng_s,
        "floor_s": floor,
        "ref_rate": work / ref_s,
        "eng_rate": work / eng_s,
        "speedup": ref_s / eng_s,
        "of_floor": eng_s / floor,
        "ref_peak": ref_peak,
        "eng_peak": eng_peak,
        "max_rel": rel,
        "spearman": rho,
    }
    print(
        f"{name:24} n={n:5d} L={levels:2d} | reference {ref_s:7.1f} s {row['ref_rate']:7.0f}/s "
        f"peak {ref_peak / 2**20:6.0f} MiB | engine {eng_s:7.1f} s {row['eng_rate']:7.0f}/s "
        f"peak {eng_peak / 2**20:6.0f} MiB | speed-up {row['speedup']:4.2f}x | engine/floor "
        f"{row['of_floor']:4.2f} | max rel diff {rel:.1e} | Spearman {rho:.6f}",
        flush=True,
    )
    assert rel <= 1e-4, f"{name}: scores differ by {rel:.2e} (relative)"
    assert rho >= 0.9999, f"{name}: Spearman {rho}"
    return row


def early_stop_section(data: Path, n: int, args: argparse.Namespace, size: int) -> dict:
    levels = 50
    bb_ref = load_backbone("efficientnet_lite0", device=args.device)
    bb_ref.channels_last = False
    bb_ref.to(args.device)
    ref, ref_s, _ = timed(lambda: reference_scores(data, bb_ref, levels, size, args.batch_size))
    bb = load_backbone("efficientnet_lite0", device=args.device)
    with open_dataset(data) as ds:
        result, eng_s, _ = timed(
            lambda: score(
                ds,
                bb,
                DLCParams(
                    levels=levels,
                    schedule="geometric",
                    image_size=size,
                    batch_size=args.batch_size,
                    early_stop=True,
                    precision="fp32",
                ),
            )
        )
    rho = rank_correlation(result.scores, ref)
    used = len(result.levels_used) - 1
    print(
        f"early stop, 50-level geometric path, n={n}: reference full path {ref_s:.1f} s; engine "
        f"with early_stop {eng_s:.1f} s using {used} of 50 levels ({result.levels_used[1:]}); "
        f"speed-up {ref_s / eng_s:.2f}x; Spearman with the reference's full path {rho:.4f}",
        flush=True,
    )
    return {"ref_s": ref_s, "eng_s": eng_s, "levels_used": used, "spearman": rho}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, a few minutes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--levels", type=int, default=10)
    parser.add_argument("--small", type=int, default=2000, help="small JPEG/npz images")
    parser.add_argument("--small-size", type=int, default=48, help="their pixel size")
    parser.add_argument("--image-size", type=int, default=64, help="input size for them")
    parser.add_argument("--large", type=int, default=300, help="224 px JPEG images")
    parser.add_argument("--early", type=int, default=1000, help="images, early-stop section")
    parser.add_argument("--sections", default="small,png,npz,large,early")
    args = parser.parse_args()
    if args.quick:
        args.small, args.large, args.early, args.levels = 400, 60, 300, 5
    torch.manual_seed(0)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""),
        flush=True,
    )
    sections = set(args.sections.split(","))
    with tempfile.TemporaryDirectory(prefix="dlc-speed-") as tmp:
        root = Path(tmp)
        images, labels = synthetic_images(args.small, args.small_size, 10, seed=0)
        if "small" in sections:
            folder = write_folder(root / "small-jpeg", images, labels, "jpg")
            compare(f"{args.small_size}px JPEG folder", folder, args.small, args, args.image_size)
        if "png" in sections:
            folder = write_folder(root / "small-png", images, labels, "png")
            compare(f"{args.small_size}px PNG folder", folder, args.small, args, args.image_size)
        if "npz" in sections:
            np.savez(root / "arrays.npz", x=images, y=labels)
            compare(
                f"{args.small_size}px .npz", root / "arrays.npz", args.small, args, args.image_size
            )
        if "large" in sections:
            big, big_labels = synthetic_images(args.large, 256, 10, seed=1)
            folder = write_folder(root / "large-jpeg", big, big_labels, "jpg")
            compare("256px JPEG folder @224", folder, args.large, args, 224)
        if "early" in sections:
            subset = args.early
            folder = write_folder(root / "early", images[:subset], labels[:subset], "jpg")
            early_stop_section(folder, subset, args, args.image_size)


if __name__ == "__main__":
    main()
