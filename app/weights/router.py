"""Weights files for architectures named by the user (timm/torchvision) or TorchScript models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import idempotency, limits, pagination
from app.datasets.router import base_url
from app.deps import BlobDep, SessionDep, SettingsDep, TenantDep
from app.errors import conflict, not_found, unprocessable
from app.idempotency import IdempotencyKeyDep
from app.models import Job, JobStatus, Weights, as_utc
from app.pagination import CursorQuery
from app.uploads import receive_file

router = APIRouter(prefix="/v1/weights", tags=["weights"])

# Weights files, or a Hugging Face model directory packed as an archive (model "hf").
SUFFIXES = (".pth", ".pt", ".safetensors", ".zip", ".tar", ".tar.gz", ".tgz")


class WeightsRead(BaseModel):
    id: uuid.UUID
    filename: str
    size_bytes: int
    sha256: str
    created_at: datetime


class WeightsList(BaseModel):
    items: list[WeightsRead]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = None


def _read(row: Weights) -> WeightsRead:
    return WeightsRead(
        id=row.id,
        filename=row.filename,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        created_at=as_utc(row.created_at),
    )


def weights_key(weights_id: uuid.UUID, filename: str) -> str:
    lower = filename.lower()
    for suffix in SUFFIXES:
        if lower.endswith(suffix):
            return f"weights/{weights_id}/weights{suffix}"
    raise unprocessable(
        "unsupported_format", f"weights must be a {', '.join(SUFFIXES)} file, got {filename!r}"
    )


@router.post(
    "",
    status_code=201,
    response_model=WeightsRead,
    responses={
        201: {
            "headers": {
                "Location": {"schema": {"type": "string"}},
                **idempotency.REPLAY_HEADERS,
            }
        },
        409: {"description": "Idempotency-Key reused with another request, or still running"},
        413: {"description": "upload over the size limit"},
        415: {"description": "not multipart/form-data"},
        429: {"description": "the tenant's stored bytes would pass its limit"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    },
                    "examples": {
                        "timm": {
                            "summary": "a state dict for model timm:resnet18",
                            "value": {"file": "resnet18.safetensors"},
                        },
                        "torchscript": {
                            "summary": "a TorchScript module for model torchscript",
                            "value": {"file": "classifier.pt"},
                        },
                        "hf": {
                            "summary": "a Hugging Face model directory for model hf",
                            "value": {"file": "tinyllama.tar.gz"},
                        },
                    },
                }
            },
        }
    },
    summary="Upload a weights file (.pth, .pt, .safetensors, a TorchScript module) or a Hugging "
    "Face model directory as an archive (.zip, .tar, .tar.gz)",
)
async def upload_weights(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyDep,
) -> JSONResponse:
    weights_id = uuid.uuid4()
    received = await receive_file(
        request,
        blobs=blobs,
        key_for=lambda name: weights_key(weights_id, name),
        max_bytes=settings.max_upload_bytes,
    )

    def save() -> tuple[uuid.UUID, Weights]:
        limits.check_storage(session, settings, tenant, received.size)
        row = Weights(
            id=weights_id,
            tenant_id=tenant,
            filename=received.filename,
            blob_key=received.key,
            size_bytes=received.size,
            sha256=received.sha256,
        )
        session.add(row)
        session.commit()
        return row.id, row

    try:
        row, replayed = await run_in_threadpool(
            idempotency.run,
            session,
            tenant,
            idempotency_key,
            scope="POST /v1/weights",
            fingerprint={"sha256": received.sha256, "filename": received.filename},
            create=save,
            load=lambda existing: _get(session, tenant, existing),
        )
    except BaseException:
        blobs.delete_prefix(f"weights/{weights_id}")
        raise
    if row.id != weights_id:
        blobs.delete_prefix(f"weights/{weights_id}")
    headers = {"Location": f"{base_url(request, settings)}/v1/weights/{row.id}"}
    if replayed:
        headers[idempotency.REPLAYED_HEADER] = "true"
    return JSONResponse(_read(row).model_dump(mode="json"), status_code=201, headers=headers)


def _get(session: Session, tenant: uuid.UUID, weights_id: uuid.UUID) -> Weights:
    row = session.scalar(
        select(Weights).where(Weights.id == weights_id, Weights.tenant_id == tenant)
    )
    if row is None:
        raise not_found("weights", weights_id)
    return row


@router.get("", response_model=WeightsList, summary="List weights files, newest first")
def list_weights(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    cursor: CursorQuery = None,
) -> WeightsList:
    query = select(Weights).where(Weights.tenant_id == tenant)
    rows, total, next_cursor = pagination.page(
        session, query, Weights, limit=limit, offset=offset, cursor=cursor
    )
    return WeightsList(
        items=[_read(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        next_cursor=next_cursor,
    )


@router.delete(
    "/{weights_id}",
    status_code=204,
    responses={409: {"description": "a queued or running job uses these weights"}},
    summary="Delete a weights file (finished jobs keep their scores; their weights_id is cleared)",
)
def delete_weights(
    weights_id: uuid.UUID, session: SessionDep, blobs: BlobDep, tenant: TenantDep
) -> Response:
    row = _get(session, tenant, weights_id)
    busy = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(
            Job.weights_id == row.id,
            Job.status.in_((JobStatus.queued, JobStatus.running)),
        )
    )
    if busy:
        raise conflict(
            "weights_in_use", f"{busy} queued or running jobs use weights {row.id}; cancel them"
        )
    session.execute(
        update(Job)
        .where(Job.weights_id == row.id)
        .values(weights_id=None)
        .execution_options(synchronize_session=False)
    )
    session.delete(row)
    session.commit()
    blobs.delete_prefix(f"weights/{weights_id}")
    return Response(status_code=204)


@router.get("/{weights_id}", response_model=WeightsRead, summary="A weights file's record")
def get_weights(weights_id: uuid.UUID, session: SessionDep, tenant: TenantDep) -> WeightsRead:
    return _read(_get(session, tenant, weights_id))
