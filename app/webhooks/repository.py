"""Webhook, delivery and attempt queries."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import pagination
from app.models import Webhook, WebhookAttempt, WebhookDelivery


def get(session: Session, tenant_id: uuid.UUID, webhook_id: uuid.UUID) -> Webhook | None:
    return session.scalar(
        select(Webhook).where(Webhook.id == webhook_id, Webhook.tenant_id == tenant_id)
    )


def count(session: Session, tenant_id: uuid.UUID) -> int:
    return session.scalar(select(func.count()).where(Webhook.tenant_id == tenant_id)) or 0


def list_page(
    session: Session, tenant_id: uuid.UUID, limit: int, offset: int, cursor: str | None = None
) -> tuple[list[Webhook], int, str | None]:
    query = select(Webhook).where(Webhook.tenant_id == tenant_id)
    return pagination.page(session, query, Webhook, limit=limit, offset=offset, cursor=cursor)


def delivery(
    session: Session, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery | None:
    return session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.webhook_id == webhook_id
        )
    )


def deliveries_page(
    session: Session, webhook_id: uuid.UUID, status: str | None, limit: int, offset: int
) -> tuple[list[WebhookDelivery], int]:
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


def attempts(
    session: Session, delivery_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[WebhookAttempt]]:
    """Each delivery's attempts, in order (one query for a page of deliveries)."""
    out: dict[uuid.UUID, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
    if not delivery_ids:
        return out
    rows = session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(delivery_ids))
        .order_by(WebhookAttempt.number)
    ).all()
    for row in rows:
        out[row.delivery_id].append(row)
    return out


def attempt_count(session: Session, delivery_id: uuid.UUID) -> int:
    return (
        session.scalar(select(func.count()).where(WebhookAttempt.delivery_id == delivery_id)) or 0
    )
