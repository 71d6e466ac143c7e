"""Does a long scoring job delay indexing? One worker for every queue, against a GPU worker and a
CPU worker on their own queues, side by side.

    python bench/queues.py [--levels 12] [--samples 128]

For each setup it starts the production stack on this machine (a PostgreSQL database of its own
on 127.0.0.1:5432, dropped afterwards; Redis on 127.0.0.1:6379 with private queues; ``dlcprune
serve``): "shared" runs one ``dlcprune worker`` (every queue), "split" runs ``dlcprune worker
--kind gpu`` and ``--kind cpu``. Every upload is indexed by a worker (DLCPRUNE_INDEX_SYNC_MAX_BYTES
is 0). It indexes a first dataset, starts a scoring job on it (``--levels`` mask levels), and once
the job runs uploads a second dataset and times the upload until ``ready``. Prints, per setup,
that time, the scoring job's run time and whether the job was still running when the second
dataset was ready.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402

from bench.load import ADMIN, REDIS  # noqa: E402 - the same local services
from dlcprune.devserver import Process, Service, clean_env, dlcprune_command  # noqa: E402

SETUPS = {
    "shared": [["worker"]],
    "split": [["worker", "--kind", "gpu"], ["worker", "--kind", "cpu"]],
}


def arrays(path: Path, n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 255, size=(n, 16, 16, 3), dtype=np.uint8)
    images[labels == 1, :, :, 0] = 255
    np.savez(path, x=images, y=labels)
    return path.read_bytes()


def poll(client: httpx.Client, url: str, done, limit: float = 600.0) -> tuple[dict, float]:  # type: ignore[no-untyped-def]
    """GET ``url`` until ``done(body)``; the body and the seconds it took."""
    start = time.monotonic()
    while not done(body := client.get(url).json()):
        if time.monotonic() - start > limit:
            raise TimeoutError(f"{url}: {body.get('status')} after {limit} s")
        time.sleep(0.05)
    return body, time.monotonic() - start


def measure(setup: str, args: argparse.Namespace, tmp: Path) -> dict:
    command = dlcprune_command()
    database = f"dlcprune_queues_{uuid.uuid4().hex[:8]}"
    prefix = f"dlcprune_queues_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    base = ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    env = clean_env(
        DLCPRUNE_DATABASE_URL=f"{base}/{database}",
        DLCPRUNE_BROKER_URL=REDIS,
        DLCPRUNE_TASK_QUEUE=prefix,
        DLCPRUNE_DATA_DIR=str(tmp / setup),
        DLCPRUNE_AUTH_ENABLED="true",
        DLCPRUNE_INDEX_SYNC_MAX_BYTES="0",
    )
    log = tmp / f"{setup}.log"
    procs: list[Process] = []
    try:
        api = Service(["--no-embedded-worker"], env=env, log=log)
        procs.append(api)
        api.wait_ready(timeout=90)
        for argv in SETUPS[setup]:
            procs.append(Process([*command, *argv], env=env, log=log))
        for worker in procs[1:]:
            worker.wait_for_output("ready.", timeout=120)
        key = subprocess.run(
            [*command, "keys", "create", "--tenant", "bench"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        with httpx.Client(base_url=api.url, headers={"X-API-Key": key}, timeout=60) as client:
            first = client.post(
                "/v1/datasets", files={"file": ("a.npz", arrays(tmp / "a.npz", args.samples, 1))}
            ).json()
            poll(client, first["url"], lambda d: d["status"] == "ready")
            params = {"image_size": 32, "levels": args.levels}
            job = client.post("/v1/jobs", json={"dataset_id": first["id"], "params": params}).json()
            poll(client, job["url"], lambda j: j["status"] == "running")
            second = client.post(
                "/v1/datasets", files={"file": ("b.npz", arrays(tmp / "b.npz", 64, 2))}
            ).json()
            _, index_s = poll(client, second["url"], lambda d: d["status"] == "ready")
            running = client.get(job["url"]).json()["status"] == "running"
            done, _ = poll(client, job["url"], lambda j: j["status"] == "succeeded")
        return {"index_s": index_s, "job_s": done["timings"]["run_s"], "job_running": running}
    finally:
        for proc in procs:
            proc.stop(timeout=30)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        broker = redis.Redis.from_url(REDIS)
        for name in broker.scan_iter(f"{prefix}*"):
            broker.delete(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, default=12, help="the scoring job's mask levels")
    parser.add_argument("--samples", type=int, default=128, help="its dataset's samples")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dlcprune-queues-") as tmp:
        for setup in SETUPS:
            rows.append((setup, measure(setup, args, Path(tmp))))
    print(f"{'setup':<8} {'indexing (s)':>13} {'scoring job (s)':>16}  job still running")
    for setup, r in rows:
        print(f"{setup:<8} {r['index_s']:>13.2f} {r['job_s']:>16.1f}  {r['job_running']}")
    shared, split = rows[0][1]["index_s"], rows[1][1]["index_s"]
    print(f"indexing waited {shared / split:.0f}x longer behind the job with one shared worker")


if __name__ == "__main__":
    main()
