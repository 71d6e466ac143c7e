"""Peak memory of scoring 100,000 images of 64x64 (the CLI, one process).

    python bench/memory.py [--images 100000] [--size 64] [--levels 1]

Writes seeded images to an uncompressed .npz in a temporary directory (streamed: the benchmark
itself never holds them), runs ``dlcprune score`` on it as a child process, and prints the
child's peak resident memory (``ru_maxrss``) and wall time. The engine keeps the decoded images
as uint8 (1.2 GB here) and the unmasked features for the prototypes; everything else is per
batch.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np


def write_npz(path: Path, n: int, size: int, classes: int = 10) -> None:
    tmp = path.parent
    x = np.lib.format.open_memmap(
        tmp / "x.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3)
    )
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    for lo in range(0, n, 5000):
        hi = min(n, lo + 5000)
        block = rng.integers(0, 200, size=(hi - lo, size, size, 3), dtype=np.uint8)
        block[..., 0] += (labels[lo:hi] * 5).astype(np.uint8)[:, None, None]
        x[lo:hi] = block
    x.flush()
    del x
    np.save(tmp / "y.npy", labels)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.write(tmp / "x.npy", "x.npy")
        zf.write(tmp / "y.npy", "y.npy")
    (tmp / "x.npy").unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--levels", type=int, default=1)
    args = parser.parse_args()
    dlcprune = str(Path(sys.executable).parent / "dlcprune")
    with tempfile.TemporaryDirectory(prefix="dlc-memory-") as tmp:
        data = Path(tmp) / "images.npz"
        write_npz(data, args.images, args.size)
        print(
            f"{args.images} images of {args.size}x{args.size}: {data.stat().st_size / 2**30:.2f}"
            f" GiB on disk",
            flush=True,
        )
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                dlcprune,
                "score",
                str(data),
                "--image-size",
                str(args.size),
                "--levels",
                str(args.levels),
                "--quiet",
                "--out",
                str(Path(tmp) / "scores.csv"),
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(proc.stderr)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(
            f"dlcprune score --image-size {args.size} --levels {args.levels}: "
            f"peak RSS {peak_kib / 2**20:.2f} GiB, {seconds:.0f} s"
        )


if __name__ == "__main__":
    main()
