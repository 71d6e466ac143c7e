"""The reaper: nothing queued is lost, nothing running is stuck, no poison job loops forever.

Run every ``DLCPRUNE_REAPER_SECONDS`` by a thread in each worker process (Celery) and in the
embedded worker's loop. Each round:

- a running job whose heartbeat is older than ``stale_after`` lost its worker (killed, out of
  memory, machine gone): it is queued and sent again, unless it already had ``max_attempts``
  attempts, in which case it fails with ``worker_lost`` (a job that kills its worker every time);
- a queued job not taken within ``redeliver_after_seconds`` of its last send (the broker lost the
  message, or the send after the commit failed) is sent again, waiting twice as long each time;
- a running shard whose heartbeat is stale is queued and sent again (or fails its job after
  ``shard_attempts``); a sharded job whose phase is complete but was not advanced is advanced;
- evaluations and store exports likewise (``app.claims``): a running one with a stale heartbeat
  is queued and sent again, or fails with ``worker_lost`` after ``max_attempts`` (cancelled, when
  a cancel was requested); a queued one the broker never got is sent again;
- a dataset still indexing after ``redeliver_after_seconds`` gets its indexing task sent again;
- a worker's presence row (``worker.presence``) not refreshed for an hour is deleted.

Claims are exclusive (one conditional UPDATE), so a repeated send only ever runs once. With
several workers, PostgreSQL's advisory lock lets one reaper work per round.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from app import claims, idempotency, queue
from app.config import Settings, get_settings
from app.db import get_engine, session_factory
from app.jobs import service as jobs
from app.models import Dataset, Job, JobShard, JobStatus, ShardStatus, WorkerPresence, utcnow

log = logging.getLogger("dlcprune.reaper")

_LOCK_ID = 727275


def reap(settings: Settings | None = None) -> dict[str, int]:
    """One round; returns counts of what it did (for logs and tests)."""
    settings = settings or get_settings()
    counts = {"requeued": 0, "failed": 0, "resent": 0, "shards": 0, "advanced": 0, "indexing": 0}
    postgres = not settings.is_sqlite
    # The advisory lock lives on its own connection: the session below commits often, and a
    # session-level lock must be released on the connection that took it.
    with get_engine(settings).connect() as lock:
        if (
            postgres
            and not lock.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_ID}).scalar()
        ):
            return counts
        try:
            with session_factory(settings)() as session:
                _stale_jobs(session, settings, counts)
                _stale_evaluations(session, settings, counts)
                _stale_exports(session, settings, counts)
                _stale_label_issues(session, settings, counts)
                if not settings.embedded_worker:
                    _stale_shards(session, settings, counts)
                    _unsent_jobs(session, settings, counts)
                    _unindexed(session, settings, counts)
                    _gone_workers(session)
                # Expired Idempotency-Keys are forgotten (a request also ignores an expired one).
                expired = idempotency.purge_expired(session)
                if expired:
                    counts["idempotency_keys_expired"] = expired
        finally:
            if postgres:
                lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_ID})
                lock.commit()
    if any(counts.values()):
        log.info("reaper: %s", counts)
    return counts


def _stale_jobs(session: Session, settings: Settings, counts: dict[str, int]) -> None:
    cutoff = utcnow() - settings.stale_after
    stale = session.scalars(
        select(Job).where(
            Job.status == JobStatus.running,
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff),
        )
    ).all()
    for job in stale:
        sharded = session.scalar(select(func.count()).where(JobShard.job_id == job.id))
        if sharded:
            continue  # its shards are reaped one by one
        if job.attempts >= settings.max_attempts:
            jobs.mark_failed(
                session,
                job.id,
                "worker_lost",
                f"the worker running this job was lost {job.attempts} times (it may kill its "
                "worker: a poison job); not retried again",
            )
            counts["failed"] += 1
            continue
        taken = session.execute(
            update(Job)
            .where(
                Job.id == job.id,
                Job.status == JobStatus.running,
                or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff),
            )
            .values(status=JobStatus.queued, stage="queued (worker lost)")
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        if taken:
            counts["requeued"] += 1
            if not settings.embedded_worker:
                jobs.dispatch(session, job.id)


def _stale_evaluations(session: Session, settings: Settings, counts: dict[str, int]) -> None:
    """Evaluations whose worker died (stale heartbeat) go back to the queue, or fail after
    ``max_attempts``; queued ones the broker never got are sent again."""
    from app.evaluations import service as evaluations
    from app.models import Evaluation

    _stale_work(
        session, settings, counts, Evaluation, "evaluation",
        fail=evaluations.fail, cancel=evaluations.mark_cancelled,
        dispatch=evaluations.dispatch, requeued={"stage": "requeued"},
    )  # fmt: skip


def _stale_exports(session: Session, settings: Settings, counts: dict[str, int]) -> None:
    """Store exports whose worker died (stale heartbeat) go back to the queue, or fail with
    ``worker_lost`` after ``max_attempts``; queued ones the broker never got are sent again."""
    from app.exports import service as exports
    from app.models import StoreExport

    _stale_work(
        session, settings, counts, StoreExport, "export",
        fail=exports.fail, cancel=exports.mark_cancelled, dispatch=exports.dispatch,
    )  # fmt: skip


def _stale_work(
    session: Session,
    settings: Settings,
    counts: dict[str, int],
    model: Any,
    what: str,
    *,
    fail: Callable[[Session, uuid.UUID, str, str], None],
    cancel: Callable[[Session, uuid.UUID], None] | None,
    dispatch: Callable[[Session, uuid.UUID], bool],
    requeued: dict[str, Any] | None = None,
) -> None:
    """The reaper's round over one kind of queued work (``app.claims``'s rows, named by their
    primary key): a running row with a stale heartbeat is queued and sent again (cancelled,
    when a cancel was requested of a row that can be cancelled; failed with ``worker_lost``
    after ``max_attempts``); a queued row the broker never got (or lost) is sent again, waiting
    twice as long each time."""
    now = utcnow()
    cutoff = now - settings.stale_after
    stale = session.scalars(
        select(model).where(
            model.status == JobStatus.running,
            or_(model.heartbeat_at.is_(None), model.heartbeat_at < cutoff),
        )
    ).all()
    key = claims.key_of(model).name  # the row's id (a label-issue run's: its score set's)
    cancellable = hasattr(model, "cancel_requested")
    for row in stale:
        ident = getattr(row, key)
        if cancellable and row.cancel_requested and cancel is not None:
            cancel(session, ident)
            continue
        if row.attempts >= settings.max_attempts:
            fail(
                session,
                ident,
                "worker_lost",
                f"the worker running this {what} was lost {row.attempts} times (it may kill "
                "its worker); not retried again",
            )
            counts["failed"] += 1
            continue
        if claims.requeue_stale(session, model, ident, cutoff, **(requeued or {})):
            counts["requeued"] += 1
            if not settings.embedded_worker:
                dispatch(session, ident)
    if settings.embedded_worker:
        return  # the embedded worker polls the database for queued rows
    queued = [model.status == JobStatus.queued]
    if cancellable:
        queued.append(model.cancel_requested.is_(False))
    for row in session.scalars(select(model).where(*queued)).all():
        if claims.resend_due(row, now, settings.redeliver_after_seconds) and dispatch(
            session, getattr(row, key)
        ):
            counts["resent"] += 1


def _stale_label_issues(session: Session, settings: Settings, counts: dict[str, int]) -> None:
    """Label-issue runs whose worker died go back to the queue (or fail after ``max_attempts``);
    queued ones the broker never got are sent again."""
    from app.embeddings import issues
    from app.models import LabelIssueRun

    _stale_work(
        session,
        settings,
        counts,
        LabelIssueRun,
        "label-issue run",
        fail=lambda s, ident, code, message: issues.fail(s, ident, 500, code, message),
        cancel=None,
        dispatch=issues.dispatch,
    )


def _unsent_jobs(session: Session, settings: Settings, counts: dict[str, int]) -> None:
    now = utcnow()
    queued = session.scalars(select(Job).where(Job.status == JobStatus.queued)).all()
    for job in queued:
        if claims.resend_due(job, now, settings.redeliver_after_seconds) and jobs.dispatch(
            session, job.id
        ):
            counts["resent"] += 1


def _stale_shards(session: Session, settings: Settings, counts: dict[str, int]) -> None:
    from worker import shards

    cutoff = utcnow() - settings.stale_after
    stale = session.scalars(
        select(JobShard)
        .join(Job, Job.id == JobShard.job_id)
        .where(
            Job.status == JobStatus.running,
            or_(
                and_(
                    JobShard.status == ShardStatus.running,
                    or_(JobShard.heartbeat_at.is_(None), JobShard.heartbeat_at < cutoff),
                ),
                and_(JobShard.status == ShardStatus.queued, Job.heartbeat_at < cutoff),
            ),
        )
    ).all()
    for shard in stale:
        if shard.status == ShardStatus.running and shard.attempts >= settings.shard_attempts:
            jobs.mark_failed(
                session,
                shard.job_id,
                "worker_lost",
                f"shard {shard.phase}:{shard.index} lost its worker {shard.attempts} times",
            )
            counts["failed"] += 1
            continue
        session.execute(
            update(JobShard)
            .where(
                JobShard.id == shard.id,
                JobShard.status.in_([ShardStatus.running, ShardStatus.queued]),
            )
            .values(status=ShardStatus.queued)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        queue.send(queue.RUN_SHARD, shard.id, settings)
        counts["shards"] += 1
    # A phase whose shards are all done but that nobody advanced (its last worker died between
    # writing its result and advancing).
    running = session.scalars(
        select(Job.id).where(
            Job.status == JobStatus.running,
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff),
        )
    ).all()
    for job_id in running:
        rows = session.execute(
            select(JobShard.phase, JobShard.status).where(JobShard.job_id == job_id)
        ).all()
        # The latest phase present decides: losses once they exist, else prototypes.
        for phase in (shards.LOSSES, shards.PROTOTYPES):
            statuses = [status for p, status in rows if p == phase]
            if statuses:
                if all(status == ShardStatus.done for status in statuses):
                    shards._advance(job_id, phase, settings)
                    counts["advanced"] += 1
                break


def _unindexed(session: Session, settings: Settings, counts: dict[str, int]) -> None:
    cutoff = utcnow() - timedelta(seconds=settings.redeliver_after_seconds)
    waiting = session.scalars(
        select(Dataset.id).where(Dataset.status == "indexing", Dataset.updated_at < cutoff)
    ).all()
    for dataset_id in waiting:
        session.execute(update(Dataset).where(Dataset.id == dataset_id).values(updated_at=utcnow()))
        session.commit()
        if queue.enqueue_index(dataset_id):
            counts["indexing"] += 1


def _gone_workers(session: Session) -> None:
    session.execute(
        delete(WorkerPresence).where(WorkerPresence.seen_at < utcnow() - timedelta(hours=1))
    )
    session.commit()


class ReaperThread(threading.Thread):
    """Runs ``reap`` every ``reaper_seconds`` until stopped; errors are logged, never fatal."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(name="dlcprune-reaper", daemon=True)
        self.settings = settings or get_settings()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.settings.reaper_seconds):
            try:
                reap(self.settings)
            except Exception as exc:  # the database may be down; the next round retries
                log.warning("reaper round failed: %s", exc)

    def stop(self) -> None:
        self.halt.set()
