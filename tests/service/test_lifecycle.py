"""Job state transitions on PostgreSQL: claims are exclusive, stale jobs are requeued, late or
repeated deliveries change nothing.

These tests run the reaper by hand, so they use a database of their own: the session's database
may have a real worker whose own reaper holds the reaper's advisory lock (a round by hand would
then do nothing) or requeues these jobs first."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import numpy as np
import psycopg
import pytest
from sqlalchemy import update

from app.auth import get_or_create_tenant
from app.config import Settings
from app.db import dispose_engines, migrate
from app.db import session_factory as _session_factory
from app.jobs import service as jobs
from app.models import Dataset, Job, JobStatus, ScoreSet, utcnow
from worker.reaper import reap as _reap

STALE = timedelta(seconds=10)
_OWN: list[Settings] = []


@pytest.fixture(scope="module", autouse=True)
def own_database(service_env: dict[str, str]) -> object:
    from tests.conftest import ADMIN_URL

    name = f"dlcprune_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = service_env["DLCPRUNE_DATABASE_URL"].rsplit("/", 1)[0] + f"/{name}"
    settings = Settings(database_url=url)
    migrate(settings)
    _OWN.append(settings)
    yield settings
    _OWN.clear()
    dispose_engines()
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def session_factory():  # type: ignore[no-untyped-def]
    return _session_factory(_OWN[0])


def reap():  # type: ignore[no-untyped-def]
    return _reap(_OWN[0])


@pytest.fixture
def job_id(service_env: dict[str, str]) -> uuid.UUID:
    with session_factory()() as session:
        tenant = get_or_create_tenant(session, f"lifecycle-{uuid.uuid4().hex[:6]}")
        ds = Dataset(
            tenant_id=tenant.id, source="upload", status="ready", num_samples=3, sha256="0" * 64
        )
        session.add(ds)
        session.flush()
        job = Job(
            tenant_id=tenant.id,
            dataset_id=ds.id,
            model="efficientnet_lite0",
            method="dlc",
            params={},
            cache_key=uuid.uuid4().hex,
        )
        session.add(job)
        session.commit()
        return job.id


def status(job_id: uuid.UUID) -> Job:
    with session_factory()() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def test_only_one_of_many_racing_workers_claims_a_job(job_id: uuid.UUID) -> None:
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def worker(name: str) -> None:
        with session_factory()() as session:
            barrier.wait()
            if jobs.claim(session, job_id, name, STALE) is not None:
                wins.append(name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    job = status(job_id)
    assert job.status == JobStatus.running and job.attempts == 1 and job.worker == wins[0]


def test_a_running_job_with_a_fresh_heartbeat_is_not_taken_or_requeued(job_id: uuid.UUID) -> None:
    with session_factory()() as session:
        assert jobs.claim(session, job_id, "first", STALE) is not None
        assert jobs.claim(session, job_id, "second", STALE) is None
    reap()
    job = status(job_id)
    assert (job.status, job.worker) == (JobStatus.running, "first")


def _age(job_id: uuid.UUID, **values: object) -> None:
    with session_factory()() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))
        session.commit()


def test_a_stale_job_is_requeued_resent_and_claimed_again(job_id: uuid.UUID) -> None:
    with session_factory()() as session:
        jobs.claim(session, job_id, "dead", STALE)
    _age(job_id, heartbeat_at=utcnow() - timedelta(minutes=5))
    reap()
    job = status(job_id)
    assert job.status == JobStatus.queued and job.enqueues == 1 and job.enqueued_at
    with session_factory()() as session:
        assert jobs.claim(session, job_id, "alive", STALE) is not None
    job = status(job_id)
    assert (job.status, job.attempts, job.worker) == (JobStatus.running, 2, "alive")


def test_a_job_that_keeps_losing_its_worker_fails(job_id: uuid.UUID) -> None:
    for attempt in range(1, 4):
        with session_factory()() as session:
            assert jobs.claim(session, job_id, f"w{attempt}", STALE) is not None
        _age(job_id, heartbeat_at=utcnow() - timedelta(minutes=5))
        reap()
    job = status(job_id)
    assert (job.status, job.attempts, job.error_code) == (JobStatus.failed, 3, "worker_lost")
    assert "poison" in (job.error_message or "")


def test_a_queued_job_whose_send_was_lost_is_sent_again_with_backoff(job_id: uuid.UUID) -> None:
    # Created 10 s ago and never handed to the broker (the send after the commit failed).
    _age(job_id, created_at=utcnow() - timedelta(seconds=10))
    reap()
    assert status(job_id).enqueues == 1
    reap()  # sent just now: not again
    assert status(job_id).enqueues == 1
    _age(job_id, enqueued_at=utcnow() - timedelta(minutes=10))
    reap()
    assert status(job_id).enqueues == 2


def test_cancel_requested_before_the_claim_ends_the_job(job_id: uuid.UUID) -> None:
    with session_factory()() as session:
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
        session.commit()
        assert jobs.claim(session, job_id, "w", STALE) is None
    assert status(job_id).status == JobStatus.cancelled


def test_scores_are_stored_once_even_when_delivered_twice(job_id: uuid.UUID) -> None:
    scores = np.array([0.5, 1.5, 2.5], dtype=np.float32)
    with session_factory()() as session:
        jobs.claim(session, job_id, "w", STALE)
        first = jobs.store_scores(
            session, job_id, scores=scores, mask_fractions=[0.0], losses_key=None, timings_={}
        )
        again = jobs.store_scores(
            session, job_id, scores=scores * 2, mask_fractions=[0.0], losses_key=None, timings_={}
        )
        assert first is not None and again is not None
        assert first.score_set_id == again.score_set_id
        stored = session.get(ScoreSet, first.score_set_id)
        assert stored is not None
        assert np.array_equal(np.frombuffer(stored.scores, dtype="<f4"), scores)
        # A finished job is not claimed again by a late delivery.
        assert jobs.claim(session, job_id, "late", STALE) is None
    assert status(job_id).status == JobStatus.succeeded


def test_racing_first_requests_create_one_tenant(service_env: dict[str, str]) -> None:
    name = f"race-{uuid.uuid4().hex[:6]}"
    ids: list[uuid.UUID] = []
    barrier = threading.Barrier(6)

    def first_request() -> None:
        with session_factory()() as session:
            barrier.wait()
            ids.append(get_or_create_tenant(session, name).id)
            session.commit()

    threads = [threading.Thread(target=first_request) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 6 and len(set(ids)) == 1
