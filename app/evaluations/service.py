"""Evaluations: rules and state. Created by the API (checked, queued after commit), run by a
worker on the "evaluate" queue (``worker.evaluate``), cancelled like jobs."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import claims, limits, queue
from app.blobstore import BlobStore
from app.config import get_settings
from app.datasets.schemas import ErrorInfo
from app.embeddings import service as embeddings
from app.errors import conflict, not_found, unprocessable
from app.evaluations.engine import PROBE, cells_total
from app.evaluations.schemas import EvaluationCreate, EvaluationRead
from app.jobs import service as jobs
from app.jobs.schemas import ProgressRead
from app.models import Dataset, Evaluation, JobStatus, as_utc, utcnow
from app.webhooks import outbox
from dlcprune.names import SELECTION_STRATEGIES


def create(
    session: Session,
    blobs: BlobStore,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    body: EvaluationCreate,
) -> Evaluation:
    job = jobs.get(session, tenant_id, job_id)
    unknown = [s for s in body.strategies if s not in SELECTION_STRATEGIES]
    if unknown:
        raise unprocessable(
            "unknown_strategy",
            f"unknown strategies {', '.join(map(repr, unknown))}; valid: "
            f"{', '.join(SELECTION_STRATEGIES)}",
        )
    bad = [k for k in body.keep if not 0 < k < 1]
    if bad:
        raise unprocessable("invalid_keep", f"keep ratios must be in (0, 1); out of range: {bad}")
    dataset = session.get(Dataset, job.dataset_id)
    if dataset is not None and (dataset.kind == "instruction" or not dataset.classes):
        raise unprocessable(
            "unlabelled_dataset",
            f"dataset {dataset.id} has no labels ({dataset.kind} data): an evaluation trains a "
            "classifier probe and needs classes",
        )
    found = embeddings.features_of(session, blobs, job)
    embeddings.labelled(found)
    n = len(found.index)
    pool = n - round(n * body.holdout)
    too_small = [k for k in body.keep if round(k * pool) < 1]
    if too_small:
        raise unprocessable(
            "invalid_keep",
            f"keep ratios {too_small} keep no sample of the {pool} left after the held-out "
            f"share ({n} samples, holdout {body.holdout:g})",
        )
    limits.check_active_jobs(session, get_settings(), tenant_id)
    request = body.model_dump(mode="json")
    request["keep"] = sorted(set(request["keep"]))
    row = Evaluation(
        tenant_id=tenant_id,
        job_id=job.id,
        request=request,
        progress_total=cells_total(
            list(dict.fromkeys(["stratified", *body.strategies])), request["keep"], body.seeds
        ),
    )
    session.add(row)
    session.commit()
    dispatch(session, row.id)
    return row


def dispatch(session: Session, evaluation_id: uuid.UUID) -> bool:
    if not queue.enqueue_evaluation(evaluation_id):
        return False
    claims.sent(session, Evaluation, evaluation_id)
    return True


def get(session: Session, tenant_id: uuid.UUID, evaluation_id: uuid.UUID) -> Evaluation:
    row = session.scalar(
        select(Evaluation).where(Evaluation.id == evaluation_id, Evaluation.tenant_id == tenant_id)
    )
    if row is None:
        raise not_found("evaluation", evaluation_id)
    return row


def list_for_job(
    session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[Evaluation], int]:
    jobs.get(session, tenant_id, job_id)
    query = select(Evaluation).where(Evaluation.tenant_id == tenant_id, Evaluation.job_id == job_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Evaluation.created_at.desc(), Evaluation.id).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def cancel(session: Session, tenant_id: uuid.UUID, evaluation_id: uuid.UUID) -> Evaluation:
    """Queued evaluations are cancelled at once; running ones stop after their current probe."""
    row = session.scalar(
        select(Evaluation)
        .where(Evaluation.id == evaluation_id, Evaluation.tenant_id == tenant_id)
        .with_for_update()
    )
    if row is None:
        raise not_found("evaluation", evaluation_id)
    if JobStatus(row.status).finished:
        raise conflict("evaluation_finished", f"evaluation {row.id} has already {row.status}")
    row.cancel_requested = True
    if row.status == JobStatus.queued:
        _finish(session, row, JobStatus.cancelled)
    session.commit()
    return row


# The worker's side ---------------------------------------------------------------------------


def claim(
    session: Session, evaluation_id: uuid.UUID, worker: str, stale_after: timedelta
) -> Evaluation | None:
    """Take an evaluation for running (one conditional UPDATE: two deliveries cannot both win)."""
    if not claims.claim(session, Evaluation, evaluation_id, worker, stale_after, stage="running"):
        return None
    return session.get(Evaluation, evaluation_id, populate_existing=True)


def report(session: Session, evaluation_id: uuid.UUID, done: int, total: int) -> bool:
    """Write progress and the heartbeat; True when a cancel was requested."""
    session.execute(
        update(Evaluation)
        .where(Evaluation.id == evaluation_id)
        .values(progress_done=done, progress_total=total, heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(
        session.scalar(select(Evaluation.cancel_requested).where(Evaluation.id == evaluation_id))
    )


def succeed(session: Session, evaluation_id: uuid.UUID, result: dict[str, Any]) -> None:
    row = session.get(Evaluation, evaluation_id, with_for_update=True, populate_existing=True)
    if row is None or JobStatus(row.status).finished:
        return
    row.result = result
    row.progress_done = row.progress_total
    _finish(session, row, JobStatus.succeeded)
    session.commit()


def fail(session: Session, evaluation_id: uuid.UUID, code: str, message: str) -> None:
    row = session.get(Evaluation, evaluation_id, with_for_update=True, populate_existing=True)
    if row is None or JobStatus(row.status).finished:
        return
    row.error_code = code[:64]
    row.error_message = message[:4000]
    _finish(session, row, JobStatus.failed)
    session.commit()


def mark_cancelled(session: Session, evaluation_id: uuid.UUID) -> None:
    row = session.get(Evaluation, evaluation_id, with_for_update=True, populate_existing=True)
    if row is None or JobStatus(row.status).finished:
        return
    _finish(session, row, JobStatus.cancelled)
    session.commit()


def _finish(session: Session, row: Evaluation, status: JobStatus) -> None:
    row.status = status
    row.stage = str(status)
    row.finished_at = utcnow()
    session.flush()
    if status in (JobStatus.succeeded, JobStatus.failed):
        read = to_read(row, get_settings().base_url)
        outbox.emit(session, row.tenant_id, f"evaluation.{status}", read.model_dump(mode="json"))


def to_read(row: Evaluation, base_url: str) -> EvaluationRead:
    total = max(row.progress_total, 0)
    done = min(row.progress_done, total) if total else 0
    fraction = 1.0 if row.status == JobStatus.succeeded else (done / total if total else 0.0)
    error = (
        ErrorInfo(code=row.error_code, message=row.error_message or "") if row.error_code else None
    )
    url = f"{base_url}/v1/evaluations/{row.id}"
    return EvaluationRead(
        id=row.id,
        job_id=row.job_id,
        status=row.status,
        request=row.request,
        progress=ProgressRead(done=done, total=total, fraction=fraction, stage=row.stage),
        cancel_requested=bool(row.cancel_requested),
        error=error,
        probe=PROBE,
        result=row.result,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at),
        url=url,
        plot_url=f"{url}/plot.png",
    )
