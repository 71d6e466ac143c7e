"""Does the pruned subset train as well as the paper claims? DLC against the baselines.

    python bench/quality.py                      # digits, noisy digits, text (about 45 minutes)
    python bench/quality.py --datasets digits    # one of them
    python bench/quality.py --quick              # CI: digits, 3 ratios, 1 seed, a few minutes

For each dataset (a held-out test split is never used for scoring or selection):

1. every score is computed on the training split, timed (wall seconds, this machine, same run):
   DLC (the service's defaults, and the variants that decide them) and every baseline, through
   the same engine functions the service's jobs call (``worker.scoring``);
2. for keep ratios 10%, 20%, ..., 90%, each method with its usual selection (DLC with FlexRand,
   and with top-K easy and top-K hard; the baselines as their papers select; CCS over DLC and
   over EL2N), a classifier is fine-tuned on the subset with one fixed protocol and its test
   accuracy measured, over 3 seeds;
3. a report goes to ``docs/quality.md`` with plots in ``docs/img/``: accuracy (mean and standard
   deviation) per method and ratio with the average over ratios, each method's gap over random per
   ratio (as the paper's Figure 5), the scoring times relative to DLC, and the defaults study.

The fine-tuning protocol (the same for every method and ratio): the pre-trained backbone's last
layer plus a new linear head are trained; everything before it is frozen and its output computed
once per sample (images: EfficientNet-Lite0's last convolution, conv_head 320 -> 1280, with its
BatchNorm; text: MiniLM stays frozen and a residual MLP block the size of a transformer
feed-forward layer is trained on its sentence features). ``--steps`` optimisation steps
(default 200) of ``--batch`` samples (64) whatever the subset's size, so small subsets are not
starved: a subset is cycled through as often as the steps need. AdamW (3e-4 for the backbone
layer, 1e-2 for the head), warm-up then cosine decay, weight decay 1e-4, no augmentation.
Training the whole backbone for each of the ~1,500 runs does not fit in 30 minutes per dataset on
2 CPU cores (one full fine-tune of EfficientNet-Lite0 on these 1,258 images takes about a
minute here); the last layer does (about 1.5 s per run).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench.quality_data import Data, digits, text  # noqa: E402
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

RATIOS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]

# (label, score name, selection strategy): each score with the selection its paper uses.
METHODS = [
    ("DLC + FlexRand", "dlc", "flexrand"),
    ("DLC + top-K easy", "dlc", "easy"),
    ("DLC + top-K hard", "dlc", "hard"),
    ("DLC + CCS", "dlc", "ccs"),
    ("Random", "random", "random"),
    ("Herding", "herding", "easy"),
    ("k-Center greedy", "kcenter_greedy", "easy"),
    ("Moderate-DS", "moderate", "easy"),
    ("EL2N", "el2n", "hard"),
    ("EL2N + CCS", "el2n", "ccs"),
    ("GraNd", "grand", "hard"),
    ("Forgetting", "forgetting", "hard"),
    ("Entropy", "entropy", "hard"),
    ("Margin", "margin", "hard"),
    ("Least confidence", "least_confidence", "hard"),
]

# The DLC variants that decide the defaults: schedule x levels x masking.
VARIANTS = {
    "geometric, 50 levels, l1 (authors' code)": {"schedule": "geometric", "levels": 50},
    "linear, 49 levels, l1 (paper)": {"schedule": "linear", "levels": 49},
    "geometric, 10 levels, l1": {"schedule": "geometric", "levels": 10},
    "linear, 10 levels, l1": {"schedule": "linear", "levels": 10},
    "geometric, 50 levels, random": {"schedule": "geometric", "levels": 50, "masking": "random"},
    "linear, 49 levels, random": {"schedule": "linear", "levels": 49, "masking": "random"},
}
SPLITS = [0.3, 0.5, 0.7]


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
        self.num_classes = int(max(data.labels.max(), data.test_labels.max()) + 1)
        self.train_x = self._activations(data.train, image_size)
        self.test_x = self._activations(data.test, image_size)
        self.labels = torch.from_numpy(data.labels)
        self.test_labels = torch.from_numpy(data.test_labels)

    @torch.inference_mode()
    def _activations(self, path: Path, image_size: int) -> Any:
        params = DLCParams(image_size=image_size, max_length=64).resolved(self.kind)
        with open_dataset(path) as ds:
            inputs = prepare(ds, self.bb, params, 2**31, None, lambda *a: None)
            n = len(ds)
        m = self.bb.model
        outs = []
        for lo in range(0, n, 128):
            idx = np.arange(lo, min(n, lo + 128))
            x = inputs.gather(idx, self.bb.device)
            if self.kind == "image":
                h = m.blocks(m.bn1(m.conv_stem(x)))
                outs.append(h.contiguous().float())
            else:
                outs.append(self.bb.features(x).float())
        inputs.close()
        return torch.cat(outs)

    def _take(self, acts: Any, idx: torch.Tensor) -> Any:
        return acts[idx]

    def fit(self, subset: np.ndarray, seed: int) -> float:
        """Train a fresh tail on ``subset`` (training indices); returns test accuracy."""
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        tail = (ImageTail if self.kind == "image" else TextTail)(self.bb.model, self.num_classes)
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
            idx = torch.tensor(take)
            loss = nn.functional.cross_entropy(
                tail(self._take(self.train_x, idx)), self.labels[idx]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        tail.eval()
        with torch.inference_mode():
            n = len(self.test_labels)
            preds = torch.cat(
                [
                    tail(self._take(self.test_x, torch.arange(lo, min(n, lo + 256)))).argmax(1)
                    for lo in range(0, n, 256)
                ]
            )
        return float((preds == self.test_labels).float().mean())


# Scores ----------------------------------------------------------------------------------------


@dataclass
class Scored:
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def compute_scores(data: Data, bb: Backbone, args: argparse.Namespace) -> Scored:
    out = Scored()
    kw = {"image_size": args.image_size} if data.kind == "image" else {"max_length": 64}
    with open_dataset(data.train) as ds:
        for name, variant in [("dlc", {})] + [(f"dlc:{k}", v) for k, v in VARIANTS.items()]:
            if name != "dlc" and (args.quick or data.kind != "image"):
                continue  # the defaults study runs on the image datasets

            t0 = time.perf_counter()
            main = {"levels": args.levels, "schedule": "geometric"}  # the reference row
            r = score(ds, bb, DLCParams(batch_size=64, **kw, **(main | variant)))
            out.scores[name] = r.scores
            out.seconds[name] = time.perf_counter() - t0
            print(f"  scored {name:48} {out.seconds[name]:7.1f} s", flush=True)
        base = BaselineParams(seeds=args.train_seeds, epochs=args.epochs, **kw)
        for method in ("random", "herding", "kcenter_greedy", "moderate"):
            t0 = time.perf_counter()
            out.scores[method], _ = score_baseline(ds, bb, method, base)
            out.seconds[method] = time.perf_counter() - t0
            print(f"  scored {method:48} {out.seconds[method]:7.1f} s", flush=True)
        # The six training-based scores share one fine-tuning run per seed (as a user scoring
        # all of them would); each is charged the whole run, which is what it costs alone.
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


def evaluate(
    data: Data,
    proto: Protocol,
    scored: Scored,
    methods: list[tuple[str, str, str, float]],
    ratios: list[float],
    seeds: int,
) -> dict[str, dict[float, list[float]]]:
    results: dict[str, dict[float, list[float]]] = {}
    for label, score_name, strategy, split in methods:
        results[label] = {}
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
            results[label][ratio] = accs
        mean = np.mean([np.mean(v) for v in results[label].values()])
        print(f"  {label:44} average accuracy {mean:.4f}", flush=True)
    return results


# Report ----------------------------------------------------------------------------------------


def table(results: dict[str, dict[float, list[float]]], ratios: list[float]) -> list[str]:
    head = "| method | " + " | ".join(f"{r:.0%}" for r in ratios) + " | average |"
    lines = [head, "|" + " --- |" * (len(ratios) + 2)]
    ranked = sorted(results, key=lambda m: -np.mean([np.mean(v) for v in results[m].values()]))
    for m in ranked:
        cells = [
            f"{100 * np.mean(results[m][r]):.1f} ± {100 * np.std(results[m][r]):.1f}"
            for r in ratios
        ]
        avg = np.mean([np.mean(results[m][r]) for r in ratios])
        lines.append(f"| {m} | " + " | ".join(cells) + f" | **{100 * avg:.2f}** |")
    return lines


def plot_gaps(
    results: dict[str, dict[float, list[float]]], ratios: list[float], title: str, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    rand = np.array([np.mean(results["Random"][r]) for r in ratios])
    for m in results:
        if m == "Random":
            continue
        gap = 100 * (np.array([np.mean(results[m][r]) for r in ratios]) - rand)
        style = {"linewidth": 2.6, "color": "black"} if m == "DLC + FlexRand" else {"alpha": 0.75}
        ax.plot([100 * (1 - r) for r in ratios], gap, marker="o", markersize=3, label=m, **style)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("pruning ratio (% of the training set removed)")
    ax.set_ylabel("accuracy gap over random (points)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="digits,digits-noisy,text")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ratios", default=",".join(str(r) for r in RATIOS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--levels", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=3, help="training-based scores")
    parser.add_argument("--train-seeds", type=int, default=2, help="training-based scores")
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
        merge(args.merge.split(","), Path(args.out))
        return
    if args.quick:
        args.datasets, args.seeds, args.ratios = "digits", 1, "0.1,0.5,0.9"
        args.steps, args.levels, args.epochs, args.train_seeds = 100, 5, 1, 1
    ratios = [float(r) for r in args.ratios.split(",")]
    torch.manual_seed(0)
    torch.set_num_threads(torch.get_num_threads())
    out = Path(args.out)
    img_dir = out.parent / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report: dict[str, Any] = {"args": vars(args), "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="dlc-quality-") as tmp:
        root = Path(tmp)
        for name in args.datasets.split(","):
            t_set = time.time()
            if name == "digits":
                data, bb = digits(root, 0.0), load_backbone("efficientnet_lite0")
            elif name == "digits-noisy":
                data, bb = digits(root, 0.2), load_backbone("efficientnet_lite0")
            elif name == "text":
                data, bb = text(root), load_backbone("all-minilm-l6-v2")
            else:
                sys.exit(f"unknown dataset {name!r}")
            print(f"{data.name}: {data.notes}", flush=True)
            scored = compute_scores(data, bb, args)
            proto = Protocol(data, bb, args.steps, args.batch, args.image_size)
            methods = [(label, s, strat, 0.5) for label, s, strat in METHODS]
            results = evaluate(data, proto, scored, methods, ratios, args.seeds)
            defaults: dict[str, Any] = {}
            if not args.quick and data.kind == "image":
                variants = [(k, f"dlc:{k}", "flexrand", 0.5) for k in VARIANTS]
                splits = [(f"FlexRand split {s}", "dlc", "flexrand", s) for s in SPLITS]
                defaults = evaluate(data, proto, scored, variants + splits, ratios, args.seeds)
            report["datasets"][name] = {
                "title": data.name,
                "notes": data.notes,
                "results": results,
                "defaults": defaults,
                "seconds": scored.seconds,
                "minutes": (time.time() - t_set) / 60,
            }
            plot_gaps(results, ratios, data.name, img_dir / f"quality-{name}.png")
            report["minutes"] = (time.time() - started) / 60
            if args.json:  # a checkpoint: a run cut short keeps the datasets it finished
                Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    report["minutes"] = (time.time() - started) / 60
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    write_report(report, ratios, out, args)
    print(f"wrote {out} ({report['minutes']:.1f} min)")


def merge(paths: list[str], out: Path) -> None:
    """One report from the --json files of several runs (one per dataset, say)."""
    merged: dict[str, Any] = {"datasets": {}, "minutes": 0.0}
    for path in paths:
        run = json.loads(Path(path).read_text())
        merged.setdefault("args", run["args"])
        merged["minutes"] += run["minutes"]
        for name, d in run["datasets"].items():
            for key in ("results", "defaults"):  # JSON made the ratio keys strings
                d[key] = {m: {float(r): v for r, v in rs.items()} for m, rs in d[key].items()}
            merged["datasets"][name] = d
    args = argparse.Namespace(**merged["args"])
    ratios = [float(r) for r in args.ratios.split(",")]
    write_report(merged, ratios, out, args)
    print(f"wrote {out} from {len(paths)} run(s)")


def average(per_ratio: dict[float, list[float]], ratios: list[float]) -> float:
    return float(np.mean([np.mean(per_ratio[r]) for r in ratios]))


def decisions(report: dict[str, Any], ratios: list[float]) -> list[str]:
    """The defaults the service takes from this benchmark: each DLC variant's and split share's
    accuracy averaged over ratios, seeds and every dataset that studied it; then where DLC stands
    against random and against the training-based scores' cost."""
    studied = {n: d for n, d in report["datasets"].items() if d["defaults"]}
    if not studied:
        return []
    names = list(next(iter(studied.values()))["defaults"])
    per = {m: [average(d["defaults"][m], ratios) for d in studied.values()] for m in names}
    avg = {m: float(np.mean(v)) for m, v in per.items()}
    variants = [m for m in names if not m.startswith("FlexRand split")]
    splits = [m for m in names if m.startswith("FlexRand split")]
    best_v, best_s = max(variants, key=avg.get), max(splits, key=avg.get)  # type: ignore[arg-type]
    spread = max(avg[m] for m in variants) - min(avg[m] for m in variants)
    lines = [
        "## What the results decide",
        "",
        "Average accuracy over every ratio and seed (DLC with FlexRand; the variants with split "
        "0.5, the split shares with the authors' 50-level geometric path):",
        "",
        "| variant | "
        + " | ".join(d["title"].split(":")[0] for d in studied.values())
        + " | mean |",
        "|" + " --- |" * (len(studied) + 2),
    ]
    for m in names:
        cells = " | ".join(f"{100 * v:.2f}" for v in per[m])
        lines.append(f"| {m} | {cells} | **{100 * avg[m]:.2f}** |")
    lines += [
        "",
        f"Best variant on average: **{best_v}**; the variants lie within {100 * spread:.2f} "
        f"points of each other. Best split share on average: "
        f"**{best_s.removeprefix('FlexRand split ')}**. These are the service's defaults for "
        "labelled data (`dlcprune/core/params.py` LABELLED_PATH, "
        "`dlcprune/names.py` DEFAULT_SPLIT).",
        "",
    ]
    for d in studied.values():
        rand = average(d["results"]["Random"], ratios)
        chosen = average(d["defaults"][best_v], ratios)
        secs = d["seconds"]
        t_dlc = secs.get(f"dlc:{best_v}", secs["dlc"])
        t_train = secs.get("el2n")
        lines.append(
            f"- {d['title'].split(':')[0]}: the chosen path averages {100 * chosen:.2f} against "
            f"random's {100 * rand:.2f} ({100 * (chosen - rand):+.2f} points); it scores in "
            f"{t_dlc:.1f} s"
            + (
                f", the training-based scores in {t_train:.1f} s ({t_train / t_dlc:.1f}x DLC's "
                f"time; {secs['dlc']:.1f} s for the 50-level path, {t_train / secs['dlc']:.2f}x)."
                if t_train
                else "."
            )
        )
    dlc, rand_all = [], []
    for d in report["datasets"].values():
        dlc.append(average(d["results"]["DLC + FlexRand"], ratios))
        rand_all.append(average(d["results"]["Random"], ratios))
    gap = float(np.mean(dlc) - np.mean(rand_all))
    lines += [
        "",
        f"Over all datasets DLC + FlexRand (the reference row) averages "
        f"{100 * float(np.mean(dlc)):.2f} against random's {100 * float(np.mean(rand_all)):.2f} "
        f"({100 * gap:+.2f} points).",
        "",
    ]
    return lines


def write_report(report: dict[str, Any], ratios: list[float], out: Path, args: Any) -> None:
    lines = [
        "# Selection quality: DLC against the baselines",
        "",
        f"Written by `python bench/quality.py{' --quick' if args.quick else ''}` on "
        f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
        f"({report['minutes']:.0f} minutes). Test accuracy in % (mean ± standard deviation over "
        f"{args.seeds} seed(s)) of a classifier fine-tuned on each subset; columns are the share "
        "of the training set kept.",
        "",
        "Protocol (every method, every ratio): the backbone's last layer (EfficientNet-Lite0's "
        "conv_head with its BatchNorm; for text, a residual MLP block on MiniLM's frozen "
        "sentence features) and a new linear head "
        f"are trained for {args.steps} steps of {args.batch} samples (a small subset is cycled "
        "as often as needed, so it gets the same number of steps), AdamW, warm-up and cosine "
        "decay, no augmentation; the earlier layers are frozen. Images at "
        f"{args.image_size} px. DLC: {args.levels} geometric levels of 2% of the remaining "
        f"weights, L1 masks. Training-based scores: {args.epochs} passes over the training "
        f"split, {args.train_seeds} seed(s), the whole backbone fine-tuned.",
        "",
    ]
    for name, d in report["datasets"].items():
        res = d["results"]
        lines += [f"## {d['title']}", "", d["notes"] + f" ({d['minutes']:.0f} minutes).", ""]
        lines += table(res, ratios)
        lines += ["", f"![gap over random](img/quality-{name}.png)", ""]
        rand = np.mean([np.mean(res["Random"][r]) for r in ratios])
        dlc = np.mean([np.mean(res["DLC + FlexRand"][r]) for r in ratios])
        others = {
            m: np.mean([np.mean(res[m][r]) for r in ratios])
            for m in res
            if not m.startswith("DLC") and m != "Random"
        }
        best = max(others, key=others.get)  # type: ignore[arg-type]
        lines += [
            f"DLC + FlexRand averages **{100 * (dlc - rand):+.2f} points** over random and "
            f"**{100 * (dlc - others[best]):+.2f}** over the best baseline ({best}, "
            f"{100 * others[best]:.2f}).",
            "",
            "Scoring time on the training split (wall seconds, same run):",
            "",
            "| score | seconds | relative to DLC |",
            "| --- | --- | --- |",
        ]
        secs = d["seconds"]
        for m, s in sorted(secs.items(), key=lambda kv: kv[1]):
            if m.startswith("dlc:"):
                continue
            lines.append(f"| {m} | {s:.1f} | {s / secs['dlc']:.2f}x |")
        if d["defaults"]:
            lines += [
                "",
                "DLC variants and FlexRand split shares (average accuracy over ratios, FlexRand):",
                "",
                "| variant | scoring s | average |",
                "| --- | --- | --- |",
            ]
            for m, r in d["defaults"].items():
                avg = np.mean([np.mean(r[x]) for x in ratios])
                s = secs.get(f"dlc:{m}", secs["dlc"])
                lines.append(f"| {m} | {s:.0f} | {100 * avg:.2f} |")
        lines.append("")
    lines += decisions(report, ratios)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
