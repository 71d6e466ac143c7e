"""HTTP routes for exports into object stores: start one from a selection (202), read it
(progress), list, cancel."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from app.datasets.router import base_url
from app.deps import SessionDep, SettingsDep, TenantDep
from app.exports import service
from app.exports.schemas import ExportCreate, ExportList, ExportRead
from app.http import ACCEPTED_HEADERS, CONDITIONAL_RESPONSES, accepted, conditional_json
from app.idempotency import REPLAYED_HEADER, IdempotencyKeyDep
from app.pagination import CursorQuery

router = APIRouter(tags=["exports"])

ERRORS = {
    401: {"description": "missing or invalid API key"},
    403: {"description": "the store refused this service's credentials"},
    404: {"description": "no such selection or export for this tenant"},
    409: {"description": "the export has already finished (cancel)"},
    422: {"description": "a scheme not enabled, a target that is not an empty prefix"},
}


@router.post(
    "/v1/selections/{selection_id}/exports",
    response_model=ExportRead,
    status_code=202,
    responses={**ERRORS, 202: {"headers": ACCEPTED_HEADERS}},
    summary="Write a selection into an object store (a job on the export queue)",
)
async def create_store_export(
    selection_id: uuid.UUID,
    body: ExportCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyDep,
) -> Response:
    exp, replayed = await run_in_threadpool(
        service.create, session, settings, tenant, selection_id, body, idempotency_key
    )
    read = service.to_read(exp, base_url(request, settings))
    headers = {REPLAYED_HEADER: "true"} if replayed else None
    return accepted(read.model_dump(mode="json"), read.url, settings, headers)


@router.get(
    "/v1/exports/{export_id}",
    response_model=ExportRead,
    responses={**ERRORS, **CONDITIONAL_RESPONSES},
    summary="An export's state and progress",
)
def get_store_export(
    export_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
) -> Response:
    read = service.to_read(service.get(session, tenant, export_id), base_url(request, settings))
    return conditional_json(request, read.model_dump(mode="json"))


@router.get(
    "/v1/exports", response_model=ExportList, responses=ERRORS, summary="The tenant's exports"
)
def list_store_exports(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    selection_id: Annotated[uuid.UUID | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    cursor: CursorQuery = None,
) -> ExportList:
    rows, total, next_cursor = service.list_(session, tenant, selection_id, limit, offset, cursor)
    url = base_url(request, settings)
    return ExportList(
        items=[service.to_read(r, url) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        next_cursor=next_cursor,
    )


@router.post(
    "/v1/exports/{export_id}/cancel",
    response_model=ExportRead,
    status_code=202,
    responses={**ERRORS, 202: {"headers": ACCEPTED_HEADERS}},
    summary="Cancel a queued or running export (nothing is published)",
)
def cancel_store_export(
    export_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
) -> Response:
    read = service.to_read(service.cancel(session, tenant, export_id), base_url(request, settings))
    return accepted(read.model_dump(mode="json"), read.url, settings)
