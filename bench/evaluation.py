"""Evaluation speed: the whole computation of one evaluation over synthetic embeddings.

    python bench/evaluation.py [--samples 100000] [--dims 256] [--classes 10]
        [--strategies flexrand,moderate,easy] [--keep 0.1,0.2,0.3,0.5,0.7] [--seeds 10]

Runs ``app.evaluations.engine.run`` (what the worker's evaluation task runs, without the
database) on float16 features of ``--samples`` samples in ``--classes`` Gaussian classes
(seeded), with gamma-distributed scores: the held-out split, every strategy x keep x seed
selection with the service's selection code, one logistic probe per cell plus the full set, and
the intervals. The control ``stratified`` always runs beside the strategies given. Prints the
cell count, the wall time, the probes' share of it, and the recommendation.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def synthetic(n: int, dims: int, classes: int, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)).astype(np.float32)
    labels = rng.integers(0, classes, n).astype(np.int32)
    x = centres[labels] + rng.normal(scale=8.0, size=(n, dims)).astype(np.float32)
    scores = rng.gamma(2.0, 1.0, n).astype(np.float32)
    return x.astype(np.float16), labels, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--strategies", default="flexrand,moderate,easy")
    parser.add_argument("--keep", default="0.1,0.2,0.3,0.5,0.7")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads")
    args = parser.parse_args()
    from app.evaluations import engine
    from dlcprune.core import evaluation

    features, labels, scores = synthetic(args.samples, args.dims, args.classes)
    request = {
        "strategies": args.strategies.split(","),
        "keep": [float(k) for k in args.keep.split(",")],
        "seeds": args.seeds,
        "holdout": 0.2,
        "tolerance": 0.01,
    }
    probe_time = [0.0]
    original = evaluation.probe_accuracy

    def timed(*a, **kw):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            probe_time[0] += time.perf_counter() - t

    engine.probe_accuracy = timed  # type: ignore[assignment]
    cells = engine.cells_total(
        list(dict.fromkeys(["stratified", *request["strategies"]])), request["keep"], args.seeds
    )
    print(
        f"{args.samples} samples x {args.dims} dims (float16), {args.classes} classes; "
        f"strategies stratified (control) + {args.strategies}; keep {args.keep}; "
        f"{args.seeds} seeds: {cells} probes; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    t0 = time.perf_counter()
    result = engine.run(features, labels, scores, request, threads=args.threads)
    wall = time.perf_counter() - t0
    print(
        f"wall {wall:.1f} s, probes {probe_time[0]:.1f} s, full-set accuracy "
        f"{result['full']['accuracy']:.4f}"
    )
    rec = result["recommendation"]
    print("recommendation:", rec and (rec["strategy"], rec["keep"]))


if __name__ == "__main__":
    main()
