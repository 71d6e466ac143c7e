"""Work routed to the right workers, measured with two real Celery workers on real Redis: a GPU
worker (``--kind gpu``: the scoring queues) busy with a long scoring job does not delay the
indexing of a new upload, which the CPU worker (``--kind cpu``) takes from its own queue at once;
queued jobs of a higher priority run first; ``/metrics`` shows both workers and the busy one;
and the webhook of the finished job is sent by the CPU worker (the GPU worker sends none)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.auth import create_key
from app.config import Settings
from app.db import dispose_engines, migrate, session_scope
from dlcprune.devserver import Process, Service
from tests.conftest import ADMIN_URL, DLCPRUNE, _purge_queue
from tests.service.receiver import receiver

pytestmark = pytest.mark.slow

LONG = {"image_size": 32, "levels": 12}  # about 30 s on a shared 2-core machine


def _npz(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 255, size=(n, 16, 16, 3), dtype=np.uint8)
    y = np.arange(n) % 2
    x[y == 1, :, :, 0] = 255
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture
def own_database(service_env: dict[str, str]) -> Iterator[Settings]:
    """A database of this test's own: ``/metrics/backlog`` counts every queued job in the
    database, and the session's database holds jobs other test files queued and left (the
    in-process client sends them to a queue no worker reads), which would count here and which
    this API's reaper would send again onto this test's queues."""
    name = f"dlcprune_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    server = service_env["DLCPRUNE_DATABASE_URL"].rsplit("/", 1)[0]
    settings = Settings(database_url=f"{server}/{name}")
    migrate(settings)
    yield settings
    dispose_engines()
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _until(predicate, timeout: float, what: str, step: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(step)


def _metrics(client: httpx.Client) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def test_a_long_scoring_job_does_not_delay_indexing_on_its_own_queue(
    service_env: dict[str, str], own_database: Settings, tmp_path: Path
) -> None:
    prefix = f"dlcprune_kinds_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **service_env,
        "DLCPRUNE_DATABASE_URL": own_database.database_url,
        "DLCPRUNE_TASK_QUEUE": prefix,
        "DLCPRUNE_INDEX_SYNC_MAX_BYTES": "0",  # every upload is indexed by a worker
        "DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "DLCPRUNE_WEBHOOK_POLL_SECONDS": "0.2",
        "DLCPRUNE_WEBHOOK_SENDER": "true",
    }
    first = _npz(tmp_path / "first.npz", 128, 1)
    second = _npz(tmp_path / "second.npz", 64, 2)
    gpu = Process([DLCPRUNE, "worker", "--kind", "gpu"], env=env, log=tmp_path / "gpu.log")
    cpu = Process([DLCPRUNE, "worker", "--kind", "cpu"], env=env, log=tmp_path / "cpu.log")
    api = Service(["--no-embedded-worker"], env=env, log=tmp_path / "api.log")
    try:
        with receiver() as rx:
            gpu.wait_for_output("ready.", timeout=120)
            cpu.wait_for_output("ready.", timeout=120)
            api.wait_ready()
            with session_scope(own_database) as session:
                key, _ = create_key(session, f"kinds-{uuid.uuid4().hex[:6]}")
            with httpx.Client(base_url=api.url, headers={"X-API-Key": key}, timeout=60) as c:
                hook = c.post("/v1/webhooks", json={"url": rx.url, "events": ["job.succeeded"]})
                assert hook.status_code == 201, hook.text

                def upload(path: Path) -> dict:
                    resp = c.post("/v1/datasets", files={"file": (path.name, path.read_bytes())})
                    assert resp.status_code == 202, resp.text
                    return resp.json()

                def ready(ds: dict):  # type: ignore[no-untyped-def]
                    got = c.get(ds["url"]).json()
                    return got if got["status"] != "indexing" else None

                ds = upload(first)
                assert _until(lambda: ready(ds), 60, "first indexing")["status"] == "ready"
                job = c.post("/v1/jobs", json={"dataset_id": ds["id"], "params": LONG}).json()
                _until(lambda: c.get(job["url"]).json()["status"] == "running", 60, "job start")
                # Three short jobs wait behind it, arriving low, normal, high.
                waiting = [
                    c.post(
                        "/v1/jobs",
                        json={
                            "dataset_id": ds["id"],
                            "params": {"image_size": 32 + i, "levels": 1},
                            "priority": priority,
                        },
                    ).json()
                    for i, priority in enumerate(("low", "normal", "high"))
                ]
                _until(
                    lambda: (
                        _metrics(c).get(
                            (
                                "dlcprune_broker_queue_depth",
                                frozenset({("kind", "score"), ("queue", f"{prefix}.score")}),
                            )
                        )
                        == 3
                    ),
                    10,
                    "three jobs waiting in the score queue",
                )

                # The measurement: an upload indexed while the scoring job runs.
                started = time.monotonic()
                other = upload(second)
                indexed = _until(lambda: ready(other), 30, "second indexing", step=0.05)
                index_s = time.monotonic() - started
                running = c.get(job["url"]).json()
                assert indexed["status"] == "ready" and indexed["num_samples"] == 64
                assert running["status"] == "running", "the scoring job ended before: not measured"

                seen = _metrics(c)
                assert seen[("dlcprune_workers", frozenset({("kind", "gpu")}))] == 1
                assert seen[("dlcprune_workers", frozenset({("kind", "cpu")}))] == 1
                busy = {
                    dict(labels)["kind"]: v
                    for (name, labels), v in seen.items()
                    if name == "dlcprune_worker_busy" and dict(labels)["kind"] in ("gpu", "cpu")
                }
                assert busy == {"gpu": 1.0, "cpu": 0.0}  # (other tests' workers are kind "all")
                # What autoscaling reads: the running job counts, not only the waiting ones.
                backlog = c.get("/metrics/backlog").json()
                assert backlog["score"] == backlog["gpu"] == 4 and backlog["index"] == 0

                jobs = [job, *waiting]
                done = _until(
                    lambda: (
                        all(j["status"] == "succeeded" for j in got) and got
                        if (got := [c.get(j["url"]).json() for j in jobs])
                        else None
                    ),
                    300,
                    "all jobs",
                    step=0.5,
                )
                scoring_s = done[0]["timings"]["run_s"]
                print(f"\nindexing took {index_s:.2f} s while a {scoring_s:.1f} s job ran")
                assert index_s < 10.0 and index_s * 3 < scoring_s
                # Priorities: the waiting jobs ran high, normal, low.
                order = sorted(done[1:], key=lambda j: j["started_at"])
                assert [j["priority"] for j in order] == ["high", "normal", "low"]

                _until(lambda: len(rx.delivered()) >= 4, 30, "the webhooks")
        cpu_log = (tmp_path / "cpu.log").read_text()
        gpu_log = (tmp_path / "gpu.log").read_text()
        assert cpu_log.count("webhook ") >= 4 and "attempt 1: 200" in cpu_log
        ran_job, ran_index = "Task dlcprune.run_job[", "Task dlcprune.index_dataset["
        assert ran_index in cpu_log and ran_job not in cpu_log
        assert ran_job in gpu_log and ran_index not in gpu_log
        assert "webhook " not in gpu_log
    finally:
        for process in (gpu, cpu):
            process.stop(timeout=30)
        api.stop()
        _purge_queue(prefix)
