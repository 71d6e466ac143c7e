"""Webhook rules: registering an endpoint (its URL through the SSRF guard, its secret shown
once), listing, deleting, and a delivery's log and replay. Emitting events is
``app.webhooks.outbox.emit``; sending them, ``app.webhooks.delivery``."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import delete as sa_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import APIError, not_found
from app.models import DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery, as_utc, utcnow
from app.webhooks import delivery as sender
from app.webhooks import repository
from app.webhooks.schemas import (
    AttemptRead,
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
)


def create(
    session: Session, settings: Settings, tenant_id: uuid.UUID, body: WebhookCreate
) -> tuple[Webhook, str]:
    """Register an endpoint; returns it and its signing secret (stored to sign, shown once)."""
    sender.check_target(body.url, settings)
    if repository.count(session, tenant_id) >= settings.webhook_max_per_tenant:
        raise APIError(
            409,
            "too_many_webhooks",
            f"this tenant has {settings.webhook_max_per_tenant} webhooks, the most allowed "
            "(DLCPRUNE_WEBHOOK_MAX_PER_TENANT); delete one first",
        )
    secret = sender.new_secret()
    hook = Webhook(
        tenant_id=tenant_id,
        url=body.url,
        events={"events": list(body.events)},
        description=body.description,
        secret=secret,
        created_at=utcnow(),
    )
    session.add(hook)
    session.commit()
    return hook, secret


def get(session: Session, tenant_id: uuid.UUID, webhook_id: uuid.UUID) -> Webhook:
    hook = repository.get(session, tenant_id, webhook_id)
    if hook is None:
        raise not_found("webhook", webhook_id)
    return hook


def delete(session: Session, tenant_id: uuid.UUID, webhook_id: uuid.UUID) -> None:
    """Delete an endpoint with its deliveries and their attempts (nothing more is sent)."""
    hook = get(session, tenant_id, webhook_id)
    # Children first, explicitly: SQLite enforces foreign keys only when asked to.
    ids = select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == hook.id)
    session.execute(sa_delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)))
    session.execute(sa_delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
    session.delete(hook)
    session.commit()


def get_delivery(
    session: Session, tenant_id: uuid.UUID, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery:
    hook = get(session, tenant_id, webhook_id)
    found = repository.delivery(session, hook.id, delivery_id)
    if found is None:
        raise not_found("delivery", delivery_id)
    return found


def replay(
    session: Session, tenant_id: uuid.UUID, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery:
    """Send a delivery again, now, with a fresh retry schedule (the same ``webhook-id`` and
    body: a receiver that already has it can tell). Its earlier attempts stay in the log."""
    found = get_delivery(session, tenant_id, webhook_id, delivery_id)
    found.status = DeliveryStatus.pending
    found.attempts = 0
    found.next_attempt_at = utcnow()
    found.locked_until = None
    found.delivered_at = None
    session.commit()
    return found


def to_read(hook: Webhook, base_url: str) -> WebhookRead:
    location = f"{base_url}/v1/webhooks/{hook.id}"
    return WebhookRead(
        id=hook.id,
        url=hook.url,
        events=list(hook.events.get("events", [])),
        description=hook.description,
        created_at=as_utc(hook.created_at),  # type: ignore[arg-type]
        location=location,
        deliveries_url=f"{location}/deliveries",
    )


def to_created(hook: Webhook, secret: str, base_url: str) -> WebhookCreated:
    return WebhookCreated(**to_read(hook, base_url).model_dump(), secret=secret)


def read_one(session: Session, found: WebhookDelivery, base_url: str) -> DeliveryRead:
    """A delivery with its attempts, as the API answers it."""
    return delivery_read(found, repository.attempts(session, [found.id])[found.id], base_url)


def delivery_read(
    found: WebhookDelivery, attempts: list[WebhookAttempt], base_url: str
) -> DeliveryRead:
    pending = found.status == DeliveryStatus.pending
    return DeliveryRead(
        id=found.id,
        webhook_id=found.webhook_id,
        event=found.event,
        status=found.status,  # type: ignore[arg-type]
        attempts=[
            AttemptRead(
                number=a.number,
                started_at=as_utc(a.started_at),  # type: ignore[arg-type]
                duration_ms=a.duration_ms,
                status_code=a.status_code,
                error=a.error,
                response_excerpt=a.response_excerpt,
            )
            for a in attempts
        ],
        next_attempt_at=as_utc(found.next_attempt_at) if pending else None,
        last_status_code=found.last_status_code,
        last_error=found.last_error,
        created_at=as_utc(found.created_at),  # type: ignore[arg-type]
        delivered_at=as_utc(found.delivered_at),
        payload=json.loads(found.payload),
        location=f"{base_url}/v1/webhooks/{found.webhook_id}/deliveries/{found.id}",
    )
