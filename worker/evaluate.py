"""Run one evaluation (``app.evaluations``) or one score set's label issues
(``app.embeddings.issues``): ids in, state in the database. The same code serves Celery (the
"evaluate" queue) and the embedded worker. A second delivery finds the work claimed, finished or
gone and does nothing; work whose worker died is taken over by the reaper (its heartbeat goes
stale) and run again from the start (the result is deterministic)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from sqlalchemy import select

from app.blobstore import get_blobstore
from app.config import Settings, get_settings
from app.datasets.indexing import load_index
from app.db import session_factory
from app.embeddings import issues
from app.embeddings import service as embeddings
from app.errors import APIError
from app.evaluations import engine
from app.evaluations import service as evaluations
from app.jobs import repository as jobs_repo
from app.models import Dataset, Evaluation, Job, JobStatus, ScoreSet
from dlcprune.core import embeddings as emb
from dlcprune.core.evaluation import EvaluationError

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


def run_label_issues(score_set_id: uuid.UUID | str, settings: Settings | None = None) -> str:
    """Compute a score set's label issues (each sample's self-confidence) and store them beside
    its embeddings; returns the run's final status (or 'skipped')."""
    from threadpoolctl import threadpool_limits

    settings = settings or get_settings()
    score_set_id = uuid.UUID(str(score_set_id))
    factory = session_factory(settings)
    blobs = get_blobstore(settings)
    with factory() as session:
        row = issues.claim(
            session, score_set_id, f"{socket.gethostname()}:{os.getpid()}", settings.stale_after
        )
        if row is None:
            return "skipped"
        score_set = session.get(ScoreSet, score_set_id)
        dataset = session.get(Dataset, score_set.dataset_id) if score_set is not None else None
        key = score_set.embeddings_key if score_set is not None else None
        index_key = dataset.index_key if dataset is not None else None
    try:
        with _Beat(settings, score_set_id):
            if key is None or index_key is None:
                raise APIError(409, "no_embeddings", "the score set has no embeddings any more")
            labels = load_index(blobs, index_key).label_array()
            if labels is None:
                raise APIError(422, "unlabelled_dataset", "the dataset has no labels")
            features = embeddings.load_features(blobs, key)
            # BLAS threads as for evaluations (DLCPRUNE_EVALUATION_THREADS; a shared machine).
            with threadpool_limits(limits=settings.evaluation_threads):
                conf = issues.compute(features, labels)
            blobs.put_bytes(issues.result_key(key), emb.to_npy(conf))
    except (APIError, EvaluationError) as exc:
        status, code = (
            (exc.status, exc.code) if isinstance(exc, APIError) else (422, "invalid_dataset")
        )
        with factory() as session:
            issues.fail(session, score_set_id, status, code, str(exc))
        return JobStatus.failed
    except Exception as exc:
        log.exception("label issues of score set %s failed", score_set_id)
        with factory() as session:
            issues.fail(session, score_set_id, 500, issues.FAILED, f"{type(exc).__name__}: {exc}")
        return JobStatus.failed
    with factory() as session:
        issues.succeed(session, score_set_id)
    return JobStatus.succeeded


class _Beat:
    """The run's heartbeat, from a thread, while the probe (one long call) runs."""

    def __init__(self, settings: Settings, score_set_id: uuid.UUID) -> None:
        self.settings = settings
        self.score_set_id = score_set_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="label-issues-beat", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.settings.heartbeat_seconds):
            try:
                with session_factory(self.settings)() as session:
                    issues.beat(session, self.score_set_id)
            except Exception as exc:  # the next beat retries
                log.warning("label issues %s: heartbeat failed: %s", self.score_set_id, exc)

    def __enter__(self) -> _Beat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def next_label_issues(settings: Settings) -> uuid.UUID | None:
    with session_factory(settings)() as session:
        return issues.next_queued(session)
