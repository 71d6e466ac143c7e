"""Webhook request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dlcprune.names import WEBHOOK_EVENTS

EventName = Literal[WEBHOOK_EVENTS]  # type: ignore[valid-type]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://ci.example.com/hooks/dlcprune",
                    "events": ["job.succeeded", "job.failed"],
                    "description": "training pipeline",
                }
            ]
        },
    )

    url: str = Field(
        min_length=1,
        max_length=2000,
        description="an http(s) URL the service may reach: a public address, or loopback and "
        "the networks the operator allows",
    )
    events: list[EventName] = Field(  # type: ignore[valid-type]
        min_length=1, description="the events sent to this endpoint"
    )
    description: str = Field(default="", max_length=500)

    @field_validator("events")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class WebhookRead(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str
    created_at: datetime
    location: str = Field(description="this webhook's URL in the API")
    deliveries_url: str


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="the signing secret (Standard Webhooks, whsec_...): shown this once"
    )


class WebhookList(BaseModel):
    items: list[WebhookRead]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = None


class AttemptRead(BaseModel):
    number: int
    started_at: datetime
    duration_ms: float
    status_code: int | None = Field(description="the endpoint's HTTP status; null: no answer")
    error: str | None
    response_excerpt: str | None = Field(description="the first bytes the endpoint answered")


class DeliveryRead(BaseModel):
    id: uuid.UUID = Field(description="the webhook-id header, the same on every attempt")
    webhook_id: uuid.UUID
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: list[AttemptRead]
    next_attempt_at: datetime | None = Field(description="when it is tried next (pending)")
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict = Field(description="the body sent (type, timestamp, data)")
    location: str = Field(description="this delivery's URL in the API")


class DeliveryList(BaseModel):
    items: list[DeliveryRead]
    total: int
    limit: int
    offset: int
