"""A paper-like protocol on a GPU: full fine-tuning of EfficientNet-Lite0 at 224 px on pruned
subsets, DLC + FlexRand against class-stratified random, paired seeds.

    python bench/paper.py --device cuda                        # digits, about 3 minutes on an H200
    python bench/paper.py --device cpu --seeds 1 --steps 2 --ratios 0.1 --image-size 64  # smoke

Where ``bench/quality.py`` trains only the backbone's last layer on frozen activations (what fits
on 2 CPU cores), this trains the whole network, as the paper does: DLC scores on the training
split at 224 px (50 geometric levels, the authors' path), then for each keep ratio and seed s a
fresh copy of the pre-trained model with a new 10-class head (seeded by 1000 + s) is trained on
the subset selected with seed s for ``--steps`` steps of ``--batch`` images whatever the subset's
size (a small subset is cycled), AdamW (1e-3, weight decay 1e-4), warm-up then cosine decay,
bf16 autocast on CUDA, no augmentation; test accuracy on the held-out split. The same subsets also
train the evaluations' frozen-feature probe (logistic regression on the unmasked features), and
the Spearman correlation of the two protocols' cell means is reported.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench.quality_data import digits  # noqa: E402
from bench.quality_stats import interval, paired, probe_accuracy, spearman  # noqa: E402
from dlcprune.core.formats import open_dataset  # noqa: E402
from dlcprune.core.params import DLCParams  # noqa: E402
from dlcprune.core.selection import select  # noqa: E402
from worker.scoring.backbones import load_backbone  # noqa: E402
from worker.scoring.dlc import score  # noqa: E402
from worker.scoring.passes import prepare  # noqa: E402

ROWS = [("Stratified random", "stratified"), ("DLC + FlexRand 0.5", "flexrand")]


@torch.inference_mode()
def tensors(bb, path: Path, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """The engine's preprocessed inputs (N, 3, size, size) on the device, and the unmasked
    pooled features (N, D) for the probe."""
    params = DLCParams(image_size=size).resolved("image")
    with open_dataset(path) as ds:
        inputs = prepare(ds, bb, params, 2**33, None, lambda *a: None)
        n = len(ds)
    xs = [inputs.gather(np.arange(lo, min(n, lo + 256)), bb.device) for lo in range(0, n, 256)]
    inputs.close()
    x = torch.cat(xs).float()
    feats = torch.cat([bb.features(x[lo : lo + 256]).float() for lo in range(0, n, 256)])
    return x, feats.cpu().numpy()


def finetune(
    model0: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    subset: np.ndarray,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    seed: int,
    steps: int,
    batch: int,
) -> float:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = copy.deepcopy(model0)
    model.reset_classifier(int(test_y.max()) + 1)
    model = model.to(x.device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    cuda = x.device.type == "cuda"
    order, pos = rng.permutation(subset), 0
    warm = max(1, steps // 10)
    for step in range(steps):
        scale = (
            (step + 1) / warm
            if step < warm
            else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))
        )
        for g in opt.param_groups:
            g["lr"] = 1e-3 * scale
        take: list[int] = []
        while len(take) < min(batch, max(2, len(subset))):
            if pos == len(order):
                order, pos = rng.permutation(subset), 0
            chunk = order[pos : pos + batch - len(take)]
            take += chunk.tolist()
            pos += len(chunk)
        idx = torch.tensor(take, device=x.device)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with (
        torch.inference_mode(),
        torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cuda),
    ):
        preds = torch.cat(
            [model(test_x[lo : lo + 256]).argmax(1) for lo in range(0, len(test_x), 256)]
        )
    return float((preds == test_y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--ratios", default="0.1,0.3,0.5")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--levels", type=int, default=50)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    ratios = [float(r) for r in args.ratios.split(",")]
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    started = time.time()
    bb = load_backbone("efficientnet_lite0", device=args.device)
    with tempfile.TemporaryDirectory(prefix="dlc-paper-") as tmp:
        data = digits(Path(tmp), 0.0)
        t0 = time.perf_counter()
        with open_dataset(data.train) as ds:
            params = DLCParams(
                image_size=args.image_size, levels=args.levels, schedule="geometric", batch_size=256
            )
            dlc = score(ds, bb, params).scores
        score_s = time.perf_counter() - t0
        print(f"DLC at {args.image_size} px, {args.levels} levels: {score_s:.1f} s", flush=True)
        x, f = tensors(bb, data.train, args.image_size)
        test_x, test_f = tensors(bb, data.test, args.image_size)
    x, test_x = (t.contiguous(memory_format=torch.channels_last) for t in (x, test_x))
    y = torch.from_numpy(data.labels).to(x.device)
    test_y = torch.from_numpy(data.test_labels).to(x.device)
    res: dict[str, dict[float, list[float]]] = {m: {} for m, _ in ROWS}
    proxy: dict[str, dict[float, list[float]]] = {m: {} for m, _ in ROWS}
    fit_s = []
    for ratio in ratios:
        for label, strategy in ROWS:
            res[label][ratio], proxy[label][ratio] = [], []
            for seed in range(args.seeds):
                sel = select(dlc, data.labels, keep=ratio, strategy=strategy, split=0.5, seed=seed)
                t0 = time.perf_counter()
                acc = finetune(
                    bb.model, x, y, sel.indices, test_x, test_y, 1000 + seed, args.steps, args.batch
                )
                fit_s.append(time.perf_counter() - t0)
                res[label][ratio].append(acc)
                proxy[label][ratio].append(
                    probe_accuracy(
                        f, data.labels, test_f, data.test_labels, sel.indices, 1000 + seed
                    )
                )
            print(f"  {ratio:.0%} {label:24} {np.mean(res[label][ratio]):.4f}", flush=True)
    lines = [
        f"Full fine-tuning of EfficientNet-Lite0 at {args.image_size} px on digits "
        f"({len(data.labels)} training, {len(data.test_labels)} test images), {args.steps} steps "
        f"of {args.batch}, {args.seeds} paired seeds; {platform.machine()}, "
        + (torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU")
        + f", torch {torch.__version__}; DLC scoring {score_s:.1f} s, one fine-tuning "
        f"{np.median(fit_s):.1f} s (median); {(time.time() - started) / 60:.1f} minutes.",
        "",
        "| keep | stratified random | DLC + FlexRand 0.5 | difference (paired) |",
        "| --- | --- | --- | --- |",
    ]
    a, b = ROWS[0][0], ROWS[1][0]
    for r in ratios:
        ci = lambda v: "{:.1f} [{:.1f}, {:.1f}]".format(*(100 * t for t in v))  # noqa: E731
        lines.append(
            f"| {r:.0%} | {ci(interval(res[a][r]))} | {ci(interval(res[b][r]))} | "
            f"{ci(paired(res[b][r], res[a][r]))} |"
        )
    cells = [(m, r) for m in res for r in ratios]
    rho = spearman([np.mean(res[m][r]) for m, r in cells], [np.mean(proxy[m][r]) for m, r in cells])
    lines += [
        "",
        f"Proxy (probe) against full fine-tuning over the {len(cells)} cells: Spearman {rho:.2f}.",
    ]
    print("\n".join(lines))
    if args.json:
        out = {
            "args": vars(args),
            "results": res,
            "proxy": proxy,
            "markdown": lines,
            "score_seconds": score_s,
            "fit_seconds": fit_s,
        }
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
