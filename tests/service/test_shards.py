"""A dataset above the shard threshold is scored in shards by two real Celery worker processes;
the merged scores equal the unsharded ones exactly, and a shard that fails once is retried."""

from __future__ import annotations

import csv
import io
import os
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from dlcprune.devserver import Process, Service
from tests.conftest import DLCPRUNE, _purge_queue, make_key

pytestmark = pytest.mark.slow


def test_two_workers_score_shards_that_merge_exactly(
    service_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    n = 300
    x = rng.integers(0, 255, size=(n, 16, 16, 3), dtype=np.uint8)
    y = np.arange(n) % 3
    x[y == 1, :, :, 0] = 255  # classes that differ, so losses differ
    x[y == 2, :, :, 2] = 255
    np.savez(tmp_path / "arrays.npz", x=x, y=y)
    queue_name = f"dlcprune_shards_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **service_env,
        "DLCPRUNE_TASK_QUEUE": queue_name,
        "DLCPRUNE_SHARD_THRESHOLD": "100",
        "DLCPRUNE_SHARD_SIZE": "64",
        "DLCPRUNE_PROTOTYPE_GROUP": "32",
        "DLCPRUNE_BATCH_SIZE": "16",
        "DLCPRUNE_FAULT_SHARD_ONCE": "losses:1",
    }
    workers = [
        Process([DLCPRUNE, "worker"], env=env, log=tmp_path / f"worker{i}.log") for i in range(2)
    ]
    api = Service(["--no-embedded-worker"], env=env, log=tmp_path / "api.log")
    try:
        api.wait_ready()
        key = make_key("shards")
        with httpx.Client(base_url=api.url, headers={"X-API-Key": key}, timeout=60) as client:
            ds = client.post(
                "/v1/datasets",
                files={"file": ("arrays.npz", (tmp_path / "arrays.npz").read_bytes())},
            )
            assert ds.status_code == 201, ds.text
            job = client.post(
                "/v1/jobs",
                json={"dataset_id": ds.json()["id"], "params": {"image_size": 32, "levels": 3}},
            ).json()
            deadline = time.monotonic() + 240
            while True:
                state = client.get(job["url"]).json()
                if state["status"] in ("succeeded", "failed", "cancelled"):
                    break
                assert time.monotonic() < deadline, state
                time.sleep(0.3)
            assert state["status"] == "succeeded", state
            assert state["timings"]["shards"] == 5.0
            rows = list(
                csv.reader(
                    io.StringIO(client.get(f"{job['url']}/scores", params={"format": "csv"}).text)
                )
            )[1:]
        served = np.array([float(r[2]) for r in rows], dtype=np.float32)
        logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(2))
        # Both workers took shards, and the failed one was retried.
        assert "injected fault in shard losses:1" in logs
        shard_counts = [
            (tmp_path / f"worker{i}.log").read_text().count("dlcprune.run_shard") for i in range(2)
        ]
        assert all(c > 0 for c in shard_counts), shard_counts
    finally:
        for w in workers:
            w.stop(timeout=30)
        api.stop()
        _purge_queue(queue_name)

    # The same scores, unsharded, in this process.
    from dlcprune.core.formats import open_dataset
    from dlcprune.core.params import DLCParams
    from worker.scoring import dlc
    from worker.scoring.backbones import load_backbone

    monkeypatch.setattr(dlc, "PROTOTYPE_GROUP", 32)
    params = DLCParams(levels=3, image_size=32, batch_size=16)
    with open_dataset(tmp_path / "arrays.npz") as ds:
        whole = dlc.score(ds, load_backbone("efficientnet_lite0"), params).scores
    assert np.array_equal(served, whole)
