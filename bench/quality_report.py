"""The quality benchmark's report: tables with 95% intervals, paired differences against the
control (class-stratified random), gap plots, the proxy's rank agreement, label-issue AUROC and
the defaults decision. Reads only the raw results (``bench/quality.py --json``), so ``--merge``
can write one report from several runs."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality_stats import excludes_zero, interval, paired, spearman

CONTROL = "Stratified random (control)"
REFERENCE = "DLC + FlexRand 0.5"
SPLIT_PREFIX = "DLC + FlexRand "

Results = dict[float, list[float]]


def per_seed(per_ratio: Results, ratios: list[float]) -> np.ndarray:
    """(seeds,) each seed's accuracy averaged over the ratios."""
    return np.mean([per_ratio[r] for r in ratios], axis=0)


def fmt(ci: tuple[float, float, float], sign: bool = False) -> str:
    mean, lo, hi = (100 * v for v in ci)
    s = f"{mean:+.1f}" if sign else f"{mean:.1f}"
    if math.isnan(lo):
        return s
    s += f" [{lo:+.1f}, {hi:+.1f}]" if sign else f" [{lo:.1f}, {hi:.1f}]"
    return f"**{s}**" if sign and excludes_zero(ci) else s


def ordered(res: dict[str, Results], ratios: list[float]) -> dict[str, Results]:
    """The control first, then the rows by average accuracy, best first."""
    rest = sorted((m for m in res if m != CONTROL), key=lambda m: -per_seed(res[m], ratios).mean())
    return {m: res[m] for m in [CONTROL, *rest] if m in res}


def accuracy_table(res: dict[str, Results], ratios: list[float]) -> list[str]:
    lines = [
        "| method | " + " | ".join(f"{r:.0%}" for r in ratios) + " | average |",
        "|" + " --- |" * (len(ratios) + 2),
    ]
    for m, rs in res.items():
        cells = [fmt(interval(rs[r])) for r in ratios]
        lines.append(
            f"| {m} | " + " | ".join(cells) + f" | {fmt(interval(per_seed(rs, ratios)))} |"
        )
    return lines


def difference_table(res: dict[str, Results], ratios: list[float]) -> list[str]:
    lines = [
        "| method − control | " + " | ".join(f"{r:.0%}" for r in ratios) + " | average |",
        "|" + " --- |" * (len(ratios) + 2),
    ]
    ctl = res.get(CONTROL)
    for m, rs in res.items():
        if m == CONTROL or ctl is None:
            continue
        cells = [fmt(paired(rs[r], ctl[r]), sign=True) for r in ratios]
        avg = paired(per_seed(rs, ratios), per_seed(ctl, ratios))
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {fmt(avg, sign=True)} |")
    return lines


def plot_gaps(res: dict[str, Results], ratios: list[float], title: str, path: Path) -> None:
    """Paired difference from the control per ratio, with 95% intervals (PNG and SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ctl = res.get(CONTROL)
    if ctl is None:
        return
    xs = np.array([100 * (1 - r) for r in ratios])
    shown = [m for m in res if m != CONTROL]
    for k, m in enumerate(shown):
        cis = [paired(res[m][r], ctl[r]) for r in ratios]
        mean = np.array([100 * c[0] for c in cis])
        err = np.array([[100 * (c[0] - c[1]), 100 * (c[2] - c[0])] for c in cis]).T
        style = {"linewidth": 2.4, "color": "black"} if m == REFERENCE else {"alpha": 0.75}
        off = (k - len(shown) / 2) * 0.25  # keep the error bars apart
        ax.errorbar(
            xs + off,
            mean,
            yerr=np.nan_to_num(err),
            marker="o",
            markersize=3,
            capsize=2,
            label=m,
            **style,
        )
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("pruning ratio (% of the training set removed)")
    ax.set_ylabel("accuracy − stratified random (points, 95% CI)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6.5, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    fig.savefig(path.with_suffix(".svg"))
    plt.close(fig)


def proxy_agreement(d: dict[str, Any], ratios: list[float], rows: set[str] | None = None) -> float:
    """Spearman between the fine-tuning protocol's and the probe's mean accuracy over every
    cell (row x ratio) of one dataset, or over the cells of ``rows`` alone."""
    res, proxy = d["results"], d["proxy"]
    cells = [(m, r) for m in res if rows is None or m in rows for r in ratios]
    return spearman(
        [float(np.mean(res[m][r])) for m, r in cells],
        [float(np.mean(proxy[m][r])) for m, r in cells],
    )


def pooled(report: dict[str, Any], names: list[str], row: str, ref: str, ratios: list[float]):
    """Paired difference ``row - ref`` per seed, averaged over ratios and the datasets named."""
    found = [report["datasets"][n]["results"] for n in names]
    diffs = [
        per_seed(res[row], ratios) - per_seed(res[ref], ratios)
        for res in found
        if row in res and ref in res  # a run cut short may lack a row
    ]
    if not diffs:
        return math.nan, math.nan, math.nan
    return interval(np.mean(diffs, axis=0))


def decisions(report: dict[str, Any], ratios: list[float]) -> list[str]:
    sets = report["datasets"]
    every = list(sets)
    studied = [n for n in every if sets[n]["variants"]]
    splits = [m for m in next(iter(sets.values()))["results"] if m.startswith(SPLIT_PREFIX)]
    lines = [
        "## What the results decide",
        "",
        "Paired differences (points, mean [95% interval] over seeds; each seed's accuracy "
        "averaged over the ratios and the datasets named). A default changes only where an "
        "interval excludes zero in its favour; bold marks an interval that excludes zero.",
        "",
        "| comparison | datasets | difference |",
        "| --- | --- | --- |",
    ]
    changes: list[str] = []
    for m in splits:
        if m == REFERENCE:
            continue
        ci = pooled(report, every, m, REFERENCE, ratios)
        lines.append(
            f"| FlexRand split {m.removeprefix(SPLIT_PREFIX)} − split 0.5 | all | "
            f"{fmt(ci, sign=True)} |"
        )
        if excludes_zero(ci) and ci[0] > 0:
            changes.append(f"split {m.removeprefix(SPLIT_PREFIX)}")
    variants = sets[studied[0]]["variants"] if studied else []
    for m in variants:
        ci = pooled(report, studied, m, REFERENCE, ratios)
        lines.append(f"| {m} − geometric, 50 levels | image sets | {fmt(ci, sign=True)} |")
        if excludes_zero(ci) and ci[0] > 0:
            changes.append(m)
    for m in [m for m in sets[every[0]]["results"] if m != CONTROL]:
        ci = pooled(report, every, m, CONTROL, ratios)
        lines.append(f"| {m} − stratified random | all | {fmt(ci, sign=True)} |")
    lines.append("")
    if changes:
        lines.append(
            "Intervals that exclude zero in favour of a non-reference setting: "
            + ", ".join(changes)
            + "."
        )
    else:
        lines.append(
            "No split share and no path variant beats the paper's setting (geometric path of "
            "50 levels, split 0.5) by an interval that excludes zero, so the service uses the "
            "paper's defaults for labelled data (`dlcprune/core/params.py` LABELLED_PATH, "
            "`dlcprune/names.py` DEFAULT_SPLIT)."
        )
    lines.append("")
    return lines


def write_report(
    report: dict[str, Any],
    ratios: list[float],
    out: Path,
    args: Any,
    headline: set[str] | None = None,
) -> None:
    """docs/quality.md from a run's raw results. ``headline``: the rows of a default run (the
    close contenders), over whose cells the probe's agreement is given beside all cells'."""
    img = out.parent / "img"
    img.mkdir(parents=True, exist_ok=True)
    cmd = "python bench/quality.py" + (" --quick" if args.quick else "")
    if not args.quick and getattr(args, "device", "cpu") != "cpu":
        cmd += f" --device {args.device}"
    lines = [
        "# Selection quality: DLC against class-stratified random and the baselines",
        "",
        f"Written by `{cmd}` on {report.get('machine', '?')} ({report['minutes']:.0f} minutes). "
        f"Test accuracy in % with its 95% interval over {args.seeds} paired seeds (seed s "
        "selects with seed s and trains with seed 1000 + s in every row); columns are the "
        "share of the training set kept. The control is class-stratified random; the second "
        "table gives each row's paired difference from it (bold: the interval excludes zero).",
        "",
        "Protocol (every row, every ratio): the backbone's last layer (EfficientNet-Lite0's "
        "conv_head with its BatchNorm; for text, a residual MLP block on MiniLM's frozen "
        f"sentence features) and a new linear head are trained for {args.steps} steps of "
        f"{args.batch} samples whatever the subset's size (a small subset is cycled as often as "
        "needed), AdamW, warm-up and cosine decay, no augmentation; earlier layers frozen. "
        f"Images at {args.image_size} px. DLC (every `DLC + ...` row): {args.levels} geometric "
        "levels of 2% of the remaining weights, L1 masks; the `DLC <variant>` rows use FlexRand "
        f"at split 0.5. Training-based scores: {args.epochs} passes, {args.train_seeds} seed(s), "
        "the whole backbone fine-tuned. The proxy is the evaluations' probe: a logistic "
        "regression on the unmasked backbone's pooled features of the same subset.",
        "",
    ]
    summary = [
        "| dataset | Spearman (proxy vs fine-tuning, all cells) | the same, headline rows' cells "
        "| label-issue AUROC | DLC AUROC |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, d in report["datasets"].items():
        res = d["results"] = ordered(d["results"], ratios)
        lines += [f"## {d['title']}", "", d["notes"] + f" ({d['minutes']:.0f} minutes).", ""]
        lines += [*accuracy_table(res, ratios), "", *difference_table(res, ratios)]
        plot_gaps(res, ratios, d["title"], img / f"quality-{name}.png")
        rho = proxy_agreement(d, ratios)
        issues = d.get("label_issues") or {}
        lines += [
            "",
            f"![difference from stratified random](img/quality-{name}.png)",
            "",
            f"Proxy: Spearman {rho:.2f} between the probe's and the fine-tuning protocol's "
            f"mean accuracy over the {len(res) * len(ratios)} cells.",
        ]
        if issues:
            lines.append(
                f"Flipped labels ({issues['flipped']}): AUROC {issues['label_issue_auroc']:.3f} "
                f"for the label-issue score (1 − cross-validated self-confidence), "
                f"{issues['dlc_auroc']:.3f} for DLC (high = hard)."
            )
            auc = (f"{issues['label_issue_auroc']:.3f}", f"{issues['dlc_auroc']:.3f}")
        else:
            auc = ("—", "—")
        rows = set(res) & headline if headline else set(res)
        rho_head = proxy_agreement(d, ratios, rows)
        head = f"{rho_head:.2f} ({len(rows) * len(ratios)} cells)"
        summary.append(f"| {d['title']} | {rho:.2f} | {head} | {auc[0]} | {auc[1]} |")
        secs = d["seconds"]
        lines += [
            "",
            "Scoring time on the training split (wall seconds, same run):",
            "",
            "| score | seconds | relative to DLC |",
            "| --- | --- | --- |",
        ]
        for m, s in sorted(secs.items(), key=lambda kv: kv[1]):
            lines.append(f"| {m} | {s:.1f} | {s / secs['dlc']:.2f}x |")
        lines.append("")
    lines += ["## Proxy and label issues", "", *summary, ""]
    lines += decisions(report, ratios)
    out.write_text("\n".join(lines) + "\n")


def merge(paths: list[str], out: Path, headline: set[str] | None = None) -> None:
    """One report from the --json files of several runs: shards of one dataset (other rows),
    runs of other keep ratios (other columns) and other datasets. Every row of every dataset
    must end with a cell at every ratio; a cell two runs give differently is refused."""
    merged: dict[str, Any] = {"datasets": {}, "minutes": 0.0}
    machines = []
    ratios: set[float] = set()
    # Minutes per dataset: shards of one run ran side by side (the longest counts), runs of
    # other ratios one after the other (they add up).
    minutes: dict[str, dict[str, float]] = {}
    for path in paths:
        run = json.loads(Path(path).read_text())
        merged.setdefault("args", run["args"])
        merged["minutes"] += run["minutes"]
        machines.append(run.get("machine", "?"))
        ratios |= {float(r) for r in run["args"]["ratios"].split(",")}
        for name, d in run["datasets"].items():
            for key in ("results", "proxy"):  # JSON made the ratio keys strings
                d[key] = {m: {float(r): v for r, v in rs.items()} for m, rs in d[key].items()}
            spent = minutes.setdefault(name, {})
            spent[run["args"]["ratios"]] = max(spent.get(run["args"]["ratios"], 0.0), d["minutes"])
            if name not in merged["datasets"]:
                merged["datasets"][name] = d
                continue
            have = merged["datasets"][name]
            for key in ("results", "proxy"):
                for m, rs in d[key].items():
                    for r, v in rs.items():
                        if have[key].get(m, {}).get(r, v) != v:
                            raise SystemExit(
                                f"--merge: {path} gives other {key} for {name}, {m!r} at "
                                f"keep {r} than an earlier file"
                            )
                    have[key][m] = {**have[key].get(m, {}), **rs}
            for key in ("seconds", "label_issues"):
                have[key] = {**have[key], **d[key]}
    for name, d in merged["datasets"].items():
        d["minutes"] = sum(minutes[name].values())
        for m, rs in d["results"].items():
            lacking = sorted(ratios - set(rs))
            if lacking:
                raise SystemExit(
                    f"--merge: {name}, {m!r} has no results at keep "
                    f"{', '.join(map(str, lacking))}; run it at those ratios too (the report "
                    "gives every row every ratio)"
                )
    merged["machine"] = "; ".join(dict.fromkeys(machines))
    merged["args"]["ratios"] = ",".join(str(r) for r in sorted(ratios))
    args = argparse.Namespace(**merged["args"])
    write_report(merged, sorted(ratios), out, args, headline)
    print(f"wrote {out} from {len(paths)} run(s)")
