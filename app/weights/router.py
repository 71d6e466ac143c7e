"""Weights files for architectures named by the user (timm/torchvision) or TorchScript models."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select

from app.deps import BlobDep, SessionDep, SettingsDep, TenantDep
from app.errors import not_found, unprocessable
from app.models import Weights, as_utc
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
    request: Request, session: SessionDep, settings: SettingsDep, blobs: BlobDep, tenant: TenantDep
) -> JSONResponse:
    weights_id = uuid.uuid4()
    received = await receive_file(
        request,
        blobs=blobs,
        key_for=lambda name: weights_key(weights_id, name),
        max_bytes=settings.max_upload_bytes,
    )
    row = Weights(
        id=weights_id,
        tenant_id=tenant,
        filename=received.filename,
        blob_key=received.key,
        size_bytes=received.size,
        sha256=received.sha256,
    )

    def save() -> None:
        session.add(row)
        session.commit()

    try:
        await run_in_threadpool(save)
    except BaseException:
        blobs.delete_prefix(f"weights/{weights_id}")
        raise
    return JSONResponse(_read(row).model_dump(mode="json"), status_code=201)


@router.get("/{weights_id}", response_model=WeightsRead, summary="A weights file's record")
def get_weights(weights_id: uuid.UUID, session: SessionDep, tenant: TenantDep) -> WeightsRead:
    row = session.scalar(
        select(Weights).where(Weights.id == weights_id, Weights.tenant_id == tenant)
    )
    if row is None:
        raise not_found("weights", weights_id)
    return _read(row)
