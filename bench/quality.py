"""Does the pruned subset train as well as the paper claims? DLC against class-stratified random.

    python bench/quality.py                      # digits, glyphs (20% labels flipped), icons, text
    python bench/quality.py --device cuda --datasets digits,glyphs-noisy,icons
    python bench/quality.py --quick              # CI: digits, 3 ratios, 2 seeds, a few minutes

For each dataset (a held-out test split is never used for scoring or selection):

1. every score is computed on the training split, timed (wall seconds, same run): DLC on the
   reference path (the authors' code: 50 geometric levels) and its variants (image sets), and
   the baselines, through the same engine functions the service's jobs call (``worker.scoring``);
2. for keep ratios 10% and 30% (``--ratios``) and 10 paired seeds (seed s selects with s and trains
   with 1000 + s in every row), each row's subset is fine-tuned with one fixed protocol and its
   test accuracy measured, and the evaluations' probe (logistic regression on the frozen
   features) is trained on the same subset: the control is class-stratified random; FlexRand
   runs at split 0.3, 0.45, 0.5, 0.55 and 0.7, each reported (none picked on the test split);
3. a report goes to ``docs/quality.md`` (bench/quality_report.py) with plots in ``docs/img/``:
   accuracy with 95% intervals, paired differences from the control with 95% intervals, the
   proxy's rank agreement (Spearman), the label-issue AUROC where labels were flipped, scoring
   times, and the defaults decision.

The fine-tuning protocol (the same for every method and ratio): the pre-trained backbone's last
layer plus a new linear head are trained; everything before it is frozen and its output computed
once per sample (images: EfficientNet-Lite0's last convolution, conv_head 320 -> 1280, with its
BatchNorm; text: MiniLM stays frozen and a residual MLP block the size of a transformer
feed-forward layer is trained on its sentence features). ``--steps`` optimisation steps
(default 100) of ``--batch`` samples (64) whatever the subset's size, so small subsets are not
starved: a subset is cycled through as often as the steps need. AdamW (3e-4 for the backbone
layer, 1e-2 for the head), warm-up then cosine decay, weight decay 1e-4, no augmentation.
Images at 32 px (``--image-size``) by default. Training the whole backbone for each run does not
fit on 2 CPU cores; bench/paper.py does that on a GPU (224 px).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench.quality_data import Data, digits, glyphs, icons, pack, text, unpack  # noqa: E402
from bench.quality_report import merge, write_report  # noqa: E402
from bench.quality_stats import auroc, probe_accuracy, self_confidence  # noqa: E402
from dlcprune.core.formats import open_dataset  # noqa: E402
from dlcprune.core.params import DLCParams  # noqa: E402
from dlcprune.core.selection import select  # noqa: E402
from worker.scoring.backbones import Backbone, load_backbone  # noqa: E402
from worker.scoring.baselines import (  # noqa: E402
    TRAINING_BASED,
    BaselineParams,
    score_baseline,
    training_signals,
)
from worker.scoring.dlc import class_targets, score  # noqa: E402
from worker.scoring.passes import prepare  # noqa: E402

RATIOS = [0.1, 0.3]
SEEDS = 10
PROXY_SEEDS = 2  # the probe runs on the first seeds only (its cell means give the ranking)
CONTROL = "Stratified random (control)"
SPLITS = [0.3, 0.45, 0.5, 0.55, 0.7]

# (label, score name, selection strategy, FlexRand split): each score with the selection its
# paper uses. The headline rows run by default; --methods all adds the rest.
# In the order they run, so that a run cut short keeps the rows that decide the most.
HEADLINE: list[tuple[str, str, str, float]] = [
    (CONTROL, "random", "stratified", 0.5),
    *[(f"DLC + FlexRand {s}", "dlc", "flexrand", s) for s in (0.5, 0.3, 0.7)],
    # (here the path variants, on the image sets)
    *[(f"DLC + FlexRand {s}", "dlc", "flexrand", s) for s in (0.45, 0.55)],
    ("Random (global)", "random", "random", 0.5),
    ("Herding", "herding", "easy", 0.5),
    ("k-Center greedy", "kcenter_greedy", "easy", 0.5),
]
OTHERS: list[tuple[str, str, str, float]] = [
    ("EL2N", "el2n", "hard", 0.5),
    ("DLC + top-K easy", "dlc", "easy", 0.5),
    ("Moderate-DS", "moderate", "easy", 0.5),
    ("DLC + top-K hard", "dlc", "hard", 0.5),
    ("DLC + CCS", "dlc", "ccs", 0.5),
    ("EL2N + CCS", "el2n", "ccs", 0.5),
    ("GraNd", "grand", "hard", 0.5),
    ("Forgetting", "forgetting", "hard", 0.5),
    ("Entropy", "entropy", "hard", 0.5),
    ("Margin", "margin", "hard", 0.5),
    ("Least confidence", "least_confidence", "hard", 0.5),
]
# The reference path (the authors' code, the paper's defaults) and the variants studied against
# it, each with FlexRand at split 0.5.
REFERENCE = "DLC + FlexRand 0.5"
# The headline study: the previous default (linear, 10 levels); --methods all adds the others.
VARIANTS = {
    "linear, 10 levels": {"schedule": "linear", "levels": 10},
    "linear, 49 levels (paper's text)": {"schedule": "linear", "levels": 49},
    "geometric, 10 levels": {"schedule": "geometric", "levels": 10},
}
# The rows of a default (headline) run: the close contenders, whose cells the probe's agreement
# is also reported over.
HEADLINE_ROWS = {r[0] for r in HEADLINE} | {f"DLC {next(iter(VARIANTS))}"}


# Fine-tuning protocol --------------------------------------------------------------------------


class ImageTail(nn.Module):
    """EfficientNet-Lite0's last convolution (conv_head, 320 -> 1280 channels) and its BatchNorm
    (trainable), pooling, a linear head."""

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.conv_head = copy.deepcopy(model.conv_head)
        self.bn2 = copy.deepcopy(model.bn2)
        self.head = nn.Linear(model.num_features, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.bn2(self.conv_head(h))
        return self.head(h.mean(dim=(2, 3)))


class TextTail(nn.Module):
    """On MiniLM's frozen mean-pooled sentence features: a trainable residual MLP layer (the
    size of one transformer feed-forward block) and a linear head."""

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        width = model.config.hidden_size
        self.block = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(z + self.block(z)))


class Protocol:
    """Frozen activations computed once; a tail trained per subset."""

    def __init__(self, data: Data, bb: Backbone, steps: int, batch: int, image_size: int):
        self.steps, self.batch = steps, batch
        self.kind = data.kind
        self.bb = bb
        self.device = bb.device
        self.num_classes = int(max(data.labels.max(), data.test_labels.max()) + 1)
        self.train_x, self.train_f = self._activations(data.train, image_size)
        self.test_x, self.test_f = self._activations(data.test, image_size)
        self.labels = torch.from_numpy(data.labels).to(self.device)
        self.test_labels = torch.from_numpy(data.test_labels).to(self.device)

    @torch.inference_mode()
    def _activations(self, path: Path, image_size: int) -> tuple[Any, np.ndarray]:
        """The frozen part's output (the tail's input) and the unmasked backbone's pooled
        features (N, D) float32 (the probe's input, as a scoring job keeps them)."""
        params = DLCParams(image_size=image_size, max_length=64).resolved(self.kind)
        with open_dataset(path) as ds:
            inputs = prepare(ds, self.bb, params, 2**31, None, lambda *a: None)
            n = len(ds)
        m = self.bb.model
        outs, feats = [], []
        for lo in range(0, n, 128):
            idx = np.arange(lo, min(n, lo + 128))
            x = inputs.gather(idx, self.bb.device)
            f = self.bb.features(x).float()
            feats.append(f.cpu().numpy())
            if self.kind == "image":
                h = m.blocks(m.bn1(m.conv_stem(x)))
                outs.append(h.contiguous().float())
            else:
                outs.append(f)
        inputs.close()
        return torch.cat(outs), np.concatenate(feats)

    def fit(self, subset: np.ndarray, seed: int) -> float:
        """Train a fresh tail on ``subset`` (training indices); returns test accuracy."""
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        tail = (ImageTail if self.kind == "image" else TextTail)(self.bb.model, self.num_classes)
        tail = tail.to(self.device)
        head = list(tail.head.parameters())
        rest = [p for n, p in tail.named_parameters() if not n.startswith("head.")]
        opt = torch.optim.AdamW(
            [{"params": rest, "lr": 3e-4}, {"params": head, "lr": 1e-2}], weight_decay=1e-4
        )
        base = [g["lr"] for g in opt.param_groups]
        order, pos = rng.permutation(subset), 0
        tail.train()
        for step in range(self.steps):
            warm = max(1, self.steps // 10)
            scale = (
                (step + 1) / warm
                if step < warm
                else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, self.steps - warm)))
            )
            for g, lr in zip(opt.param_groups, base, strict=True):
                g["lr"] = lr * scale
            take: list[int] = []
            while len(take) < min(self.batch, max(2, len(subset))):
                if pos == len(order):
                    order, pos = rng.permutation(subset), 0
                chunk = order[pos : pos + self.batch - len(take)]
                take += chunk.tolist()
                pos += len(chunk)
            idx = torch.tensor(take, device=self.device)
            loss = nn.functional.cross_entropy(tail(self.train_x[idx]), self.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        tail.eval()
        with torch.inference_mode():
            n = len(self.test_labels)
            preds = torch.cat(
                [tail(self.test_x[lo : min(n, lo + 256)]).argmax(1) for lo in range(0, n, 256)]
            )
        return float((preds == self.test_labels).float().mean())


# Scores ----------------------------------------------------------------------------------------


@dataclass
class Scored:
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def compute_scores(
    data: Data, bb: Backbone, args: argparse.Namespace, needed: set[str], variants: bool
) -> Scored:
    """Every score a row of ``needed`` uses, on the training split, timed; the DLC variants too
    when ``variants``."""
    out = Scored()
    kw = {"image_size": args.image_size} if data.kind == "image" else {"max_length": 64}
    studied = [(n, VARIANTS[n.removeprefix("dlc:")]) for n in sorted(needed) if ":" in n]
    studied = studied if variants else []
    with open_dataset(data.train) as ds:
        reference = [("dlc", {})] if "dlc" in needed or not studied else []
        for name, variant in [*reference, *studied]:
            t0 = time.perf_counter()
            main = {"levels": args.levels, "schedule": "geometric"}  # the reference path
            r = score(ds, bb, DLCParams(batch_size=64, **kw, **(main | variant)))
            out.scores[name] = r.scores
            out.seconds[name] = time.perf_counter() - t0
            print(f"  scored {name:48} {out.seconds[name]:7.1f} s", flush=True)
        base = BaselineParams(seeds=args.train_seeds, epochs=args.epochs, **kw)
        for method in ("random", "herding", "kcenter_greedy", "moderate"):
            if method not in needed:
                continue
            t0 = time.perf_counter()
            out.scores[method], _ = score_baseline(ds, bb, method, base)
            out.seconds[method] = time.perf_counter() - t0
            print(f"  scored {method:48} {out.seconds[method]:7.1f} s", flush=True)
        if not needed & set(TRAINING_BASED):
            return out
        # The training-based scores share one fine-tuning run per seed (as a user scoring all
        # of them would); each is charged the whole run, which is what it costs alone.
        t0 = time.perf_counter()
        params = DLCParams(**kw).resolved(ds.kind)
        inputs = prepare(ds, bb, params, 2**31, None, lambda *a: None)
        targets = class_targets(ds.labels, list(ds.classes))
        signals = training_signals(inputs, bb, targets, len(ds.classes), base)
        inputs.close()
        seconds = time.perf_counter() - t0
        for method in TRAINING_BASED:
            out.scores[method] = signals[method].astype(np.float32)
            out.seconds[method] = seconds
        print(f"  scored {'training-based (shared fine-tuning)':48} {seconds:7.1f} s", flush=True)
    return out


# Evaluation ------------------------------------------------------------------------------------

Results = dict[str, dict[float, list[float]]]


def evaluate(
    data: Data,
    proto: Protocol,
    scored: Scored,
    rows: list[tuple[str, str, str, float]],
    ratios: list[float],
    seeds: int,
    jobs: int = 1,
    proxy_seeds: int = PROXY_SEEDS,
    checkpoint: Callable[[Results, Results], None] | None = None,
) -> tuple[Results, Results]:
    """Per row, ratio and seed: the fine-tuning protocol's test accuracy and the frozen-feature
    probe's (the evaluations' proxy) on the same subset. Seed s selects with seed s and trains
    with seed 1000 + s for every row (paired seeds)."""
    from joblib import Parallel, delayed

    results: Results = {}
    proxy: Results = {}
    for label, score_name, strategy, split in rows:
        results[label], proxy[label] = {}, {}
        t0 = time.perf_counter()
        probes = []  # the probe fits of this row, run in parallel after the protocol's
        for ratio in ratios:
            accs = []
            for seed in range(seeds):
                sel = select(
                    scored.scores[score_name],
                    data.labels,
                    keep=ratio,
                    strategy=strategy,
                    split=split,
                    seed=seed,
                )
                accs.append(proto.fit(sel.indices, seed=1000 + seed))
                if seed < proxy_seeds:
                    probes.append((ratio, sel.indices, 1000 + seed))
            results[label][ratio] = accs
        t1 = time.perf_counter()
        found = Parallel(n_jobs=jobs)(
            delayed(probe_accuracy)(
                proto.train_f, data.labels, proto.test_f, data.test_labels, idx, seed=seed
            )
            for _, idx, seed in probes
        )
        for (ratio, _, _), acc in zip(probes, found, strict=True):
            proxy[label].setdefault(ratio, []).append(acc)
        mean = np.mean([np.mean(v) for v in results[label].values()])
        print(
            f"  {label:44} average accuracy {mean:.4f} ({len(ratios) * seeds} fits "
            f"{t1 - t0:.1f} s, {len(probes)} probes {time.perf_counter() - t1:.1f} s)",
            flush=True,
        )
        if checkpoint:
            checkpoint(results, proxy)
    return results, proxy


def label_issues(data: Data, proto: Protocol, scored: Scored) -> dict[str, float]:
    """AUROC for the flipped training labels: the label-issue score (1 - cross-validated
    self-confidence of the given label on the unmasked features) and DLC (high = hard)."""
    flipped = data.labels != data.clean
    if not flipped.any():
        return {}
    conf = self_confidence(proto.train_f, data.labels)
    return {
        "flipped": int(flipped.sum()),
        "label_issue_auroc": auroc(1.0 - conf, flipped),
        "dlc_auroc": auroc(scored.scores["dlc"], flipped),
    }


def load(name: str, root: Path, device: str, packs: str | None) -> tuple[Data, Backbone]:
    """A dataset by name, built here or, with ``packs``, read from ``packs/<name>.npz``."""
    if packs and (Path(packs) / f"{name}.npz").exists():
        data = unpack(Path(packs) / f"{name}.npz", root)
        model = "efficientnet_lite0" if data.kind == "image" else "all-minilm-l6-v2"
        return data, load_backbone(model, device=device)
    image = {
        "digits": lambda: digits(root, 0.0),
        "digits-noisy": lambda: digits(root, 0.2),
        "glyphs": lambda: glyphs(root, 0.0),
        "glyphs-noisy": lambda: glyphs(root, 0.2),
        "icons": lambda: icons(root, 0.0),
    }
    if name in image:
        return image[name](), load_backbone("efficientnet_lite0", device=device)
    if name == "text":
        return text(root), load_backbone("all-minilm-l6-v2", device=device)
    sys.exit(f"unknown dataset {name!r} (one of {', '.join([*image, 'text'])})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="digits,glyphs-noisy,icons,text")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--ratios", default=",".join(str(r) for r in RATIOS))
    parser.add_argument("--methods", choices=["headline", "all"], default="headline")
    parser.add_argument("--no-variants", action="store_true", help="skip the DLC path study")
    parser.add_argument("--proxy-seeds", type=int, default=PROXY_SEEDS)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--levels", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=3, help="training-based scores")
    parser.add_argument("--train-seeds", type=int, default=2, help="training-based scores")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--packs", default=None, help="folder of prebuilt image sets")
    parser.add_argument(
        "--pack", default=None, help="build the --datasets into this folder and stop"
    )
    parser.add_argument(
        "--shard", default="0/1", help="i/k: run every k-th row from the i-th (--merge joins)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="processes for the probe fits")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "docs" / "quality.md"))
    parser.add_argument(
        "--json", default=None, help="also write raw results here (after every dataset)"
    )
    parser.add_argument(
        "--merge",
        default=None,
        help="comma-separated --json files of earlier runs: write one report of them, run nothing",
    )
    args = parser.parse_args()
    if args.merge:
        merge(args.merge.split(","), Path(args.out), HEADLINE_ROWS)
        return
    if args.quick:
        args.datasets, args.seeds, args.ratios = "digits", 2, "0.1,0.5,0.9"
        args.steps, args.levels, args.epochs, args.train_seeds = 60, 5, 1, 1
        args.no_variants = True
    if args.pack:
        Path(args.pack).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.datasets.split(","):
                data, _ = load(name, Path(tmp), "cpu", None)
                pack(data, Path(args.pack) / f"{name}.npz")
        return
    ratios = [float(r) for r in args.ratios.split(",")]
    rows = HEADLINE + (OTHERS if args.methods == "all" else [])
    studied_variants = list(VARIANTS)[: None if args.methods == "all" else 1]
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    started = time.time()
    report: dict[str, Any] = {"args": vars(args), "datasets": {}, "machine": machine(args)}
    with tempfile.TemporaryDirectory(prefix="dlc-quality-") as tmp:
        for name in args.datasets.split(","):
            t_set = time.time()
            data, bb = load(name, Path(tmp), args.device, args.packs)
            print(f"{data.name}: {data.notes}", flush=True)
            variants = not args.no_variants and data.kind == "image"
            study = (
                [(f"DLC {k}", f"dlc:{k}", "flexrand", 0.5) for k in studied_variants]
                if variants
                else []
            )
            i, k = (int(v) for v in args.shard.split("/"))
            mine = (rows[:4] + study + rows[4:])[i::k]
            needed = {r[1] for r in mine}
            studied = variants and any(":" in n for n in needed)
            scored = compute_scores(data, bb, args, needed, studied)
            proto = Protocol(data, bb, args.steps, args.batch, args.image_size)
            entry: dict[str, Any] = {
                "title": data.name,
                "notes": data.notes,
                "variants": [r[0] for r in study],
                "seconds": scored.seconds,
                "label_issues": label_issues(data, proto, scored) if "dlc" in needed else {},
            }

            def checkpoint(
                res: Results, prox: Results, entry: dict = entry, name: str = name, t: float = t_set
            ) -> None:
                report["datasets"][name] = entry | {"results": res, "proxy": prox}
                report["datasets"][name]["minutes"] = (time.time() - t) / 60
                report["minutes"] = (time.time() - started) / 60
                if args.json:  # a run cut short keeps the rows it finished
                    Path(args.json).write_text(json.dumps(report, indent=1, default=float))

            results, proxy = evaluate(
                data,
                proto,
                scored,
                mine,
                ratios,
                args.seeds,
                args.jobs,
                args.proxy_seeds,
                checkpoint,
            )
            checkpoint(results, proxy)
    report["minutes"] = (time.time() - started) / 60
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    if args.shard != "0/1":
        print(f"shard {args.shard} done ({report['minutes']:.1f} min); --merge writes the report")
        return
    write_report(report, ratios, out, args, HEADLINE_ROWS)
    print(f"wrote {out} ({report['minutes']:.1f} min)")


def machine(args: argparse.Namespace) -> str:
    where = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    if args.device.startswith("cuda"):
        where += f", {torch.cuda.get_device_name()}"
    return where


if __name__ == "__main__":
    main()
