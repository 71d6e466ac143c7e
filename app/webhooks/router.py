"""HTTP routes for webhooks: register an endpoint (its secret answered once), list, read,
delete, and its deliveries: the log of every attempt, and a replay."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from app import idempotency
from app.datasets.router import base_url
from app.deps import SessionDep, SettingsDep, TenantDep
from app.http import ACCEPTED_HEADERS, accepted
from app.idempotency import IdempotencyKeyDep
from app.models import Webhook
from app.webhooks import repository, service
from app.webhooks.schemas import (
    DeliveryList,
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

ERRORS = {
    401: {"description": "missing or invalid API key"},
    404: {"description": "no such webhook or delivery for this tenant"},
    409: {"description": "the tenant has as many webhooks as allowed"},
    422: {"description": "invalid URL or events; a URL the service may not reach"},
}


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    responses=ERRORS,
    summary="Register an endpoint for events (the signing secret is answered this once)",
)
def create_webhook(
    body: WebhookCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyDep,
) -> Response:
    def make() -> tuple[uuid.UUID, tuple[Webhook, str]]:
        hook, secret = service.create(session, settings, tenant, body)
        return hook.id, (hook, secret)

    def load(webhook_id: uuid.UUID) -> tuple[Webhook, str]:
        # The same request made again is answered the same, the secret included.
        hook = service.get(session, tenant, webhook_id)
        return hook, hook.secret

    (hook, secret), replayed = idempotency.run(
        session,
        tenant,
        idempotency_key,
        scope="POST /v1/webhooks",
        fingerprint=body.model_dump(mode="json"),
        create=make,
        load=load,
    )
    created = service.to_created(hook, secret, base_url(request, settings))
    headers = {"Location": created.location}
    if replayed:
        headers[idempotency.REPLAYED_HEADER] = "true"
    return JSONResponse(created.model_dump(mode="json"), status_code=201, headers=headers)


@router.get("", response_model=WebhookList, responses=ERRORS, summary="List webhooks")
def list_webhooks(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> WebhookList:
    rows, total = repository.list_page(session, tenant, limit, offset)
    url = base_url(request, settings)
    return WebhookList(
        items=[service.to_read(h, url) for h in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{webhook_id}", response_model=WebhookRead, responses=ERRORS, summary="A webhook")
def get_webhook(
    webhook_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
) -> WebhookRead:
    return service.to_read(service.get(session, tenant, webhook_id), base_url(request, settings))


@router.delete(
    "/{webhook_id}",
    status_code=204,
    responses=ERRORS,
    summary="Delete a webhook and its deliveries (nothing more is sent to it)",
)
def delete_webhook(webhook_id: uuid.UUID, session: SessionDep, tenant: TenantDep) -> Response:
    service.delete(session, tenant, webhook_id)
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryList,
    responses=ERRORS,
    summary="A webhook's deliveries, newest first, each with its attempts",
)
def list_deliveries(
    webhook_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> DeliveryList:
    hook = service.get(session, tenant, webhook_id)
    rows, total = repository.deliveries_page(session, hook.id, status, limit, offset)
    attempts = repository.attempts(session, [d.id for d in rows])
    url = base_url(request, settings)
    return DeliveryList(
        items=[service.delivery_read(d, attempts[d.id], url) for d in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/{webhook_id}/deliveries/{delivery_id}",
    response_model=DeliveryRead,
    responses=ERRORS,
    summary="One delivery and its attempts",
)
def get_delivery(
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
) -> DeliveryRead:
    found = service.get_delivery(session, tenant, webhook_id, delivery_id)
    return service.read_one(session, found, base_url(request, settings))


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    response_model=DeliveryRead,
    responses={**ERRORS, 202: {"headers": ACCEPTED_HEADERS}},
    summary="Send a delivery again (same webhook-id and body; a fresh retry schedule)",
)
def replay_delivery(
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
) -> Response:
    found = service.replay(session, tenant, webhook_id, delivery_id)
    read = service.read_one(session, found, base_url(request, settings))
    return accepted(read.model_dump(mode="json"), read.location, settings)
