"""Dataset queries; every one is scoped to a tenant."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Dataset


def get(session: Session, tenant_id: uuid.UUID, dataset_id: uuid.UUID) -> Dataset | None:
    return session.scalar(
        select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id)
    )


def list_page(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Dataset], int]:
    query = select(Dataset).where(Dataset.tenant_id == tenant_id)
    if status:
        query = query.where(Dataset.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Dataset.created_at.desc(), Dataset.id).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def pending_index(session: Session, limit: int = 10) -> list[uuid.UUID]:
    """Datasets waiting for the worker to index them (any tenant), oldest first."""
    return list(
        session.scalars(
            select(Dataset.id)
            .where(Dataset.status == "indexing")
            .order_by(Dataset.created_at)
            .limit(limit)
        )
    )
