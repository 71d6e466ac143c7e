"""Job and score-set queries."""

from __future__ import annotations

import uuid

import numpy as np
from sqlalchemy import case, select
from sqlalchemy.orm import Session

from app import pagination
from app.models import Job, JobStatus, ScoreSet
from dlcprune.names import PRIORITIES


def get(session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
    return session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))


def by_idempotency_key(session: Session, tenant_id: uuid.UUID, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))


def list_page(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    status: str | None,
    dataset_id: uuid.UUID | None,
    limit: int,
    offset: int,
    cursor: str | None = None,
    tags: list[str] | None = None,
    external_id: str | None = None,
) -> tuple[list[Job], int, str | None]:
    """(rows, total, next_cursor), newest first (app.pagination)."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if status:
        query = query.where(Job.status == status)
    if dataset_id:
        query = query.where(Job.dataset_id == dataset_id)
    if external_id is not None:
        query = query.where(Job.external_id == external_id)
    query = pagination.filter_tags(query, Job.tags, tags)
    return pagination.page(session, query, Job, limit=limit, offset=offset, cursor=cursor)


def score_set_by_key(session: Session, tenant_id: uuid.UUID, cache_key: str) -> ScoreSet | None:
    return session.scalar(
        select(ScoreSet).where(ScoreSet.tenant_id == tenant_id, ScoreSet.cache_key == cache_key)
    )


def load_scores(session: Session, score_set_id: uuid.UUID) -> np.ndarray:
    """(N,) float32 scores in dataset order: one row, one read."""
    raw = session.scalar(select(ScoreSet.scores).where(ScoreSet.id == score_set_id))
    if raw is None:
        raise LookupError(f"score set {score_set_id} not found")
    return np.frombuffer(raw, dtype="<f4")


def load_tokens(session: Session, score_set_id: uuid.UUID) -> np.ndarray | None:
    """(N,) int32 response tokens per sample (instruction scores), or None."""
    raw = session.scalar(select(ScoreSet.tokens).where(ScoreSet.id == score_set_id))
    return None if raw is None else np.frombuffer(raw, dtype="<i4")


def next_queued(session: Session) -> Job | None:
    """The oldest queued job of the highest priority, of any tenant (the embedded worker's
    poll)."""
    rank = case({name: i for i, name in enumerate(PRIORITIES)}, value=Job.priority, else_=1)
    return session.scalar(
        select(Job)
        .where(Job.status == JobStatus.queued)
        .order_by(rank, Job.created_at, Job.id)
        .limit(1)
    )


def running_ids(session: Session) -> list[uuid.UUID]:
    return list(session.scalars(select(Job.id).where(Job.status == JobStatus.running)))
