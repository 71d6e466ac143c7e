"""``worker.heartbeat.Heartbeat``, the one heartbeat of jobs and shards: it beats for the job and
its shard while the block runs, and its log lines carry the job's context."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import Settings, get_settings
from app.db import session_factory
from app.jobs import service as jobs
from app.logs import ContextFilter, log_context
from app.models import Job, JobShard, ShardStatus
from dlcprune.devserver import free_port
from tests.conftest import Api
from tests.service.data import write_image_zip
from worker.heartbeat import Heartbeat


@pytest.fixture
def running_job(api_a: Api, tmp_path: Path) -> uuid.UUID:
    """A job of tenant A claimed by a (pretend) worker: ``running``, with a heartbeat."""
    ds = api_a.upload(write_image_zip(tmp_path / "hb.zip", per_class=2)).json()
    job = api_a.post("/v1/jobs", json={"dataset_id": ds["id"], "params": {"levels": 2}}).json()
    job_id = uuid.UUID(job["id"])
    settings = get_settings()
    with session_factory(settings)() as session:
        assert jobs.claim(session, job_id, "test-worker", settings.stale_after) is not None
    return job_id


def _beats(job_id: uuid.UUID, shard_id: uuid.UUID) -> tuple[datetime | None, datetime | None]:
    with session_factory(get_settings())() as session:
        job_beat = session.scalar(select(Job.heartbeat_at).where(Job.id == job_id))
        shard_beat = session.scalar(select(JobShard.heartbeat_at).where(JobShard.id == shard_id))
    return job_beat, shard_beat


def test_it_beats_for_the_job_and_its_shard_while_the_block_runs(running_job: uuid.UUID) -> None:
    settings = get_settings()
    with session_factory(settings)() as session:
        shard = JobShard(
            job_id=running_job, phase="prototypes", index=0, start=0, stop=6, status="running"
        )
        session.add(shard)
        session.commit()
        shard_id = shard.id
    job_before, shard_before = _beats(running_job, shard_id)
    assert shard_before is None and job_before is not None
    with Heartbeat(settings, running_job, shard_id=shard_id, interval=0.05):
        time.sleep(0.5)
    job_after, shard_after = _beats(running_job, shard_id)
    assert shard_after is not None and job_after is not None and job_after > job_before
    time.sleep(0.2)
    assert _beats(running_job, shard_id) == (job_after, shard_after)  # stopped with the block
    with session_factory(settings)() as session:
        # A beat changes no state.
        assert session.get(JobShard, shard_id).status == ShardStatus.running


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_its_log_lines_carry_the_jobs_context() -> None:
    """A failed beat (the database away) is logged from the heartbeat's thread with the job and
    shard ids, and with the fields the task bound before it started."""
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none?connect_timeout=1"
    settings = Settings(database_url=dead)
    job_id, shard_id = uuid.uuid4(), uuid.uuid4()
    handler = _Records()
    logger = logging.getLogger("dlcprune.worker")
    logger.addHandler(handler)
    try:
        with (
            log_context(task_name="run_shard"),
            Heartbeat(settings, job_id, shard_id=shard_id, interval=0.05),
        ):
            deadline = time.monotonic() + 20
            while not handler.records and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        logger.removeHandler(handler)
    failed = [r for r in handler.records if "heartbeat failed" in r.getMessage()]
    assert failed, [r.getMessage() for r in handler.records]
    record = failed[0]
    assert record.job_id == str(job_id) and record.shard_id == str(shard_id)  # type: ignore[attr-defined]
    assert record.task_name == "run_shard"  # type: ignore[attr-defined]
    assert record.threadName.startswith("heartbeat-")
