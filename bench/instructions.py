"""Throughput of DLC scoring on instruction data: batched versus one sample at a time.

    python bench/instructions.py [--samples 256] [--levels 3] [--batch-size 16]

Builds a seeded, untrained Llama (4 layers, hidden 256) with a word-level tokenizer in a
temporary directory, writes seeded Alpaca JSONL of varied lengths, and scores it with the engine
alternately batched and one at a time (A B A B). Throughput counts every non-pad token (prompt
and response) of every forward pass: tokens per pass x (1 + levels) / wall time. The scores of
both modes must agree (rtol 1e-4). Runs on the CPU; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dlcprune.core.formats import open_dataset  # noqa: E402
from dlcprune.core.params import DLCParams  # noqa: E402
from tests.scoring.lm_helpers import (  # noqa: E402
    WORDS,
    build_word_tokenizer,
    tiny_llama,
    write_alpaca,
)
from worker.scoring.backbones import Backbone, load_backbone  # noqa: E402
from worker.scoring.dlc import score  # noqa: E402
from worker.scoring.text import tokenize_instructions  # noqa: E402

MAX_LENGTH = 512


def build_model(out_dir: Path, seed: int = 0) -> Path:
    """A seeded, untrained 4-layer Llama (hidden 256) and its word-level tokenizer."""
    tokenizer = build_word_tokenizer(WORDS)
    model = tiny_llama(tokenizer, seed, layers=4, hidden=256, heads=4, intermediate=688)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def synthetic_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Alpaca rows of varied lengths: instructions 3-30 words, an input of 5-80 words on about
    a third of them, responses 2-60 words."""
    rng = random.Random(seed)

    def words(lo: int, hi: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    return [
        {
            "instruction": words(3, 30),
            "input": words(5, 80) if rng.random() < 0.35 else "",
            "output": words(2, 60),
        }
        for _ in range(n)
    ]


def tokens_per_pass(path: Path, backbone: Backbone) -> tuple[int, int]:
    """Non-pad tokens of one pass over the data (as the engine tokenizes it), and of those the
    response tokens."""
    with open_dataset(path) as ds:
        tok = tokenize_instructions(ds, backbone.tokenizer, MAX_LENGTH)
    assert tok.response_tokens is not None
    return int(tok.lengths.sum()), int(tok.response_tokens.sum())


def timed_score(path: Path, backbone: Backbone, levels: int, batch_size: int) -> tuple[float, Any]:
    with open_dataset(path) as ds:
        t0 = time.perf_counter()
        result = score(
            ds, backbone, DLCParams(levels=levels, batch_size=batch_size, max_length=MAX_LENGTH)
        )
        return time.perf_counter() - t0, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="dlcprune-bench-") as tmp:
        tmp_dir = Path(tmp)
        model_dir = build_model(tmp_dir / "llama", seed=args.seed)
        data = write_alpaca(tmp_dir / "data.jsonl", synthetic_rows(args.samples, args.seed))
        backbone = load_backbone(str(model_dir))
        per_pass, response = tokens_per_pass(data, backbone)
        passes = 1 + args.levels
        total_tokens = per_pass * passes

        modes = [("batched", args.batch_size), ("one at a time", 1)]
        seconds: dict[str, list[float]] = {name: [] for name, _ in modes}
        scores: dict[str, np.ndarray] = {}
        for _ in range(2):  # A B A B
            for name, batch_size in modes:
                wall, result = timed_score(data, backbone, args.levels, batch_size)
                seconds[name].append(wall)
                scores.setdefault(name, result.scores)

    n_params = sum(p.numel() for p in backbone.model.parameters())
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs "
        f"({len(os.sched_getaffinity(0))} usable), torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, device {backbone.device}"
    )
    print(
        f"model: Llama 4 layers, hidden 256, {n_params / 1e6:.2f} M parameters, "
        f"{backbone.num_maskable / 1e6:.2f} M maskable"
    )
    print(
        f"data: {args.samples} samples, {per_pass} tokens per pass ({response} response), "
        f"{passes} passes (levels {args.levels}), {total_tokens} tokens per run"
    )
    print()
    header = (
        f"{'mode':<14} {'batch':>5} {'best s':>7} {'runs s':>12} {'tokens/s':>9} {'speed-up':>8}"
    )
    print(header)
    print("-" * len(header))
    base = min(seconds["one at a time"])
    for name, batch_size in modes:
        best = min(seconds[name])
        runs = " ".join(f"{s:.2f}" for s in seconds[name])
        print(
            f"{name:<14} {batch_size:>5} {best:>7.2f} {runs:>12} "
            f"{total_tokens / best:>9.0f} {base / best:>7.2f}x"
        )
    a, b = scores["batched"], scores["one at a time"]
    agree = bool(np.allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True))
    diff = float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))
    print()
    print(f"scores agree (rtol 1e-4): {agree} (largest relative difference {diff:.2e})")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
