"""Faults against the real services, started and stopped by the tests themselves.

Each test runs ``dlcprune serve`` and ``dlcprune worker`` processes with short heartbeats
(0.5 s), a short stale threshold (3 s) and a reaper every second, so that recovery takes seconds.
"""

from __future__ import annotations

import csv
import io
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import _purge_queue, make_key
from tests.problems import problem
from tests.reliability.conftest import PrivatePostgres, PrivateRedis, Stack
from tests.service.data import write_image_zip

pytestmark = pytest.mark.slow

PARAMS = {"image_size": 48, "levels": 30}


def fast_recovery_env(service_env: dict[str, str], **overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        **service_env,
        "DLCPRUNE_TASK_QUEUE": f"dlcprune_faults_{uuid.uuid4().hex[:8]}",
        "DLCPRUNE_HEARTBEAT_SECONDS": "0.5",
        "DLCPRUNE_STALE_AFTER_SECONDS": "3",
        "DLCPRUNE_REAPER_SECONDS": "1",
        "DLCPRUNE_REDELIVER_AFTER_SECONDS": "3",
        "DLCPRUNE_MAX_ATTEMPTS": "5",
        **overrides,
    }


@pytest.fixture
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_zip(tmp_path_factory.mktemp("data") / "colours.zip", per_class=20)


@pytest.fixture
def undisturbed(archive: Path) -> np.ndarray:
    """The scores of an undisturbed run, computed here with the worker's batch size."""
    from dlcprune.core.formats import open_dataset
    from dlcprune.core.params import DLCParams
    from worker.scoring.backbones import load_backbone
    from worker.scoring.dlc import score

    with open_dataset(archive) as ds:
        return score(
            ds, load_backbone("efficientnet_lite0"), DLCParams(batch_size=64, **PARAMS)
        ).scores


def wait(client: httpx.Client, url: str, cond, timeout: float = 180) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            last = client.get(url).json()
            if cond(last):
                return last
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url}: condition not met; last {last}")


def served_scores(client: httpx.Client, job: dict) -> np.ndarray:
    rows = list(
        csv.reader(io.StringIO(client.get(f"{job['url']}/scores", params={"format": "csv"}).text))
    )[1:]
    return np.array([float(r[2]) for r in rows], dtype=np.float32)


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    stacks: list[Stack] = []

    def make(env: dict[str, str]) -> Stack:
        stack = Stack(env, tmp_path)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()
        _purge_queue(stack.env["DLCPRUNE_TASK_QUEUE"])


def start_job(client: httpx.Client, archive: Path) -> dict:
    ds = client.post("/v1/datasets", files={"file": (archive.name, archive.read_bytes())})
    assert ds.status_code == 201, ds.text
    job = client.post("/v1/jobs", json={"dataset_id": ds.json()["id"], "params": PARAMS})
    assert job.status_code == 202, job.text
    return job.json()


def test_sigkill_the_worker_mid_job_three_times(
    service_env: dict[str, str],
    archive: Path,
    undisturbed: np.ndarray,
    stack_factory,  # type: ignore[no-untyped-def]
) -> None:
    stack = stack_factory(fast_recovery_env(service_env))
    stack.start_api()
    worker = stack.start_worker()
    key = make_key("faults-kill")
    with httpx.Client(base_url=stack.url, headers={"X-API-Key": key}, timeout=30) as client:
        job = start_job(client, archive)
        for kill in range(1, 4):
            wait(
                client,
                job["url"],
                lambda j, k=kill: (
                    j["status"] == "running" and j["attempts"] == k and j["progress"]["done"] > 0
                ),
            )
            worker.kill()  # SIGKILL: no cleanup in the worker
            worker.wait()
            worker = stack.start_worker()
        done = wait(client, job["url"], lambda j: j["status"] in ("succeeded", "failed"))
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 4
        assert np.array_equal(served_scores(client, done), undisturbed)
    from sqlalchemy import func, select

    from app.db import session_factory
    from app.models import ScoreSet

    with session_factory()() as session:
        sets = session.scalar(
            select(func.count()).where(ScoreSet.dataset_id == uuid.UUID(done["dataset_id"]))
        )
    assert sets == 1  # written exactly once


def test_a_redis_restart_loses_no_job(
    service_env: dict[str, str],
    archive: Path,
    private_redis: PrivateRedis,
    stack_factory,  # type: ignore[no-untyped-def]
) -> None:
    stack = stack_factory(fast_recovery_env(service_env, DLCPRUNE_BROKER_URL=private_redis.url))
    stack.start_api()
    stack.start_worker()
    key = make_key("faults-redis")
    with httpx.Client(base_url=stack.url, headers={"X-API-Key": key}, timeout=30) as client:
        jobs = [start_job(client, archive)]
        jobs += [
            client.post(
                "/v1/jobs",
                json={"dataset_id": jobs[0]["dataset_id"], "params": {**PARAMS, "levels": levels}},
            ).json()
            for levels in (8, 9)
        ]
        wait(client, jobs[0]["url"], lambda j: j["status"] == "running" and j["progress"]["done"])
        private_redis.kill()  # the queued jobs' messages are gone with it
        wait(client, "/readyz", lambda r: r.get("checks", {}).get("broker", "ok") != "ok", 30)
        time.sleep(2)
        private_redis.start()
        wait(client, "/readyz", lambda r: r.get("status") == "ready", 60)
        for job in jobs:
            done = wait(client, job["url"], lambda j: j["status"] in ("succeeded", "failed"))
            assert done["status"] == "succeeded", done


def test_a_postgres_restart_mid_job(
    service_env: dict[str, str],
    archive: Path,
    private_postgres: PrivatePostgres,
    undisturbed: np.ndarray,
    stack_factory,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    env = fast_recovery_env(service_env, DLCPRUNE_DATABASE_URL=private_postgres.url)
    stack = stack_factory(env)
    stack.start_api()  # migrates the new database
    stack.start_worker()
    # An API key in the private database.
    monkeypatch.setenv("DLCPRUNE_DATABASE_URL", private_postgres.url)
    from tests.conftest import _reset_caches

    _reset_caches()
    try:
        key = make_key("faults-pg")
    finally:
        monkeypatch.setenv("DLCPRUNE_DATABASE_URL", service_env["DLCPRUNE_DATABASE_URL"])
        _reset_caches()
    with httpx.Client(base_url=stack.url, headers={"X-API-Key": key}, timeout=30) as client:
        job = start_job(client, archive)
        wait(client, job["url"], lambda j: j["status"] == "running" and j["progress"]["done"])
        private_postgres.stop()
        down = client.get("/readyz")
        assert down.status_code == 503 and problem(down)["code"] == "unavailable"
        assert down.json()["checks"]["database"] != "ok"
        time.sleep(3)
        private_postgres.start()
        wait(client, "/readyz", lambda r: r.get("status") == "ready", 60)  # no API restart
        done = wait(client, job["url"], lambda j: j["status"] in ("succeeded", "failed"))
        assert done["status"] == "succeeded", done
        assert np.array_equal(served_scores(client, done), undisturbed)
    assert "transient error" in stack.log_text()


def test_a_poison_job_fails_after_its_attempts(
    service_env: dict[str, str],
    archive: Path,
    stack_factory,  # type: ignore[no-untyped-def]
) -> None:
    env = fast_recovery_env(service_env, DLCPRUNE_MAX_ATTEMPTS="3")
    stack = stack_factory(env)
    stack.start_api()
    poison = {"DLCPRUNE_FAULT_EXIT_AT_STAGE": "level 2/30"}
    worker = stack.start_worker(poison)
    restarts = 0
    key = make_key("faults-poison")
    with httpx.Client(base_url=stack.url, headers={"X-API-Key": key}, timeout=30) as client:
        job = start_job(client, archive)
        deadline = time.monotonic() + 240
        while True:
            state = client.get(job["url"]).json()
            if state["status"] in ("failed", "succeeded"):
                break
            assert time.monotonic() < deadline, state
            if worker.poll() is not None:  # the job killed it: a supervisor restarts it
                restarts += 1
                worker = stack.start_worker(poison)
            time.sleep(0.2)
    assert state["status"] == "failed"
    assert state["error"]["code"] == "worker_lost" and "poison" in state["error"]["message"]
    assert state["attempts"] == 3 and restarts == 3
