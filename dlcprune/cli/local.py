"""``dlcprune score`` and ``dlcprune select``: the engine and the strategies on this machine.

The engine (torch) is imported inside ``score`` only, so ``select``, ``--help`` and the remote
commands never load it. Every parameter of DLC and of the baselines is an option of ``score``,
generated from ``dlcprune.core.params``.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from typing import Annotated, Any, Literal

import numpy as np
import typer

from dlcprune.cli.common import CLIError, permille_bar, wants_bar
from dlcprune.cli.options import param_options, pick
from dlcprune.core.params import (
    DEFAULT_MODEL,
    HF_KINDS,
    MASK_LAYERS,
    STRATEGY,
    BaselineParams,
    DLCParams,
)
from dlcprune.core.selection.params import SelectionParams
from dlcprune.names import DEFAULT_METHOD, METHODS


def keep_value(text: str) -> float | int:
    """``--keep``: a ratio in (0, 1], or a count when a whole number above 1."""
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"not a number: {text!r}") from None
    if value > 1 and value.is_integer():
        return int(value)
    return value


# ``--keep``'s own parser and metavar, for ``param_options(SelectionParams, parsers=...)``.
KEEP_PARSER = {"keep": (keep_value, "RATIO|COUNT")}
Progress = Annotated[
    bool, typer.Option("--progress", help="show the progress bar even when not on a terminal")
]
Quiet = Annotated[bool, typer.Option("--quiet", help="no progress bar")]


@param_options(
    DLCParams, BaselineParams, into="values", panels=("DLC parameters", "Baseline parameters")
)
def score(
    data: Annotated[
        str,
        typer.Argument(
            metavar="DATA",
            help="image folder, .zip/.tar(.gz) archive, .csv/.jsonl manifest, .npz, JSON lines",
        ),
    ],
    out: Annotated[str, typer.Option("--out", help="output CSV: sample_id,label,score")],
    model: Annotated[
        str,
        typer.Option(
            help="registry name, timm/torchvision architecture (with --weights), TorchScript "
            "file or Hugging Face directory"
        ),
    ] = DEFAULT_MODEL,
    weights: Annotated[
        str | None, typer.Option(help="weights file (.pth, .pt, .safetensors)")
    ] = None,
    method: Annotated[
        Literal[METHODS],  # type: ignore[valid-type]
        typer.Option(
            help="dlc, or a baseline (random, herding, kcenter_greedy, moderate; el2n, grand, "
            "forgetting, entropy, margin, least_confidence fine-tune on the whole dataset first)"
        ),
    ] = DEFAULT_METHOD,
    mask_layers: Annotated[
        Literal[MASK_LAYERS],  # type: ignore[valid-type]
        typer.Option(help="the layers whose weights are masked"),
    ] = MASK_LAYERS[0],
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]")] = "auto",
    hf_kind: Annotated[
        Literal[HF_KINDS],  # type: ignore[valid-type]
        typer.Option(
            help="a Hugging Face directory as --model: an encoder or a causal LM (auto: "
            "config.json)"
        ),
    ] = HF_KINDS[0],
    losses: Annotated[str | None, typer.Option(help="also write per-level losses (.npz)")] = None,
    quiet: Quiet = False,
    progress: Progress = False,
    *,
    values: dict[str, Any],
) -> None:
    """Score every sample of a dataset with DLC (or a baseline)."""
    # Checked before any model is loaded: a bad option fails at once.
    dlc_params = pick(DLCParams, values).validate()
    baseline_params = pick(BaselineParams, values).validate()
    from dlcprune.core.formats import open_dataset
    from worker.scoring.backbones import load_backbone
    from worker.scoring.dlc import resolve_device
    from worker.scoring.dlc import score as score_dlc

    backbone = load_backbone(
        model, weights, mask_layers=mask_layers, hf_kind=hf_kind, device=resolve_device(device)
    )
    show = wants_bar(quiet, progress)
    if method != "dlc":
        _score_baseline(data, out, backbone, method, baseline_params, show)
        return
    with open_dataset(data) as ds:
        # The bar starts once the data opened: a bad dataset fails with its error line alone.
        bar, update = _progress_bar(show)
        try:
            result = score_dlc(
                ds, backbone, dlc_params, return_losses=losses is not None, progress=update
            )
        finally:
            if bar is not None:
                bar.close()
    result.write_csv(out)
    if losses:
        extra = {"tokens": result.tokens} if result.tokens is not None else {}
        np.savez(
            losses,
            losses=result.losses,
            mask_fractions=result.mask_fractions,
            ids=np.asarray(result.ids),
            **extra,
        )
    print(
        f"scored {len(result.ids)} samples in {result.timings['total_s']:.1f} s -> {out}",
        file=sys.stderr,
    )
    if result.unscored:
        shown = ", ".join(result.unscored[:5]) + (" ..." if len(result.unscored) > 5 else "")
        print(
            f"warning: {len(result.unscored)} sample(s) have no response token left after "
            f"truncation (empty score; raise --max-length or use --truncation prompt): {shown}",
            file=sys.stderr,
        )


def _progress_bar(show: bool) -> tuple[Any, Any]:
    if not show:
        return None, None
    bar = permille_bar()

    def update(p: Any) -> None:
        bar.set_description_str(p.stage, refresh=False)
        bar.n = int(p.fraction * 1000)
        bar.refresh()

    return bar, update


def _score_baseline(
    data: str,
    out: str,
    backbone: Any,
    method: str,
    params: BaselineParams,
    show: bool,
) -> None:
    import time

    from dlcprune.core.formats import open_dataset
    from worker.scoring.baselines import score_baseline
    from worker.scoring.dlc import write_scores_csv

    t0 = time.perf_counter()
    with open_dataset(data) as ds:
        bar, update = _progress_bar(show)
        try:
            scores, _ = score_baseline(ds, backbone, method, params, progress=update)
        finally:
            if bar is not None:
                bar.close()
        ids, labels = list(ds.ids), ds.labels
    tmp = f"{out}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        write_scores_csv(fh, ids, labels, scores)
    os.replace(tmp, out)
    print(
        f"scored {len(ids)} samples with {method} in {time.perf_counter() - t0:.1f} s -> "
        f"{out} (its usual selection: --strategy {STRATEGY[method]})",
        file=sys.stderr,
    )


@param_options(SelectionParams, into="params", parsers=KEEP_PARSER)
def select(
    scores: Annotated[
        str, typer.Argument(metavar="SCORES", help="CSV with header sample_id,label,score")
    ],
    out: Annotated[str, typer.Option("--out", help="output: one kept sample id per line")],
    *,
    params: dict[str, Any],
) -> None:
    """Select a subset from a scores CSV."""
    from dlcprune.core.selection import select as run_select

    # The definition's bounds first, as the API checks them (a hard cutoff is checked whatever
    # the strategy); then the strategies' own rules (keep's: a ratio or a count).
    chosen = pick(SelectionParams, params).validate()
    ids, labels, values = read_scores_csv(scores)
    sel = run_select(values, labels, unscored="exclude", **chosen.to_dict())
    with open(out, "w", encoding="utf-8", newline="\n") as fh:
        for i in sel.indices:
            fh.write(ids[i] + "\n")
    print(
        f"kept {sel.size} of {len(ids)} samples ({sel.size / len(ids):.1%}) -> {out}",
        file=sys.stderr,
    )


def read_scores_csv(path: str) -> tuple[list[str], list[str] | None, np.ndarray]:
    """Read ``sample_id,label,score``; labels are None when every label cell is empty.
    Returns ids, labels and scores (N,) float64 (NaN: not scored)."""
    ids: list[str] = []
    labels: list[str] = []
    scores: list[float] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:3]] != ["sample_id", "label", "score"]:
                raise CLIError(f"{path}:1: expected the header sample_id,label,score")
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) < 3:
                    raise CLIError(f"{path}:{lineno}: expected 3 columns, got {len(row)}")
                ids.append(row[0])
                labels.append(row[1])
                scores.append(_score_cell(path, lineno, row[2]))
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise CLIError(f"{path}: bad CSV: {exc}") from None
    if not ids:
        raise CLIError(f"{path}: no scores")
    if len(set(ids)) != len(ids):
        raise CLIError(f"{path}: sample ids are not unique")
    has_labels = any(labels)
    if has_labels and not all(labels):
        missing = next(i for i, lab in enumerate(labels) if not lab)
        raise CLIError(f"{path}:{missing + 2}: empty label while other rows have labels")
    return ids, (labels if has_labels else None), np.asarray(scores, dtype=np.float64)


def _score_cell(path: str, lineno: int, cell: str) -> float:
    if cell.strip() == "":
        return math.nan  # not scored (an instruction truncated away): never kept
    try:
        value = float(cell)
    except ValueError:
        raise CLIError(f"{path}:{lineno}: score {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise CLIError(f"{path}:{lineno}: score {cell!r} is not finite")
    return value
