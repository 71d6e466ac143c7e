"""HTTP routes for selections: create from a job's scores (timed for the metrics; the provenance
record written), read, items, exports in five formats, previews that store nothing, and the
distribution plots (computed in :mod:`app.selections.preview`)."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app import errors, idempotency, metrics, plots
from app.blobstore import BlobStore
from app.config import Settings
from app.datasets.indexing import DatasetIndex
from app.datasets.router import base_url
from app.deps import BlobDep, SessionDep, SettingsDep, TenantDep
from app.errors import APIError
from app.idempotency import IdempotencyKeyDep
from app.jobs import lifecycle, summary
from app.models import Dataset, Selection
from app.pagination import CursorQuery
from app.selections import export, preview, provenance, service
from app.selections.schemas import (
    ItemPage,
    SelectionCreate,
    SelectionItem,
    SelectionList,
    SelectionPreview,
    SelectionRead,
    StrategyName,
)
from dlcprune.core.errors import DatasetError
from dlcprune.core.params import params_of
from dlcprune.core.selection.params import SelectionParams
from dlcprune.names import (
    DEFAULT_EXPORT_FORMAT,
    DEFAULT_HARD_CUTOFF,
    DEFAULT_SPLIT,
    DEFAULT_STRATEGY,
    EXPORT_FORMATS,
)

router = APIRouter(tags=["selections"])


def _query(name: str) -> object:
    """A selection parameter as a query parameter: its bounds and help from the definition
    (``SelectionParams``), as the request body's are."""
    (p,) = (p for p in params_of(SelectionParams) if p.name == name)
    spec = p.spec
    return Annotated[
        p.type, Query(ge=spec.ge, gt=spec.gt, le=spec.le, lt=spec.lt, description=spec.help)
    ]


KeepQuery = _query("keep")
KeepRatioQuery = Annotated[
    float | None, Query(gt=0, le=1, description="the share of samples to keep, in (0, 1]")
]
KeepCountQuery = Annotated[
    int | None, Query(ge=1, le=2**31 - 1, description="how many samples to keep, >= 1")
]
SplitQuery = _query("split")
SeedQuery = _query("seed")
HardCutoffQuery = _query("hard_cutoff")

ERRORS = {
    401: {"description": "missing or invalid API key"},
    404: {"description": "no such job or selection for this tenant"},
    409: {
        "description": "the job has no scores yet, or (exclude_suspected) its label issues are "
        "not computed yet: label_issues_not_ready"
    },
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
    idempotency_key: IdempotencyKeyDep,
) -> Response:
    started = time.perf_counter()

    def make() -> tuple[uuid.UUID, Selection]:
        made = service.create(session, blobs, tenant, job_id, body)
        return made.id, made

    row, replayed = idempotency.run(
        session,
        tenant,
        idempotency_key,
        scope=f"POST /v1/jobs/{job_id}/selections",
        fingerprint=body.model_dump(mode="json"),
        create=make,
        load=lambda selection_id: service.get(session, tenant, selection_id),
    )
    metrics.SELECTION_LATENCY.observe(time.perf_counter() - started)
    read = service.to_read(
        row,
        _num_samples(session, row.dataset_id),
        base_url(request, settings),
        provenance.get(session, blobs, row),
    )
    headers = {"Location": read.url}
    if replayed:
        headers[idempotency.REPLAYED_HEADER] = "true"
    return JSONResponse(
        read.model_dump(mode="json", by_alias=True), status_code=201, headers=headers
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
    blobs: BlobDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    cursor: CursorQuery = None,
) -> SelectionList:
    rows, total, next_cursor = service.list_for_job(session, tenant, job_id, limit, offset, cursor)
    url = base_url(request, settings)
    return SelectionList(
        items=[
            service.to_read(
                r, _num_samples(session, r.dataset_id), url, provenance.get(session, blobs, r)
            )
            for r in rows
        ],
        total=total,
        limit=limit,
        offset=offset,
        next_cursor=next_cursor,
    )


@router.delete(
    "/v1/selections/{selection_id}",
    status_code=204,
    responses=ERRORS,
    summary="Delete a selection and its exports",
)
def delete_selection(
    selection_id: uuid.UUID, session: SessionDep, blobs: BlobDep, tenant: TenantDep
) -> Response:
    lifecycle.delete_selection(session, blobs, tenant, selection_id)
    return Response(status_code=204)


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
    blobs: BlobDep,
    tenant: TenantDep,
) -> SelectionRead:
    row = service.get(session, tenant, selection_id)
    return service.to_read(
        row,
        _num_samples(session, row.dataset_id),
        base_url(request, settings),
        provenance.get(session, blobs, row),
    )


@router.get(
    "/v1/selections/{selection_id}/items",
    response_model=ItemPage,
    responses=ERRORS,
    summary="The kept sample ids, paged (items.csv and items.jsonl stream them)",
)
def get_items(
    selection_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    # Older clients ask ?format=csv|jsonl here: answered as items.csv / items.jsonl are.
    format: Annotated[Literal["json", "csv", "jsonl"], Query(include_in_schema=False)] = "json",
    limit: Annotated[int, Query(ge=1, le=100000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    row = service.get(session, tenant, selection_id)
    kept = service.indices(row)
    index = service.dataset_index(session, blobs, row)
    if format != "json":
        # As items.csv / items.jsonl: every row unless the request named limit or offset.
        given = request.query_params
        return _items_file(
            row,
            index,
            kept,
            format,
            limit if "limit" in given else None,
            offset if "offset" in given else 0,
        )
    page = kept[offset : offset + limit]
    labels = index.labels(page) if index.labelled else None
    ids = index.ids(page)
    items = [
        SelectionItem(sample_id=sid, label=labels[k] if labels else None)
        for k, sid in enumerate(ids)
    ]
    body = ItemPage(items=items, total=len(kept), limit=limit, offset=offset)
    return JSONResponse(body.model_dump(mode="json"))


_STREAM_LIMIT = Annotated[
    int | None,
    Query(ge=1, le=2**31 - 1, description="at most this many rows (default: every kept sample)"),
]
_STREAM_OFFSET = Annotated[
    int, Query(ge=0, le=2**31 - 1, description="skip this many kept samples first")
]
_ITEM_MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl"}


def _items_file(
    row: Selection,
    index: DatasetIndex,
    kept: np.ndarray,
    fmt: str,
    limit: int | None,
    offset: int,
) -> Response:
    stop = len(kept) if limit is None else offset + limit
    name = f"selection-{row.id}.{fmt}"
    return StreamingResponse(
        _stream_items(index, kept[offset:stop], fmt),
        media_type=_ITEM_MEDIA[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Total-Count": str(len(kept)),
        },
    )


def _items_route(fmt: str) -> None:
    media = _ITEM_MEDIA[fmt].split(";")[0]

    @router.get(
        f"/v1/selections/{{selection_id}}/items.{fmt}",
        response_class=Response,
        responses={
            **ERRORS,
            200: {
                "description": f"the kept samples in dataset order, streamed as {fmt.upper()} "
                + ("(header sample_id,label)" if fmt == "csv" else "({sample_id, label} lines)")
                + "; limit and offset cut the rows; X-Total-Count is the selection's size",
                "content": {media: {"schema": {"type": "string", "format": "binary"}}},
                "headers": {"X-Total-Count": {"schema": {"type": "integer"}}},
            },
        },
        summary=f"The kept sample ids as {fmt.upper()}, streamed",
        operation_id=f"get_items_{fmt}",
    )
    def get_items_file(
        selection_id: uuid.UUID,
        session: SessionDep,
        blobs: BlobDep,
        tenant: TenantDep,
        limit: _STREAM_LIMIT = None,
        offset: _STREAM_OFFSET = 0,
    ) -> Response:
        row = service.get(session, tenant, selection_id)
        kept = service.indices(row)
        return _items_file(
            row, service.dataset_index(session, blobs, row), kept, fmt, limit, offset
        )


for _fmt in ("csv", "jsonl"):
    _items_route(_fmt)


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


ExportFormat = Literal.__getitem__(EXPORT_FORMATS)  # type: ignore[attr-defined]


def _build_export(
    fmt: str,
    with_provenance: bool,
    session: Session,
    dataset: Dataset,
    row: Selection,
    settings: Settings,
    blobs: BlobStore,
) -> export.ExportFile:
    kept = service.indices(row)
    if fmt == "original":
        record = provenance.get_bytes(session, blobs, row) if with_provenance else None
        return export.build_export(dataset, row, kept, settings, blobs, provenance=record)
    scores, tokens, index = service.scored_inputs(session, blobs, row)
    if len(scores) != len(index):
        raise APIError(409, "scores_mismatch", "the scores do not match the dataset's index")
    if fmt in ("manifest-csv", "manifest-jsonl"):
        return export.build_manifest(
            dataset, row, kept, scores, index, fmt.removeprefix("manifest-"), blobs
        )
    record = provenance.get_bytes(session, blobs, row)
    if fmt == "parquet":
        return export.build_parquet(dataset, row, kept, scores, tokens, index, blobs, record)
    return export.build_bundle(dataset, row, kept, scores, index, settings, blobs, record)


@router.get(
    "/v1/selections/{selection_id}/export",
    response_class=Response,
    responses={
        **ERRORS,
        200: {
            "description": "original: the pruned dataset in its original format (a zip of the "
            "kept images or manifest rows, the kept JSON lines, or an .npz of the kept rows); "
            "manifest-csv / manifest-jsonl: every sample with its label, score and kept flag; "
            "parquet: the same as a Parquet file (plus tokens for instruction data); bundle: a "
            "zip of the original export, manifest.csv and provenance.json",
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in (
                    "application/zip",
                    "application/jsonl",
                    "application/octet-stream",
                    "text/csv",
                    export.PARQUET_TYPE,
                )
            },
        },
    },
    summary="Download the pruned dataset (original format), a manifest, Parquet scores or a bundle",
)
async def get_export(
    selection_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobDep,
    tenant: TenantDep,
    format: Annotated[
        ExportFormat,  # type: ignore[valid-type]
        Query(description="original (default), manifest-csv, manifest-jsonl, parquet or bundle"),
    ] = DEFAULT_EXPORT_FORMAT,
    provenance_member: Annotated[
        bool,
        Query(
            alias="provenance",
            description="original format: add provenance.json to zip exports (image folders "
            "and archives, CSV/JSONL manifests); the default leaves the export as it was",
        ),
    ] = False,
) -> Response:
    row = service.get(session, tenant, selection_id)
    dataset = session.get(Dataset, row.dataset_id)
    if dataset is None:
        raise APIError(404, "not_found", f"dataset {row.dataset_id} not found")
    try:
        out = await run_in_threadpool(
            _build_export, format, provenance_member, session, dataset, row, settings, blobs
        )
    except DatasetError as exc:
        raise APIError(
            409, "dataset_unreadable", f"the dataset can no longer be read: {exc.message}"
        ) from exc
    return await run_in_threadpool(export.file_response, blobs, out)


# --------------------------------------------------------------------------------------------
# Previews and plots: what a selection keeps against the full set
# --------------------------------------------------------------------------------------------


@router.post(
    "/v1/jobs/{job_id}/selections/preview",
    response_model=SelectionPreview,
    responses=summary.ERRORS,
    summary="What a selection would keep, and how far it moves the distribution (stores nothing)",
)
def preview_selection(
    job_id: uuid.UUID,
    body: SelectionCreate,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    bins: Annotated[int, Query(ge=2, le=200)] = 30,
) -> SelectionPreview:
    scored = summary.load_scored(session, blobs, tenant, job_id)
    return preview.preview(scored, body, preview.kept_indices(scored, body), bins)


@router.get(
    "/v1/jobs/{job_id}/plots/distribution.{fmt}",
    responses=summary.IMAGE_RESPONSES,
    response_class=Response,
    summary="A previewed selection's scores against the full set (PNG or SVG; stores nothing)",
)
def preview_distribution_plot(
    job_id: uuid.UUID,
    fmt: plots.PlotFormat,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    keep_ratio: KeepRatioQuery = None,
    keep_count: KeepCountQuery = None,
    keep: Annotated[KeepQuery | None, Query(deprecated=True)] = None,  # type: ignore[valid-type]
    strategy: StrategyName = DEFAULT_STRATEGY,  # type: ignore[valid-type]
    split: SplitQuery = DEFAULT_SPLIT,  # type: ignore[valid-type]
    seed: SeedQuery = 0,  # type: ignore[valid-type]
    hard_cutoff: HardCutoffQuery = DEFAULT_HARD_CUTOFF,  # type: ignore[valid-type]
    bins: Annotated[int, Query(ge=2, le=200)] = 30,
) -> Response:
    if keep is not None and keep > 1 and float(keep).is_integer():
        keep = int(keep)  # the alias's count, as a query string cannot say int
    try:
        body = SelectionCreate(
            keep_ratio=keep_ratio,
            keep_count=keep_count,
            keep=keep,
            strategy=strategy,
            split=split,
            seed=seed,
            hard_cutoff=hard_cutoff,
        )
    except ValidationError as exc:
        raise errors.validation_error(exc.errors()) from exc
    scored = summary.load_scored(session, blobs, tenant, job_id)
    kept = preview.kept_indices(scored, body)
    title = f"{body.strategy}, keep {body.keep:g}: {len(kept)} of {len(scored.scores)}"
    data = preview.distribution(scored, kept, fmt, title, bins)
    return plots.image_response(data, fmt, f"distribution-{str(job_id)[:8]}")


@router.get(
    "/v1/selections/{selection_id}/plots/distribution.{fmt}",
    responses=summary.IMAGE_RESPONSES,
    response_class=Response,
    summary="A selection's scores against the full set (PNG or SVG)",
)
def selection_distribution_plot(
    selection_id: uuid.UUID,
    fmt: plots.PlotFormat,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    bins: Annotated[int, Query(ge=2, le=200)] = 30,
) -> Response:
    row = service.get(session, tenant, selection_id)
    scored = summary.load_scored(session, blobs, tenant, row.job_id)
    kept = service.indices(row)
    title = f"{row.strategy}, keep {row.keep:g}: {row.size} of {len(scored.scores)}"
    data = preview.distribution(scored, kept, fmt, title, bins)
    return plots.image_response(data, fmt, f"distribution-{str(selection_id)[:8]}")
