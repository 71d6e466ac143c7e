"""Webhooks on the client's side: the endpoints and deliveries the API returns, and checking
that a delivery your receiver got came from the service.

    from dlcprune.client import verify_webhook

    def receive(body: bytes, headers: dict[str, str]) -> None:   # in your web framework
        event = verify_webhook(body, headers, secret)            # raises if not genuine
        if event.type == "job.succeeded":
            start_training(event.data["id"])

Deliveries follow the Standard Webhooks specification: ``webhook-id`` (the same on every retry:
deduplicate on it), ``webhook-timestamp`` and ``webhook-signature`` headers; the checking is the
``standardwebhooks`` reference library's (``pip install "dlcprune[webhooks]"``: no dependencies of
its own), which also refuses a timestamp more than five minutes from now (a replayed capture).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Attempt", "Delivery", "Webhook", "WebhookEvent", "WebhookInvalid", "verify_webhook"]


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class Webhook:
    """An endpoint registered for events (``GET /v1/webhooks/{id}``); ``secret`` only in the
    answer that created it."""

    id: str
    url: str
    events: tuple[str, ...]
    description: str = ""
    created_at: datetime | None = None
    location: str = ""
    secret: str | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Webhook:
        return cls(
            id=str(data["id"]),
            url=str(data["url"]),
            events=tuple(data.get("events") or ()),
            description=str(data.get("description") or ""),
            created_at=_time(data.get("created_at")),
            location=str(data.get("location") or ""),
            secret=data.get("secret"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Attempt:
    """One try at sending a delivery: what the endpoint answered (``status_code`` None: no
    answer; ``error`` says why)."""

    number: int
    started_at: datetime | None
    duration_ms: float
    status_code: int | None
    error: str | None
    response_excerpt: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attempt:
        return cls(
            number=int(data["number"]),
            started_at=_time(data.get("started_at")),
            duration_ms=float(data.get("duration_ms") or 0.0),
            status_code=data.get("status_code"),
            error=data.get("error"),
            response_excerpt=data.get("response_excerpt"),
        )


@dataclass(frozen=True)
class Delivery:
    """One event for one endpoint (``pending``, ``delivered`` or ``failed``) and its attempts."""

    id: str
    webhook_id: str
    event: str
    status: str
    attempts: tuple[Attempt, ...]
    payload: dict[str, Any]
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    delivered_at: datetime | None = None
    location: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Delivery:
        return cls(
            id=str(data["id"]),
            webhook_id=str(data["webhook_id"]),
            event=str(data["event"]),
            status=str(data["status"]),
            attempts=tuple(Attempt.from_json(a) for a in data.get("attempts") or ()),
            payload=dict(data.get("payload") or {}),
            next_attempt_at=_time(data.get("next_attempt_at")),
            last_status_code=data.get("last_status_code"),
            last_error=data.get("last_error"),
            created_at=_time(data.get("created_at")),
            delivered_at=_time(data.get("delivered_at")),
            location=str(data.get("location") or ""),
            raw=dict(data),
        )


@dataclass(frozen=True)
class WebhookEvent:
    """A verified delivery: its ``webhook-id``, its type (``job.succeeded``, ...), when it
    happened, and the resource as the API answers it."""

    id: str
    type: str
    timestamp: datetime | None
    data: dict[str, Any]


class WebhookInvalid(ValueError):
    """A delivery that is not the service's: a signature that does not match the secret, a
    header missing, a timestamp too far from now, or a body that is not an event."""


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secret: str) -> WebhookEvent:
    """Check a received delivery against the endpoint's ``secret`` (``whsec_...``) and return
    its event; raises ``WebhookInvalid`` unless it is genuine and recent."""
    try:
        from standardwebhooks.webhooks import Webhook as Verifier
        from standardwebhooks.webhooks import WebhookVerificationError
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "verifying webhooks needs the standardwebhooks package: "
            'pip install "dlcprune[webhooks]"'
        ) from exc
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        Verifier(secret).verify(body, lowered, json_parse=False)
    except (WebhookVerificationError, ValueError) as exc:  # ValueError: undecodable base64
        raise WebhookInvalid(str(exc) or type(exc).__name__) from exc
    try:
        event = json.loads(body)
        return WebhookEvent(
            id=lowered["webhook-id"],
            type=str(event["type"]),
            timestamp=_time(event.get("timestamp")),
            data=dict(event.get("data") or {}),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise WebhookInvalid(f"the body is not a webhook event: {exc}") from exc
