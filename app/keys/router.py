"""API keys over the API, for a key with the ``admin`` scope: create (the key is answered this
once; only its SHA-256 is stored), list and revoke the keys of the admin key's own tenant."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app import idempotency, pagination
from app.auth import DEFAULT_SCOPES, create_tenant_key
from app.datasets.router import base_url
from app.deps import AdminDep, SessionDep, SettingsDep
from app.errors import not_found
from app.idempotency import IdempotencyKeyDep
from app.models import ApiKey, as_utc, utcnow
from app.pagination import CursorQuery

router = APIRouter(prefix="/v1/keys", tags=["keys"])

Scope = Literal["read", "write", "admin"]

ERRORS = {
    403: {"description": "the key lacks the admin scope"},
    404: {"description": "no such key for this tenant"},
}


class KeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "ci", "scopes": ["read", "write"]}, {"scopes": ["read"]}]
        },
    )

    name: str = Field(default="", max_length=200, description="a label for the key")
    scopes: list[Scope] = Field(
        default=list(DEFAULT_SCOPES),
        min_length=1,
        max_length=3,
        description="read (GET), write (POST, DELETE), admin (these key routes; includes both)",
    )


class KeyRead(BaseModel):
    id: uuid.UUID
    prefix: str = Field(description="the key's public part (dlc_<prefix>_...)")
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(KeyRead):
    key: str = Field(description="the secret: answered this once, stored only as its SHA-256")


class KeyList(BaseModel):
    items: list[KeyRead]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = None


def _read(row: ApiKey) -> KeyRead:
    return KeyRead(
        id=row.id,
        prefix=row.prefix,
        name=row.name,
        scopes=(row.scopes or "").split(),
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        revoked_at=as_utc(row.revoked_at),
    )


@router.post(
    "",
    status_code=201,
    response_model=KeyCreated,
    responses={**ERRORS, 201: {"headers": idempotency.REPLAY_HEADERS}},
    summary="Create an API key for this tenant (admin); the key is answered this once",
)
def create_key(
    body: KeyCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminDep,
    idempotency_key: IdempotencyKeyDep,
) -> Response:
    def make() -> tuple[uuid.UUID, KeyCreated]:
        key, row = create_tenant_key(session, admin.tenant_id, body.name, body.scopes)
        session.commit()
        return row.id, KeyCreated(**_read(row).model_dump(), key=key)

    def load(key_id: uuid.UUID) -> KeyCreated:
        # The secret is not stored: a replay says so rather than make a second key.
        row = _get(session, admin.tenant_id, key_id)
        return KeyCreated(**_read(row).model_dump(), key="")

    created, replayed = idempotency.run(
        session,
        admin.tenant_id,
        idempotency_key,
        scope="POST /v1/keys",
        fingerprint=body.model_dump(mode="json"),
        create=make,
        load=load,
    )
    headers = {"Location": f"{base_url(request, settings)}/v1/keys/{created.id}"}
    if replayed:
        headers[idempotency.REPLAYED_HEADER] = "true"
    return JSONResponse(created.model_dump(mode="json"), status_code=201, headers=headers)


def _get(session: SessionDep, tenant_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    row = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id))
    if row is None:
        raise not_found("key", key_id)
    return row


@router.get("", response_model=KeyList, responses=ERRORS, summary="This tenant's API keys")
def list_keys(
    session: SessionDep,
    admin: AdminDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    cursor: CursorQuery = None,
) -> KeyList:
    query = select(ApiKey).where(ApiKey.tenant_id == admin.tenant_id)
    rows, total, next_cursor = pagination.page(
        session, query, ApiKey, limit=limit, offset=offset, cursor=cursor
    )
    return KeyList(
        items=[_read(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        next_cursor=next_cursor,
    )


@router.get("/{key_id}", response_model=KeyRead, responses=ERRORS, summary="One API key")
def get_key(key_id: uuid.UUID, session: SessionDep, admin: AdminDep) -> KeyRead:
    return _read(_get(session, admin.tenant_id, key_id))


@router.delete(
    "/{key_id}",
    status_code=204,
    responses=ERRORS,
    summary="Revoke an API key (it answers 401 from now on; revoking twice is fine)",
)
def revoke_key(key_id: uuid.UUID, session: SessionDep, admin: AdminDep) -> Response:
    row = _get(session, admin.tenant_id, key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return Response(status_code=204)
