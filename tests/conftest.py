"""The service's test rig: a PostgreSQL database of its own, real Redis, real processes.

Its fixtures are registered here, once, for every folder of tests: a folder that imported them
into its own conftest registered a second ``service_env`` (a second database in the same
environment variables), so a key made in one database was used against the other.

- ``pg_url``: a fresh database ``dlcprune_test_<random>`` on 127.0.0.1:5432 (trust auth), dropped
  at the end (override the server with DLCPRUNE_TEST_PG_ADMIN_URL).
- ``service_env``: the environment for the API and workers (PostgreSQL, Redis, a private Celery
  queue, a temporary blob directory, auth on); set in this process too, for the in-process client.
- ``client``: FastAPI's TestClient on that configuration; jobs are run by calling the worker's own
  task function (``worker.runner.run_job``), which the end-to-end tests run in real processes.
- ``live_api``, ``celery_worker``: those real processes, started (and waited for) with
  ``dlcprune.devserver``, the helper the benchmarks and doc generators use too.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from dlcprune.devserver import Process, Service, dlcprune_command, free_port, serve

ADMIN_URL = os.environ.get(
    "DLCPRUNE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("DLCPRUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DLCPRUNE = dlcprune_command()[0]  # the command line tests run (``dlcprune keys create`` ...)

__all__ = ["DLCPRUNE", "Process", "Service", "free_port", "serve"]


def _reset_caches() -> None:
    from app import blobstore, queue
    from app.config import reset_settings
    from app.datasets.indexing import index_cache
    from app.db import dispose_engines

    reset_settings()
    dispose_engines()
    blobstore._stores.clear()
    queue._producers.clear()
    index_cache.clear()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"dlcprune_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    from app.db import dispose_engines

    dispose_engines()
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def service_env(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("service")
    queue_name = f"dlcprune_test_{uuid.uuid4().hex[:8]}"
    env = {
        "DLCPRUNE_DATABASE_URL": pg_url,
        "DLCPRUNE_BROKER_URL": REDIS_URL,
        "DLCPRUNE_TASK_QUEUE": queue_name,
        "DLCPRUNE_DATA_DIR": str(root / "data"),
        "DLCPRUNE_BLOB_URL": str(root / "blobs"),
        "DLCPRUNE_AUTH_ENABLED": "true",
        "DLCPRUNE_HEARTBEAT_SECONDS": "0.5",
        "DLCPRUNE_FILE_ROOTS": str(root / "refs"),
        "DLCPRUNE_MAX_UPLOAD_BYTES": str(4 * 2**20),
        # The shared live workers send no webhooks: the webhook tests send them by hand and
        # count every attempt (tests/service/test_workers.py turns it on for its own workers).
        "DLCPRUNE_WEBHOOK_SENDER": "false",
    }
    (root / "refs").mkdir()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # In this process (the TestClient), jobs go to a queue no worker reads: the tests run them
    # with the worker's task function. The real worker processes get ``env`` and its queue.
    os.environ["DLCPRUNE_TASK_QUEUE"] = f"{queue_name}_inproc"
    _reset_caches()
    from app.db import migrate

    migrate()
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _purge_queue(queue_name)
    _purge_queue(f"{queue_name}_inproc")
    _reset_caches()


def _purge_queue(name: str) -> None:
    """Delete the queues named after the prefix ``name``: one per kind of work and priority
    (``<name>.<kind>``, ``<name>.<kind>:<priority>``)."""
    import redis

    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{name}*"):
            client.delete(key)
        client.close()


@pytest.fixture(scope="session")
def app_client(service_env: dict[str, str]) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app()) as client:
        yield client


def make_key(tenant: str) -> str:
    from app.auth import create_key
    from app.db import session_scope

    with session_scope() as session:
        key, _ = create_key(session, tenant)
    return key


@pytest.fixture(scope="session")
def key_a(service_env: dict[str, str]) -> str:
    return make_key(f"tenant-a-{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="session")
def key_b(service_env: dict[str, str]) -> str:
    return make_key(f"tenant-b-{uuid.uuid4().hex[:6]}")


class Api:
    """A TestClient bound to one API key."""

    def __init__(self, client: TestClient, key: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}

    def request(self, method: str, url: str, **kw):  # type: ignore[no-untyped-def]
        headers = {**self.headers, **kw.pop("headers", {})}
        return self.client.request(method, url, headers=headers, **kw)

    def get(self, url: str, **kw):  # type: ignore[no-untyped-def]
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw):  # type: ignore[no-untyped-def]
        return self.request("POST", url, **kw)

    def delete(self, url: str, **kw):  # type: ignore[no-untyped-def]
        return self.request("DELETE", url, **kw)

    def upload(self, path: Path, *, copy: bool = False, **fields: str):  # type: ignore[no-untyped-def]
        """POST the file; ``copy`` makes a new dataset even when the tenant has these bytes
        (without it the tenant's dataset with the same bytes answers, 200)."""
        url = "/v1/datasets?copy=true" if copy else "/v1/datasets"
        with open(path, "rb") as fh:
            return self.post(url, files={"file": (path.name, fh)}, data=fields)


@pytest.fixture
def api_a(app_client: TestClient, key_a: str) -> Api:
    return Api(app_client, key_a)


@pytest.fixture
def api_b(app_client: TestClient, key_b: str) -> Api:
    return Api(app_client, key_b)


# Real processes ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_api(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``dlcprune serve`` (uvicorn) on a free port, against PostgreSQL and Redis."""
    with serve(
        ["--no-embedded-worker"],
        env={**os.environ, **service_env},
        log=tmp_path_factory.mktemp("logs") / "api.log",
    ) as api:
        yield api.url


@pytest.fixture(scope="session")
def celery_worker(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    """A real ``dlcprune worker`` (Celery, solo pool) consuming the test queue."""
    worker = Process(
        [DLCPRUNE, "worker"],
        env={**os.environ, **service_env},
        log=tmp_path_factory.mktemp("logs") / "worker.log",
    )
    try:
        worker.wait_for_output("ready.", timeout=90)
        yield worker
    finally:
        worker.stop(timeout=30)


def finish(job: dict) -> str:
    """Run a job posted in-process with the worker's own task function, and return its final status.

    All tests of a session share one database, so a job may be answered from the score cache when
    another test scored the same data with the same parameters for the same tenant: it is
    ``succeeded`` when posted and there is nothing to run.
    """
    if job["status"] == "succeeded":
        return "succeeded"
    from worker.runner import run_job

    status = run_job(job["id"])
    if status == "skipped":
        # Another worker of this session claimed it first: the session's Celery worker (the
        # ``celery_worker`` fixture lives until the session ends and consumes the queue the API
        # sends jobs to). Its end is the job's end.
        status = _finished_status(job["id"])
    return str(status)


def _finished_status(job_id: str, timeout: float = 300.0) -> str:
    """The job's status once it is finished (``skipped`` if it is gone)."""
    import uuid as _uuid

    from app.db import session_scope
    from app.models import Job, JobStatus

    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            job = session.get(Job, _uuid.UUID(str(job_id)))
            if job is None:
                return "skipped"
            if JobStatus(job.status).finished:
                return str(job.status)
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.status} after {timeout} s")
        time.sleep(0.2)


def compute_label_issues(job_id: str) -> str:
    """Run the label issues a GET of the job's label issues queued, with the worker's own task
    function (like ``finish`` for jobs); returns the run's final status. The run is keyed by the
    job's score set."""
    import uuid as _uuid

    from app.db import session_scope
    from app.models import Job
    from worker.evaluate import run_label_issues

    with session_scope() as session:
        job = session.get(Job, _uuid.UUID(str(job_id)))
        assert job is not None and job.score_set_id is not None
        score_set_id = job.score_set_id
    return run_label_issues(score_set_id)


def embeddings_key(job_id: str) -> str:
    """Where the job's score set keeps its embeddings (a blob prefix), read from the database."""
    import uuid as _uuid

    from app.db import session_scope
    from app.models import Job, ScoreSet

    with session_scope() as session:
        job = session.get(Job, _uuid.UUID(str(job_id)))
        assert job is not None and job.score_set_id is not None
        score_set = session.get(ScoreSet, job.score_set_id)
        assert score_set is not None and score_set.embeddings_key
        return score_set.embeddings_key
