"""Reading datasets where they lie: a class-folder prefix and a Parquet manifest (a path column)
from a local S3-compatible server (moto's server mode, its own process on loopback) and from the
local disk, indexed, read, and scored.

    .venv/bin/python bench/ingest.py                              # the default sizes below
    .venv/bin/python bench/ingest.py --objects 100000 --rows 100000 --score 0 --read 5000

Prints, per source, samples per second indexed (listing and metadata only, nothing copied) and
read (every image's bytes fetched through the reader the service uses: ``--prefetch`` objects
fetched concurrently ahead of the one in use, no local cache), then DLC scoring of the first
``--score`` images of the prefix from S3 and from the disk (efficientnet_lite0, the same
parameters; ``--repeats`` interleaved runs each, the best kept; every S3 run starts with an
empty local cache, so it fetches every image) and the ratio of the two times.
The issue's sizes are 100k objects and a 100k-row manifest; the default (5,000 each, 500
scored) finishes in a few minutes on two shared cores.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def start_s3() -> tuple[subprocess.Popen[bytes], int]:
    from dlcprune.devserver import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the S3 server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=5000, help="images in the prefix")
    parser.add_argument("--rows", type=int, default=5000, help="rows of the Parquet manifest")
    parser.add_argument("--score", type=int, default=500, help="images scored (0: no scoring)")
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument(
        "--read",
        type=int,
        default=0,
        help="samples read per source after indexing all of them (0: all); at 100k objects, "
        "moto's ~150 GETs/s make a full S3 read take over 10 minutes",
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved scoring runs")
    parser.add_argument("--levels", type=int, default=50, help="DLC levels (the default path's)")
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from dlcprune.core.formats import ReadLimits, open_dataset
    from dlcprune.core.formats.remote import remote_folder, remote_manifest
    from dlcprune.core.storage import open_store

    proc, port = start_s3()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )
    try:
        s3 = open_store("s3")
        s3.fs.mkdir("bench")
        rng = np.random.default_rng(0)
        pngs = []
        for _ in range(10):
            buf = io.BytesIO()
            arr = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
            Image.fromarray(arr).save(buf, format="PNG")
            pngs.append(buf.getvalue())
        n = max(args.objects, args.rows)
        rels = [f"c{i % 10}/{i:07d}.png" for i in range(n)]
        limits = ReadLimits()
        with tempfile.TemporaryDirectory(prefix="dlcprune-bench-") as tmp:
            local = Path(tmp) / "pets"
            for i, rel in enumerate(rels):
                (local / rel).parent.mkdir(parents=True, exist_ok=True)
                (local / rel).write_bytes(pngs[i % 10])
            for start in range(0, n, 2000):
                batch = rels[start : start + 2000]
                s3.fs.pipe({f"bench/pets/{r}": pngs[(start + k) % 10] for k, r in enumerate(batch)})
            m = args.rows
            table = pa.table(
                {"path": [f"pets/{r}" for r in rels[:m]], "label": [r[:2] for r in rels[:m]]}
            )
            pq.write_table(table, Path(tmp) / "manifest.parquet")
            manifest = (Path(tmp) / "manifest.parquet").read_bytes()
            s3.fs.pipe_file("bench/manifest.parquet", manifest)
            # The prefix benchmarked is the first --objects images: a folder of its own.
            if args.objects < n:
                raise SystemExit("use --objects >= --rows")
            print(f"{n} PNG objects (32x32, {len(pngs[0])} bytes), prefetch {args.prefetch}, "
                  f"{os.cpu_count()} CPUs")  # fmt: skip

            def run(name: str, count: int, make) -> None:  # type: ignore[no-untyped-def]
                t0 = time.perf_counter()
                ds = make()
                t1 = time.perf_counter()
                assert len(ds) == count, (len(ds), count)
                want = min(args.read or count, count)
                got = sum(1 for _ in itertools.islice(ds.iter_raw(), want))
                t2 = time.perf_counter()
                ds.close()
                assert got == want, (got, want)
                print(f"{name:<30} {count:>7} samples  indexed {count / (t1 - t0):>9,.0f}/s "
                      f"({t1 - t0:6.1f} s)  read {got / (t2 - t1):>8,.0f}/s"
                      + (f" (first {got})" if got < count else ""))  # fmt: skip

            run("prefix, local disk", args.objects, lambda: open_dataset(local, limits=limits))
            run(
                "prefix, S3",
                args.objects,
                lambda: remote_folder(
                    s3, "bench/pets", s3.listing("bench/pets/"), limits, prefetch=args.prefetch
                ),
            )
            run(
                "Parquet manifest, local disk",
                m,
                lambda: open_dataset(Path(tmp) / "manifest.parquet", limits=limits),
            )
            run(
                "Parquet manifest, S3",
                m,
                lambda: remote_manifest(
                    s3,
                    "bench/manifest.parquet",
                    s3.fetch(["bench/manifest.parquet"])[0],  # type: ignore[arg-type]
                    limits,
                    listing=s3.listing("bench/"),
                    info=s3.info,
                    prefetch=args.prefetch,
                ),
            )
            if args.score:
                score_both(args, s3, local, pngs, limits)
    finally:
        proc.terminate()
        proc.wait()


def score_both(args, s3, local: Path, pngs: list[bytes], limits) -> None:  # type: ignore[no-untyped-def]
    """DLC scores of the same ``--score`` images from S3 and from the disk: time and equality."""
    import numpy as np

    from dlcprune.core.formats import open_dataset
    from dlcprune.core.formats.remote import remote_folder
    from dlcprune.core.storage import ByteCache
    from worker.scoring.backbones import load_backbone
    from worker.scoring.dlc import DLCParams, score

    k = args.score
    rels = [f"c{i % 10}/{i:07d}.png" for i in range(k)]
    sub = local.parent / "scored"
    for i, rel in enumerate(rels):
        (sub / rel).parent.mkdir(parents=True, exist_ok=True)
        (sub / rel).write_bytes(pngs[i % 10])
    s3.fs.pipe({f"bench/scored/{r}": pngs[i % 10] for i, r in enumerate(rels)})
    params = DLCParams(
        levels=args.levels, image_size=args.image_size, batch_size=64, precision="fp32"
    )
    bb = load_backbone("efficientnet_lite0", device="cpu")
    # As the service reads, through the bounded local cache of fetched bytes, but an empty one
    # for every run: each S3 run fetches every image from the server (cold), as a first job does.
    caches = iter(range(args.repeats))
    sources = {
        "local disk": lambda: open_dataset(sub, limits=limits),
        "S3": lambda: remote_folder(
            s3,
            "bench/scored",
            s3.listing("bench/scored/"),
            limits,
            prefetch=args.prefetch,
            cache=ByteCache(local.parent / f"cache-{next(caches)}", 2 * 2**30),
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in sources}
    scores: dict[str, np.ndarray] = {}
    # Interleaved runs, the best of each kept: the machine is shared, and a run's time moves
    # with what else runs on it (the load average is printed with each run).
    for _ in range(args.repeats):
        for name, make in sources.items():
            t0 = time.perf_counter()
            with make() as ds:
                scores[name] = score(ds, bb, params).scores
            times[name].append(time.perf_counter() - t0)
            load = os.getloadavg()[0]
            print(f"DLC scoring from {name:<11} {k:>6} samples  {times[name][-1]:6.1f} s  "
                  f"(load average {load:.1f})")  # fmt: skip
    best = {name: min(t) for name, t in times.items()}
    same = bool(np.allclose(scores["S3"], scores["local disk"], rtol=1e-5, atol=1e-6))
    print(f"best of {args.repeats}: local disk {best['local disk']:.1f} s "
          f"({k / best['local disk']:,.0f} samples/s), S3 {best['S3']:.1f} s "
          f"({k / best['S3']:,.0f} samples/s); S3 / local disk: "
          f"{best['S3'] / best['local disk']:.2f}x; same scores: {same} "
          f"(efficientnet_lite0, {params.levels} levels, {params.image_size} px, fp32, CPU; "
          "S3 runs with an empty cache)")  # fmt: skip


if __name__ == "__main__":
    main()
