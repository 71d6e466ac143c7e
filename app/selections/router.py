"""HTTP routes for selections: create from a job's scores, read, items, export."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from app.datasets.indexing import DatasetIndex
from app.datasets.router import base_url
from app.deps import BlobDep, SessionDep, SettingsDep, TenantDep
from app.errors import APIError
from app.models import Dataset
from app.selections import export, service
from app.selections.schemas import (
    ItemPage,
    SelectionCreate,
    SelectionItem,
    SelectionList,
    SelectionRead,
)
from worker.scoring.errors import DatasetError

router = APIRouter(tags=["selections"])

ERRORS = {
    401: {"description": "missing or invalid API key"},
    404: {"description": "no such job or selection for this tenant"},
    409: {"description": "the job has no scores yet"},
    422: {"description": "invalid keep, strategy, split or seed"},
}


def _num_samples(session: SessionDep, dataset_id: uuid.UUID) -> int:
    dataset = session.get(Dataset, dataset_id)
    return int(dataset.num_samples or 0) if dataset else 0


@router.post(
    "/v1/jobs/{job_id}/selections",
    status_code=201,
    response_model=SelectionRead,
    responses=ERRORS,
    summary="Select a subset from a job's scores",
)
def create_selection(
    job_id: uuid.UUID,
    body: SelectionCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobDep,
    tenant: TenantDep,
) -> Response:
    row = service.create(session, blobs, tenant, job_id, body)
    read = service.to_read(row, _num_samples(session, row.dataset_id), base_url(request, settings))
    return JSONResponse(
        read.model_dump(mode="json"), status_code=201, headers={"Location": read.url}
    )


@router.get(
    "/v1/jobs/{job_id}/selections",
    response_model=SelectionList,
    responses=ERRORS,
    summary="A job's selections",
)
def list_selections(
    job_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> SelectionList:
    rows, total = service.list_for_job(session, tenant, job_id, limit, offset)
    url = base_url(request, settings)
    return SelectionList(
        items=[service.to_read(r, _num_samples(session, r.dataset_id), url) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/v1/selections/{selection_id}",
    response_model=SelectionRead,
    responses=ERRORS,
    summary="A selection",
)
def get_selection(
    selection_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
) -> SelectionRead:
    row = service.get(session, tenant, selection_id)
    return service.to_read(row, _num_samples(session, row.dataset_id), base_url(request, settings))


@router.get(
    "/v1/selections/{selection_id}/items",
    response_model=ItemPage,
    responses={
        **ERRORS,
        200: {"content": {"application/json": {}, "text/csv": {}, "application/jsonl": {}}},
    },
    summary="The kept sample ids: JSON paged, CSV or JSON lines streamed",
)
def get_items(
    selection_id: uuid.UUID,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    format: Literal["json", "csv", "jsonl"] = "json",
    limit: Annotated[int, Query(ge=1, le=100000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    row = service.get(session, tenant, selection_id)
    kept = service.indices(row)
    index = service.dataset_index(session, blobs, row)
    if format == "json":
        page = kept[offset : offset + limit]
        labels = index.labels(page) if index.labelled else None
        ids = index.ids(page)
        items = [
            SelectionItem(sample_id=sid, label=labels[k] if labels else None)
            for k, sid in enumerate(ids)
        ]
        body = ItemPage(items=items, total=len(kept), limit=limit, offset=offset)
        return JSONResponse(body.model_dump(mode="json"))
    name = f"selection-{row.id}.{format}"
    media = "text/csv; charset=utf-8" if format == "csv" else "application/jsonl"
    return StreamingResponse(
        _stream_items(index, kept, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _stream_items(index: DatasetIndex, kept: np.ndarray, fmt: str) -> Iterator[bytes]:
    labelled = index.labelled
    for lo in range(0, len(kept), 20000):
        block = kept[lo : lo + 20000]
        ids = index.ids(block)
        labels = index.labels(block) if labelled else None
        buf = io.StringIO()
        if fmt == "csv":
            writer = csv.writer(buf, lineterminator="\n")
            if lo == 0:
                writer.writerow(["sample_id", "label"])
            for k, sid in enumerate(ids):
                writer.writerow([sid, labels[k] if labels else ""])
        else:
            for k, sid in enumerate(ids):
                buf.write(json.dumps({"sample_id": sid, "label": labels[k] if labels else None}))
                buf.write("\n")
        yield buf.getvalue().encode("utf-8")
    if len(kept) == 0 and fmt == "csv":
        yield b"sample_id,label\n"


@router.get(
    "/v1/selections/{selection_id}/export",
    responses={
        **ERRORS,
        200: {
            "description": "the pruned dataset in its original format",
            "content": {"application/zip": {}, "application/jsonl": {}},
        },
    },
    summary="Download the pruned dataset in its original format",
)
async def get_export(
    selection_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobDep,
    tenant: TenantDep,
) -> Response:
    row = service.get(session, tenant, selection_id)
    dataset = session.get(Dataset, row.dataset_id)
    if dataset is None:
        raise APIError(404, "not_found", f"dataset {row.dataset_id} not found")
    try:
        out = await run_in_threadpool(
            export.build_export, dataset, row, service.indices(row), settings, blobs
        )
    except DatasetError as exc:
        raise APIError(
            409, "dataset_unreadable", f"the dataset can no longer be read: {exc.message}"
        ) from exc
    path = await run_in_threadpool(export.export_to_tempfile, blobs, out.key)
    return FileResponse(path, media_type=out.media_type, filename=out.filename)
