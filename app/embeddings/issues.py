"""Label issues are computed by a worker, never inside a request: the 5-fold cross-validated probe
behind them takes seconds to minutes on 100,000 samples.

One run per score set (``LabelIssueRun``; jobs with the same scores share it):

- the first ``GET /v1/jobs/{id}/label-issues`` (or a selection with ``exclude_suspected``) queues
  a run, a task on the "evaluate" queue (``worker.evaluate.run_label_issues``; the embedded worker
  polls for queued runs), and the GET answers 202 with ``Location`` and ``Retry-After``;
- the worker computes each sample's self-confidence (``dlcprune.core.evaluation``) and writes it
  beside the embeddings (``<embeddings key>/self_confidence.npy``); from then on the GET answers
  200 from it, whatever ``share``, ``threshold`` or page is asked;
- a failed run answers its problem document: a failure of the data (422, e.g.
  ``invalid_dataset``) stays, since the computation is deterministic; a run that did not finish
  (an unexpected error, a lost worker: 500 ``label_issues_failed``) is queued again by the request
  that reports it.

The reaper queues a run whose worker died (stale heartbeat) again, like an evaluation's.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import claims, queue
from app.blobstore import BlobStore
from app.errors import APIError
from app.models import JobStatus, LabelIssueRun, ScoreSet, utcnow
from dlcprune.core import embeddings as emb
from dlcprune.core.evaluation import self_confidence

SELF_CONFIDENCE_FILE = "self_confidence.npy"
SELF_CONFIDENCE_FOLDS = 5
# The code of a run that did not finish (answered 500 and queued again).
FAILED = "label_issues_failed"


def result_key(embeddings_key: str) -> str:
    return f"{embeddings_key}/{SELF_CONFIDENCE_FILE}"


def compute(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each sample's self-confidence (float32, (N,)): the out-of-fold probability of its given
    label from a 5-fold cross-validated logistic probe on the embeddings (seed 0)."""
    return self_confidence(features, labels, folds=SELF_CONFIDENCE_FOLDS, seed=0)


def stored(blobs: BlobStore, embeddings_key: str) -> np.ndarray | None:
    """The computed self-confidence, or None while there is none."""
    name = result_key(embeddings_key)
    return emb.from_npy(blobs.get_bytes(name)) if blobs.exists(name) else None


def request(session: Session, blobs: BlobStore, score_set: ScoreSet) -> LabelIssueRun:
    """The score set's run, queued (and sent) when there is none yet: a queued or running one,
    a failed one (for its problem document), or, when its result is there, a succeeded one."""
    row = session.get(LabelIssueRun, score_set.id, populate_existing=True)
    if row is None:
        row = LabelIssueRun(score_set_id=score_set.id, tenant_id=score_set.tenant_id)
        session.add(row)
        try:
            session.commit()
        except IntegrityError:  # a simultaneous request made it first
            session.rollback()
            row = session.get(LabelIssueRun, score_set.id, populate_existing=True)
            assert row is not None
            return row
        dispatch(session, score_set.id)
    elif row.status == JobStatus.succeeded and not blobs.exists(
        result_key(score_set.embeddings_key or "")
    ):
        _requeue(session, row)  # succeeded, yet its result is gone: computed again
    return row


def problem(row: LabelIssueRun, job_id: uuid.UUID) -> APIError:
    """A failed run as its problem document."""
    status = row.error_status or 500
    code = row.error_code or FAILED
    message = f"label issues of job {job_id} failed: {row.error_message or code}"
    if status >= 500:
        message += "; asking again computes them again"
    return APIError(status, code, message)


def retry_failed(session: Session, row: LabelIssueRun) -> None:
    """A run that did not finish (5xx) is queued again once its failure was reported."""
    if row.status == JobStatus.failed and (row.error_status or 500) >= 500:
        _requeue(session, row)


def _requeue(session: Session, row: LabelIssueRun) -> None:
    row.status = JobStatus.queued
    row.error_status = row.error_code = row.error_message = None
    row.finished_at = None
    session.commit()
    dispatch(session, row.score_set_id)


def dispatch(session: Session, score_set_id: uuid.UUID) -> bool:
    """Hand the committed run to the broker and note it (the reaper sends it again if not)."""
    if not queue.enqueue_label_issues(score_set_id):
        return False
    session.execute(
        update(LabelIssueRun)
        .where(LabelIssueRun.score_set_id == score_set_id)
        .values(enqueued_at=utcnow(), enqueues=LabelIssueRun.enqueues + 1)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return True


# The worker's side ---------------------------------------------------------------------------


def claim(
    session: Session, score_set_id: uuid.UUID, worker: str, stale_after: timedelta
) -> LabelIssueRun | None:
    """Take a run (one conditional UPDATE, ``app.claims``: two deliveries cannot both win)."""
    if not claims.claim(session, LabelIssueRun, score_set_id, worker, stale_after):
        return None
    return session.get(LabelIssueRun, score_set_id, populate_existing=True)


def beat(session: Session, score_set_id: uuid.UUID) -> None:
    claims.beat(session, LabelIssueRun, score_set_id)


def succeed(session: Session, score_set_id: uuid.UUID) -> None:
    _end(session, score_set_id, JobStatus.succeeded)


def fail(session: Session, score_set_id: uuid.UUID, status: int, code: str, message: str) -> None:
    _end(session, score_set_id, JobStatus.failed, status, code[:64], message[:4000])


def _end(
    session: Session,
    score_set_id: uuid.UUID,
    status: JobStatus,
    error_status: int | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
) -> None:
    session.execute(
        update(LabelIssueRun)
        .where(
            LabelIssueRun.score_set_id == score_set_id, LabelIssueRun.status == JobStatus.running
        )
        .values(
            status=status,
            error_status=error_status,
            error_code=error_code,
            error_message=error_message,
            finished_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()


def next_queued(session: Session) -> uuid.UUID | None:
    """The oldest queued run (the embedded worker's poll)."""
    return session.scalar(
        select(LabelIssueRun.score_set_id)
        .where(LabelIssueRun.status == JobStatus.queued)
        .order_by(LabelIssueRun.created_at)
        .limit(1)
    )
