"""What a GPU worker shows on /metrics, on a machine with a GPU: the worker's presence row
(``worker.presence``) read back by the API's collector (``app.metrics``), before and after the
worker's process takes GPU memory.

    .venv/bin/python bench/gpu_metrics.py [--gib 16]

It writes the presence row into a SQLite database in a temporary directory (the schema from the
models), prints the ``dlcprune_worker_*`` lines the collector makes of it, allocates ``--gib``
GiB on the GPU, refreshes the row and prints them again, with the difference in used memory.
Without a GPU it says so and prints the lines without GPU memory.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from prometheus_client.core import Metric

from app.config import Settings
from app.db import get_engine, session_factory
from app.metrics import _worker_families
from app.models import Base
from worker.presence import Presence, gpu_memory


def lines(settings: Settings) -> list[str]:
    out = []
    with session_factory(settings)() as session:
        family: Metric
        for family in _worker_families(session):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out.append(f"{sample.name}{{{labels}}} {sample.value:.0f}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=16.0, help="GiB to allocate on the GPU")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dlcprune-gpu-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        Base.metadata.create_all(get_engine(settings))
        presence = Presence(settings, "gpu-worker-0", "gpu", ["dlcprune.score"], gpu=True)
        presence.busy("dlcprune.run_job")
        print("\n".join(lines(settings)))
        before = gpu_memory()
        if before is None:
            print("no GPU here: no GPU memory figures")
            return
        import torch

        block = torch.empty(int(args.gib * 2**30), dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        presence.idle()
        after = gpu_memory()
        assert after is not None
        print("\n".join(lines(settings)))
        grown = (after[0] - before[0]) / 2**30
        print(f"used grew by {grown:.2f} GiB after allocating {args.gib:g} GiB ({block.numel()} B)")
        print(f"device: {torch.cuda.get_device_name()}, total {after[1] / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
