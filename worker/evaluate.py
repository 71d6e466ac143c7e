"""Run one evaluation (``app.evaluations``): ids in, state in the database. The same code serves
Celery (the "evaluate" queue) and the embedded worker. A second delivery finds the evaluation
claimed, finished or gone and does nothing; one whose worker died is taken over by the reaper
(its heartbeat goes stale) and run again from the start (the result is deterministic)."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from sqlalchemy import select

from app.blobstore import get_blobstore
from app.config import Settings, get_settings
from app.db import session_factory
from app.embeddings import service as embeddings
from app.evaluations import engine
from app.evaluations import service as evaluations
from app.jobs import repository as jobs_repo
from app.models import Evaluation, Job, JobStatus

log = logging.getLogger("dlcprune.worker")


def run_evaluation(evaluation_id: uuid.UUID | str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    evaluation_id = uuid.UUID(str(evaluation_id))
    factory = session_factory(settings)
    blobs = get_blobstore(settings)
    with factory() as session:
        row = evaluations.claim(
            session, evaluation_id, f"{socket.gethostname()}:{os.getpid()}", settings.stale_after
        )
        if row is None:
            return "skipped"
        request = dict(row.request)
        job = session.get(Job, row.job_id)
        try:
            if job is None:
                raise LookupError(f"job {row.job_id} is gone")
            found = embeddings.features_of(session, blobs, job)
            labels = embeddings.labelled(found)
            features = embeddings.load_features(blobs, found.key)
            assert job.score_set_id is not None
            scores = jobs_repo.load_scores(session, job.score_set_id)
        except Exception as exc:  # the job changed since the evaluation was accepted
            evaluations.fail(
                session, evaluation_id, getattr(exc, "code", "job_unavailable"), str(exc)
            )
            return JobStatus.failed
    last = {"t": 0.0}

    def progress(done: int, total: int) -> bool:
        now = time.monotonic()
        if now - last["t"] < settings.heartbeat_seconds and done < total:
            return False
        last["t"] = now
        with factory() as session:
            return evaluations.report(session, evaluation_id, done, total)

    try:
        result = engine.run(
            features, labels, scores, request, progress, threads=settings.evaluation_threads
        )
    except engine.Cancelled:
        with factory() as session:
            evaluations.mark_cancelled(session, evaluation_id)
        return JobStatus.cancelled
    except Exception as exc:
        log.exception("evaluation %s failed", evaluation_id)
        with factory() as session:
            code = getattr(exc, "code", "internal_error")
            evaluations.fail(session, evaluation_id, str(code), f"{type(exc).__name__}: {exc}")
        return JobStatus.failed
    with factory() as session:
        evaluations.succeed(session, evaluation_id, result)
    return JobStatus.succeeded


def next_evaluation(settings: Settings) -> uuid.UUID | None:
    with session_factory(settings)() as session:
        return session.scalar(
            select(Evaluation.id)
            .where(Evaluation.status == JobStatus.queued, Evaluation.cancel_requested.is_(False))
            .order_by(Evaluation.created_at)
            .limit(1)
        )
