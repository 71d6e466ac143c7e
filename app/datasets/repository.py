"""Dataset queries; every one is scoped to a tenant."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import pagination
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
    cursor: str | None = None,
    tags: list[str] | None = None,
    external_id: str | None = None,
) -> tuple[list[Dataset], int, str | None]:
    """(rows, total, next_cursor), newest first (app.pagination)."""
    query = select(Dataset).where(Dataset.tenant_id == tenant_id)
    if status:
        query = query.where(Dataset.status == status)
    if external_id is not None:
        query = query.where(Dataset.external_id == external_id)
    query = pagination.filter_tags(query, Dataset.tags, tags)
    return pagination.page(session, query, Dataset, limit=limit, offset=offset, cursor=cursor)


def same_content(
    session: Session,
    tenant_id: uuid.UUID,
    sha256: str,
    requested_format: str | None,
    columns: dict | None,
) -> Dataset | None:
    """The tenant's oldest upload of these bytes, read the same way, that is not invalid."""
    rows = session.scalars(
        select(Dataset)
        .where(
            Dataset.tenant_id == tenant_id,
            Dataset.sha256 == sha256,
            Dataset.source == "upload",
            Dataset.status != "invalid",
        )
        .order_by(Dataset.created_at)
    ).all()
    for row in rows:
        if row.requested_format == requested_format and (row.columns or None) == (columns or None):
            return row
    return None


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
