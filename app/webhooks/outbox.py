"""Webhook events into the outbox: one call, inside the transaction of the state change.

    webhooks.emit(session, tenant_id, "job.succeeded", job_read_json)

adds one delivery per endpoint of the tenant subscribed to the event; the caller's commit makes
the state change and its deliveries visible together (or neither), and a worker sends them
(``app.webhooks.delivery``). The body is fixed here, so every attempt sends (and signs) the same
bytes: ``{"type", "timestamp", "data"}``, ``data`` the resource as the API answers it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Webhook, WebhookDelivery, utcnow
from dlcprune.names import WEBHOOK_EVENTS


def body(event: str, data: dict[str, Any], when: str) -> str:
    return json.dumps(
        {"type": event, "timestamp": when, "data": data}, separators=(",", ":"), sort_keys=True
    )


def emit(session: Session, tenant_id: uuid.UUID, event: str, data: dict[str, Any]) -> int:
    """Queue ``event`` with ``data`` for every endpoint of ``tenant_id`` that subscribed to it;
    returns how many. Nothing is committed here."""
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    hooks = session.scalars(select(Webhook).where(Webhook.tenant_id == tenant_id)).all()
    targets = [hook for hook in hooks if event in hook.events.get("events", [])]
    if not targets:
        return 0
    now = utcnow()
    payload = body(event, data, now.isoformat().replace("+00:00", "Z"))
    for hook in targets:
        session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                tenant_id=tenant_id,
                event=event,
                payload=payload,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return len(targets)
