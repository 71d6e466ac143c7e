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
from app.jobs import repository, service, summary
from app.jobs.schemas import JobCreate, JobList, JobRead, ScoreItem, ScorePage

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
) -> JobList:
    rows, total = repository.list_page(
        session, tenant, status=status, dataset_id=dataset_id, limit=limit, offset=offset
    )
    url = base_url(request, settings)
    return JobList(
        items=[service.to_read(j, url) for j in rows], total=total, limit=limit, offset=offset
    )


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
    "/{job_id}/scores",
    response_model=ScorePage,
    responses={**ERRORS, 200: {"content": {"text/csv": {}}}},
    summary="Per-sample scores: JSON paged, or CSV streamed",
)
def get_scores(
    job_id: uuid.UUID,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    format: Literal["json", "csv"] = "json",
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    scored = summary.load_scored(session, blobs, tenant, job_id)
    job, scores, index = scored.job, scored.scores, scored.index
    tokens = repository.load_tokens(session, scored.score_set.id)
    if format == "csv":
        return StreamingResponse(
            _scores_csv(index, scores, tokens),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="scores-{job.id}.csv"'},
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


def _scores_csv(index, scores, tokens) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    """``sample_id,label,score`` (``,tokens`` for instructions); an unscored sample has an
    empty score."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sample_id", "label", "score"] + (["tokens"] if tokens is not None else []))
    labels = index.labels()
    ids = index.ids()
    for start in range(0, len(ids), 10000):
        for i in range(start, min(len(ids), start + 10000)):
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
