"""Sending the outbox: claim due deliveries, sign them (Standard Webhooks), post them, log each
attempt, and schedule the next one or give up.

Who sends: a ``DeliverySender`` thread in the embedded worker's process (the embedded default)
and in every Celery worker that takes CPU work (``dlcprune worker --kind cpu`` or ``all``);
never the API. Deliveries live in the database, so a restart of any process loses none: a
delivery claimed by a sender that died is free again once its claim (``locked_until``) runs out.
Several senders share the outbox: a claim is one conditional UPDATE, so each delivery is sent by
one sender at a time.

Every attempt sends the same body with the same ``webhook-id`` (receivers deduplicate on it), a
fresh ``webhook-timestamp`` and its signature. A 2xx answer delivers; anything else (another
status, a redirect, a timeout, a refused connection, a target the SSRF guard refuses) is retried
after the next delay of ``DLCPRUNE_WEBHOOK_RETRY_SCHEDULE``, and once the schedule is used up the
delivery is ``failed`` (``POST .../replay`` sends it again).
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
import uuid
from datetime import datetime, timedelta

import httpx
from sqlalchemy import or_, select, update

from app.config import Settings, get_settings
from app.db import session_factory
from app.errors import APIError
from app.models import (
    DeliveryStatus,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    utcnow,
)
from app.references import check_http_url
from app.webhooks import repository

log = logging.getLogger("dlcprune.webhooks")

SECRET_PREFIX = "whsec_"
EXCERPT_BYTES = 1024
USER_AGENT = "dlcprune-webhooks/1"


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def signed_headers(secret: str, msg_id: str, when: datetime, payload: str) -> dict[str, str]:
    """The Standard Webhooks headers for ``payload`` (the standardwebhooks library signs)."""
    from standardwebhooks.webhooks import Webhook as Signer

    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Signer(secret).sign(msg_id, when, payload),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def check_target(url: str, settings: Settings) -> None:
    """The SSRF guard for a webhook URL (422 ``url_not_allowed``)."""
    check_http_url(
        url,
        allow_loopback=bool(settings.webhook_allow_loopback),
        networks=settings.webhook_allowed_networks,
        code="url_not_allowed",
    )


def _claim(settings: Settings, delivery_id: uuid.UUID) -> bool:
    now = utcnow()
    lease = now + timedelta(seconds=2 * settings.webhook_timeout_s + 30)
    with session_factory(settings)() as session:
        taken = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == DeliveryStatus.pending,
                WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
            )
            .values(locked_until=lease)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
    return taken == 1


def _post(url: str, headers: dict[str, str], payload: str, settings: Settings) -> tuple:
    """(status code or None, error or None, excerpt of the answer)."""
    try:
        check_target(url, settings)
    except APIError as exc:
        return None, f"target refused: {exc.message}", None
    try:
        with httpx.Client(
            timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False
        ) as client:
            resp = client.post(url, content=payload.encode(), headers=headers)
        excerpt = resp.content[:EXCERPT_BYTES].decode("utf-8", "replace")
        error = None if resp.is_success else f"HTTP {resp.status_code}"
        return resp.status_code, error, excerpt
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:1000], None


def send_one(delivery_id: uuid.UUID, settings: Settings) -> str | None:
    """Claim one delivery, send it, record the attempt; returns its new status (None when it
    was not ours to send)."""
    if not _claim(settings, delivery_id):
        return None
    factory = session_factory(settings)
    with factory() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        hook = session.get(Webhook, delivery.webhook_id) if delivery is not None else None
        if delivery is None or hook is None:
            return None
        number = repository.attempt_count(session, delivery_id) + 1
        url, secret, payload = hook.url, hook.secret, delivery.payload
    started = utcnow()
    headers = signed_headers(secret, str(delivery_id), started, payload)
    t0 = time.perf_counter()
    status_code, error, excerpt = _post(url, headers, payload, settings)
    duration_ms = round((time.perf_counter() - t0) * 1000, 1)
    with factory() as session:
        delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None:  # its webhook was deleted meanwhile
            return None
        session.add(
            WebhookAttempt(
                delivery_id=delivery_id,
                number=number,
                started_at=started,
                duration_ms=duration_ms,
                status_code=status_code,
                error=error,
                response_excerpt=excerpt,
            )
        )
        delivery.attempts += 1
        delivery.last_status_code = status_code
        delivery.last_error = error
        delivery.locked_until = None
        schedule = settings.webhook_retry_schedule
        if error is None:
            delivery.status = DeliveryStatus.delivered
            delivery.delivered_at = utcnow()
        elif delivery.attempts > len(schedule):
            delivery.status = DeliveryStatus.failed
        else:
            delay = schedule[delivery.attempts - 1]
            delivery.next_attempt_at = utcnow() + timedelta(seconds=delay)
        status = delivery.status
        session.commit()
    log.info(
        "webhook %s delivery %s attempt %d: %s",
        hook.id,
        delivery_id,
        number,
        status_code if error is None else error,
        extra={"webhook_id": str(hook.id), "delivery_id": str(delivery_id)},
    )
    return status


def deliver_due(settings: Settings | None = None, limit: int = 50) -> int:
    """Send the deliveries that are due (oldest first); returns how many were tried."""
    settings = settings or get_settings()
    now = utcnow()
    with session_factory(settings)() as session:
        due = session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == DeliveryStatus.pending,
                WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        ).all()
    return sum(1 for delivery_id in due if send_one(delivery_id, settings) is not None)


class DeliverySender(threading.Thread):
    """Sends due deliveries every ``webhook_poll_seconds`` until stopped; errors (the database
    away) are logged, never fatal."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(name="dlcprune-webhooks", daemon=True)
        self.settings = settings or get_settings()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                busy = deliver_due(self.settings)
            except Exception as exc:
                log.warning("webhook sender round failed: %s", exc)
                busy = 0
            if not busy:
                self.halt.wait(self.settings.webhook_poll_seconds)

    def stop(self) -> None:
        self.halt.set()
