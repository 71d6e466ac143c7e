"""HTTP routes for scoring jobs, their scores, and what the scores look like (the summary and the
job's plots; computed in :mod:`app.jobs.summary`)."""

from __future__ import annotations

import csv
import io
import math
import uuid
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from app import plots
from app.datasets.router import base_url
from app.deps import BlobDep, SessionDep, SettingsDep, TenantDep
from app.errors import conflict
from app.http import ACCEPTED_HEADERS, CONDITIONAL_RESPONSES, accepted, conditional_json
from app.idempotency import REPLAYED_HEADER, IdempotencyKeyDep
from app.jobs import lifecycle, repository, service, summary
from app.jobs.schemas import JobCreate, JobList, JobRead, ScoreItem, ScorePage
from app.pagination import CursorQuery, ExternalIdQuery, TagQuery

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ERRORS = {
    400: {"description": "malformed body or header"},
    401: {"description": "missing or invalid API key"},
    404: {"description": "no such job (or dataset, weights) for this tenant"},
    409: {"description": "state conflict (dataset not ready, job finished, key reused)"},
    422: {"description": "invalid parameters"},
}


@router.post(
    "",
    status_code=202,
    response_model=JobRead,
    responses={**ERRORS, 202: {"headers": ACCEPTED_HEADERS}},
    summary="Start a scoring job (answered at once; poll the job's URL)",
)
def create_job(
    body: JobCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyDep,
) -> Response:
    job, replayed = service.create(session, tenant, body, idempotency_key)
    read = service.to_read(job, base_url(request, settings))
    headers = {REPLAYED_HEADER: "true"} if replayed else None
    return accepted(read.model_dump(mode="json"), read.url, settings, headers)


@router.get("", response_model=JobList, responses=ERRORS, summary="List jobs")
def list_jobs(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    status: Annotated[
        Literal["queued", "running", "succeeded", "failed", "cancelled"] | None, Query()
    ] = None,
    dataset_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    cursor: CursorQuery = None,
    tag: TagQuery = None,
    external_id: ExternalIdQuery = None,
) -> JobList:
    rows, total, next_cursor = repository.list_page(
        session,
        tenant,
        status=status,
        dataset_id=dataset_id,
        limit=limit,
        offset=offset,
        cursor=cursor,
        tags=tag,
        external_id=external_id,
    )
    url = base_url(request, settings)
    return JobList(
        items=[service.to_read(j, url) for j in rows],
        total=total,
        limit=limit,
        offset=offset,
        next_cursor=next_cursor,
    )


@router.delete(
    "/{job_id}",
    status_code=204,
    responses={
        **ERRORS,
        409: {"description": "the job is queued or running (force=true deletes it anyway)"},
    },
    summary="Delete a job with its selections and their exports (the score cache stays)",
)
def delete_job(
    job_id: uuid.UUID,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    force: Annotated[
        bool, Query(description="delete a queued or running job too (its worker stops)")
    ] = False,
) -> Response:
    lifecycle.delete_job(session, blobs, tenant, job_id, force=force)
    return Response(status_code=204)


@router.get(
    "/{job_id}",
    response_model=JobRead,
    responses={**ERRORS, **CONDITIONAL_RESPONSES},
    summary="A job and its progress (ETag; 304 to a matching If-None-Match)",
)
def get_job(
    job_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
) -> Response:
    read = service.to_read(service.get(session, tenant, job_id), base_url(request, settings))
    return conditional_json(request, read.model_dump(mode="json"))


@router.post(
    "/{job_id}/cancel",
    response_model=JobRead,
    status_code=202,
    responses={**ERRORS, 202: {"headers": ACCEPTED_HEADERS}},
    summary="Cancel a queued or running job",
)
def cancel_job(
    job_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
) -> Response:
    read = service.to_read(service.cancel(session, tenant, job_id), base_url(request, settings))
    return accepted(read.model_dump(mode="json"), read.url, settings)


@router.get(
    "/{job_id}/scores.csv",
    response_class=Response,
    responses={
        **ERRORS,
        200: {
            "description": "sample_id,label,score (,tokens for instructions), in dataset "
            "order; limit and offset cut the rows; X-Total-Count is the number of samples",
            "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
            "headers": {"X-Total-Count": {"schema": {"type": "integer"}}},
        },
    },
    summary="Per-sample scores as CSV, streamed",
)
def get_scores_csv(
    job_id: uuid.UUID,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    limit: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="at most this many rows (default: all)")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="skip this many first")] = 0,
) -> Response:
    scored = summary.load_scored(session, blobs, tenant, job_id)
    tokens = repository.load_tokens(session, scored.score_set.id)
    return _scores_file(scored.job.id, scored.index, scored.scores, tokens, limit, offset)


def _scores_file(job_id, index, scores, tokens, limit, offset) -> Response:  # type: ignore[no-untyped-def]
    stop = len(scores) if limit is None else min(len(scores), offset + limit)
    return StreamingResponse(
        _scores_csv(index, scores, tokens, range(min(offset, len(scores)), stop)),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="scores-{job_id}.csv"',
            "X-Total-Count": str(len(scores)),
        },
    )


@router.get(
    "/{job_id}/scores",
    response_model=ScorePage,
    responses=ERRORS,
    summary="Per-sample scores, paged (scores.csv streams them)",
)
def get_scores(
    job_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    # Older clients ask ?format=csv here: answered as scores.csv is.
    format: Annotated[Literal["json", "csv"], Query(include_in_schema=False)] = "json",
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    scored = summary.load_scored(session, blobs, tenant, job_id)
    job, scores, index = scored.job, scored.scores, scored.index
    tokens = repository.load_tokens(session, scored.score_set.id)
    if format == "csv":
        # As scores.csv: every row unless the request itself named limit or offset.
        given = request.query_params
        return _scores_file(
            job.id,
            index,
            scores,
            tokens,
            limit if "limit" in given else None,
            offset if "offset" in given else 0,
        )
    stop = min(len(scores), offset + limit)
    rows = range(offset, stop)
    labels = index.labels() if index.labelled else None
    items = [
        ScoreItem(
            sample_id=index.id(i),
            label=labels[i] if labels is not None else None,
            score=None if math.isnan(scores[i]) else float(scores[i]),
            tokens=int(tokens[i]) if tokens is not None else None,
        )
        for i in rows
    ]
    return JSONResponse(
        ScorePage(items=items, total=len(scores), limit=limit, offset=offset).model_dump(
            mode="json"
        )
    )


def _scores_csv(index, scores, tokens, rows: range) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    """``sample_id,label,score`` (``,tokens`` for instructions) of ``rows``; an unscored sample
    has an empty score."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sample_id", "label", "score"] + (["tokens"] if tokens is not None else []))
    labels = index.labels()
    ids = index.ids()
    for start in range(rows.start, rows.stop, 10000):
        for i in range(start, min(rows.stop, start + 10000)):
            value = float(scores[i])
            row = [ids[i], labels[i] if labels else "", "" if math.isnan(value) else f"{value:.9g}"]
            if tokens is not None:
                row.append(str(int(tokens[i])))
            writer.writerow(row)
        yield buf.getvalue().encode("utf-8")
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode("utf-8")


# --------------------------------------------------------------------------------------------
# What the scores look like: the summary and the plots
# --------------------------------------------------------------------------------------------


@router.get(
    "/{job_id}/summary",
    response_model=summary.JobSummary,
    responses=summary.ERRORS,
    summary="Histograms, loss curve and easiest/hardest samples of a finished job",
)
def job_summary(
    job_id: uuid.UUID,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    bins: Annotated[int, Query(ge=2, le=200)] = 30,
    k: Annotated[int, Query(ge=1, le=50, description="samples per class and end")] = 6,
    max_classes: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> summary.JobSummary:
    scored = summary.load_scored(session, blobs, tenant, job_id)
    return summary.summary(blobs, scored, bins, k, max_classes)


@router.get(
    "/{job_id}/plots/histogram.{fmt}",
    responses=summary.IMAGE_RESPONSES,
    response_class=Response,
    summary="Histogram of the DLC scores, overall and per class (PNG or SVG)",
)
def histogram_plot(
    job_id: uuid.UUID,
    fmt: plots.PlotFormat,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    bins: Annotated[int, Query(ge=2, le=200)] = 30,
) -> Response:
    scored = summary.load_scored(session, blobs, tenant, job_id)
    hist = summary.histogram(scored, bins, plots.MAX_PLOTTED_CLASSES)
    if len(scored.class_names) > plots.MAX_PLOTTED_CLASSES:
        hist.classes, hist.per_class = [], []
    title = f"{scored.dataset.name} · {scored.job.model}"
    data = plots.render_histogram(hist, fmt, title)
    return plots.image_response(data, fmt, f"histogram-{str(job_id)[:8]}")


@router.get(
    "/{job_id}/plots/loss-curve.{fmt}",
    responses=summary.IMAGE_RESPONSES,
    response_class=Response,
    summary="Loss against the share of weights masked: mean and 10-90% band (PNG or SVG)",
)
def loss_curve_plot(
    job_id: uuid.UUID,
    fmt: plots.PlotFormat,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
) -> Response:
    scored = summary.load_scored(session, blobs, tenant, job_id)
    curve = summary.loss_curve(blobs, scored, 50)
    if curve is None:
        raise conflict("no_loss_curve", f"job {job_id} has no per-level losses stored")
    title = f"{scored.dataset.name} · {scored.job.model} · {curve.samples} samples"
    data = plots.render_loss_curve(curve, fmt, title)
    return plots.image_response(data, fmt, f"loss-curve-{str(job_id)[:8]}")
