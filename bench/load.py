"""Load test on loopback: concurrent clients create selections and poll jobs while a job scores.

    python bench/load.py [--clients 50] [--seconds 120] [--max-requests 200000]
    make load

Sets up the production stack on this machine: a PostgreSQL database of its own (created on
127.0.0.1:5432 and dropped afterwards), Redis on 127.0.0.1:6379 with a private queue,
``dlcprune serve`` and one ``dlcprune worker``. It registers a dataset, scores it once (the job
selections are made from), then starts a long scoring job and runs ``--clients`` concurrent
clients for ``--seconds`` (or ``--max-requests`` requests, whichever comes first; traffic goes to
127.0.0.1 only). Each client loops: create a selection (random keep and seed) and read it back,
or poll the running job. Afterwards every selection a client saw created must be listed exactly
once. Prints requests per second and p50/p99 latency per kind of request, and exits non-zero on
any error or lost or duplicated selection.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from PIL import Image  # noqa: E402

from dlcprune.devserver import Process, Service, clean_env, dlcprune_command  # noqa: E402

ADMIN = os.environ.get(
    "DLCPRUNE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS = os.environ.get("DLCPRUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def image_zip(path: Path, per_class: int, size: int = 24) -> Path:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for c, tint in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
            for i in range(per_class):
                arr = np.clip(np.array(tint) + rng.integers(-60, 60, (size, size, 3)), 0, 255)
                buf = io.BytesIO()
                Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
                zf.writestr(f"class{c}/{i:04d}.png", buf.getvalue())
    return path


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def client_loop(
    client: httpx.AsyncClient,
    seed: int,
    scored_job: str,
    running_job: str,
    deadline: float,
    budget: list[int],
    latencies: dict[str, list[float]],
    errors: list[str],
    created: list[str],
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        try:
            if rng.random() < 0.5:
                body = {
                    "keep": rng.choice([0.1, 0.3, 0.5, 0.7, 250]),
                    "seed": rng.randrange(10**6),
                    "strategy": rng.choice(["flexrand", "easy", "stratified"]),
                }
                t0 = time.perf_counter()
                resp = await client.post(f"/v1/jobs/{scored_job}/selections", json=body)
                latencies["create selection"].append(time.perf_counter() - t0)
                if resp.status_code != 201:
                    errors.append(f"create: {resp.status_code} {resp.text[:200]}")
                    continue
                created.append(resp.json()["id"])
                t0 = time.perf_counter()
                got = await client.get(f"/v1/selections/{resp.json()['id']}")
                latencies["read selection"].append(time.perf_counter() - t0)
                if got.status_code != 200:
                    errors.append(f"read: {got.status_code}")
            else:
                t0 = time.perf_counter()
                resp = await client.get(f"/v1/jobs/{running_job}")
                latencies["poll job"].append(time.perf_counter() - t0)
                if resp.status_code != 200:
                    errors.append(f"poll: {resp.status_code}")
        except httpx.HTTPError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")


async def run_clients(url: str, key: str, scored: str, running: str, args) -> dict:  # type: ignore[no-untyped-def]
    latencies: dict[str, list[float]] = {
        "create selection": [],
        "read selection": [],
        "poll job": [],
    }
    errors: list[str] = []
    created: list[str] = []
    budget = [args.max_requests]
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": key}, timeout=30, limits=limits
    ) as client:
        t0 = time.monotonic()
        deadline = t0 + args.seconds
        await asyncio.gather(
            *[
                client_loop(
                    client, i, scored, running, deadline, budget, latencies, errors, created
                )
                for i in range(args.clients)
            ]
        )
        elapsed = time.monotonic() - t0
        listed: list[str] = []
        offset = 0
        while True:
            page = (
                await client.get(
                    f"/v1/jobs/{scored}/selections", params={"limit": 1000, "offset": offset}
                )
            ).json()
            listed += [s["id"] for s in page["items"]]
            offset += 1000
            if offset >= page["total"]:
                break
    return {
        "latencies": latencies,
        "errors": errors,
        "created": created,
        "listed": listed,
        "elapsed": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--max-requests", type=int, default=200_000)
    args = parser.parse_args()
    dlcprune = dlcprune_command()
    db = f"dlcprune_load_{uuid.uuid4().hex[:8]}"
    queue = f"dlcprune_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    procs: list[Process] = []
    tmp = Path(tempfile.mkdtemp(prefix="dlc-load-"))
    try:
        env = clean_env(
            DLCPRUNE_DATABASE_URL=ADMIN.rsplit("/", 1)[0].replace(
                "postgresql://", "postgresql+psycopg://"
            )
            + f"/{db}",
            DLCPRUNE_BROKER_URL=REDIS,
            DLCPRUNE_TASK_QUEUE=queue,
            DLCPRUNE_DATA_DIR=str(tmp / "data"),
            DLCPRUNE_AUTH_ENABLED="true",
        )
        log = tmp / "service.log"
        api = Service(["--no-embedded-worker"], env=env, log=log)
        procs.append(api)
        procs.append(Process([*dlcprune, "worker"], env=env, log=log))
        url = api.url
        api.wait_ready(timeout=60)
        key = subprocess.run(
            [*dlcprune, "keys", "create", "--tenant", "load"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        headers = {"X-API-Key": key}
        archive = image_zip(tmp / "load.zip", per_class=200)
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            ds = client.post("/v1/datasets", files={"file": ("load.zip", archive.read_bytes())})
            ds_id = ds.json()["id"]
            scored = client.post(
                "/v1/jobs", json={"dataset_id": ds_id, "params": {"image_size": 32, "levels": 2}}
            )
            scored_id = scored.json()["id"]
            while client.get(f"/v1/jobs/{scored_id}").json()["status"] != "succeeded":
                time.sleep(0.5)
            running = client.post(
                "/v1/jobs", json={"dataset_id": ds_id, "params": {"image_size": 64, "levels": 1000}}
            )
            running_id = running.json()["id"]
            while client.get(f"/v1/jobs/{running_id}").json()["status"] != "running":
                time.sleep(0.2)
        result = asyncio.run(run_clients(url, key, scored_id, running_id, args))
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            still = client.get(f"/v1/jobs/{running_id}").json()
            client.post(f"/v1/jobs/{running_id}/cancel")
    finally:
        for p in procs:
            p.stop(timeout=30)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        import redis

        broker = redis.Redis.from_url(REDIS)
        for name in broker.scan_iter(f"{queue}*"):  # one queue per kind of work and priority
            broker.delete(name)
    lat = result["latencies"]
    total = sum(len(v) for v in lat.values())
    print(
        f"{args.clients} clients for {result['elapsed']:.0f} s on loopback, while a scoring "
        f"job ran ({still['status']}, {still['progress']['done']}/{still['progress']['total']})"
    )
    print(
        f"{total} requests, {total / result['elapsed']:.0f} requests/s, "
        f"{len(result['errors'])} errors"
    )
    for kind, values in lat.items():
        print(
            f"  {kind:17} {len(values):6d}  p50 {percentile(values, 50) * 1000:6.1f} ms  "
            f"p99 {percentile(values, 99) * 1000:6.1f} ms"
        )
    created, listed = result["created"], result["listed"]
    lost = set(created) - set(listed)
    duplicated = len(listed) - len(set(listed))
    print(
        f"selections created {len(created)}, listed {len(listed)}, lost {len(lost)}, "
        f"duplicated {duplicated}"
    )
    for err in result["errors"][:5]:
        print("  error:", err)
    if result["errors"] or lost or duplicated or len(listed) != len(created):
        sys.exit(1)


if __name__ == "__main__":
    main()
