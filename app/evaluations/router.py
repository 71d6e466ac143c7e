"""HTTP routes for evaluations: start one on a job, poll it, list a job's, cancel, plot, and turn
the recommendation into a selection."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from app import idempotency
from app.datasets.router import base_url
from app.deps import BlobDep, SessionDep, SettingsDep, TenantDep
from app.errors import conflict
from app.evaluations import plot, service
from app.evaluations.schemas import EvaluationCreate, EvaluationList, EvaluationRead
from app.http import ACCEPTED_HEADERS, CONDITIONAL_RESPONSES, accepted, conditional_json
from app.idempotency import IdempotencyKeyDep
from app.models import Evaluation, JobStatus
from app.plots import PlotFormat, image_response
from app.selections import service as selections
from app.selections.schemas import SelectionCreate, SelectionRead

router = APIRouter(tags=["evaluations"])

ERRORS = {
    401: {"description": "missing or invalid API key"},
    404: {"description": "no such job or evaluation for this tenant"},
    409: {
        "description": "job not finished or without embeddings (rescore), or evaluation "
        "finished / not succeeded"
    },
    422: {"description": "unlabelled data, unknown strategies, keep ratios out of (0, 1)"},
}


@router.post(
    "/v1/jobs/{job_id}/evaluations",
    status_code=202,
    response_model=EvaluationRead,
    responses={**ERRORS, 202: {"headers": ACCEPTED_HEADERS}},
    summary="Evaluate strategies and keep ratios with a probe on the kept embeddings",
)
def create_evaluation(
    job_id: uuid.UUID,
    body: EvaluationCreate,
    request: Request,
    session: SessionDep,
    blobs: BlobDep,
    settings: SettingsDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyDep,
) -> JSONResponse:
    def make() -> tuple[uuid.UUID, Evaluation]:
        made = service.create(session, blobs, tenant, job_id, body)
        return made.id, made

    row, replayed = idempotency.run(
        session,
        tenant,
        idempotency_key,
        scope=f"POST /v1/jobs/{job_id}/evaluations",
        fingerprint=body.model_dump(mode="json"),
        create=make,
        load=lambda evaluation_id: service.get(session, tenant, evaluation_id),
    )
    read = service.to_read(row, base_url(request, settings))
    headers = {idempotency.REPLAYED_HEADER: "true"} if replayed else None
    return accepted(read.model_dump(mode="json"), read.url, settings, headers)


@router.get(
    "/v1/jobs/{job_id}/evaluations",
    response_model=EvaluationList,
    responses=ERRORS,
    summary="List a job's evaluations",
)
def list_evaluations(
    job_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> EvaluationList:
    rows, total = service.list_for_job(session, tenant, job_id, limit, offset)
    url = base_url(request, settings)
    return EvaluationList(
        items=[service.to_read(r, url) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get(
    "/v1/evaluations/{evaluation_id}",
    response_model=EvaluationRead,
    responses={**ERRORS, **CONDITIONAL_RESPONSES},
    summary="An evaluation: progress, then the result (ETag; 304 to a matching If-None-Match)",
)
def get_evaluation(
    evaluation_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
) -> Response:
    row = service.get(session, tenant, evaluation_id)
    read = service.to_read(row, base_url(request, settings))
    return conditional_json(request, read.model_dump(mode="json"))


@router.post(
    "/v1/evaluations/{evaluation_id}/cancel",
    response_model=EvaluationRead,
    responses=ERRORS,
    summary="Cancel an evaluation (queued: at once; running: after its current probe)",
)
def cancel_evaluation(
    evaluation_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
) -> EvaluationRead:
    row = service.cancel(session, tenant, evaluation_id)
    return service.to_read(row, base_url(request, settings))


def _succeeded(session, tenant, evaluation_id):  # type: ignore[no-untyped-def]
    row = service.get(session, tenant, evaluation_id)
    if row.status != JobStatus.succeeded or row.result is None:
        raise conflict(
            "evaluation_not_ready", f"evaluation {row.id} has no result (status {row.status})"
        )
    return row


@router.get(
    "/v1/evaluations/{evaluation_id}/plot.{fmt}",
    responses={**ERRORS, 200: {"content": {"image/png": {}, "image/svg+xml": {}}}},
    response_class=Response,
    summary="Accuracy versus keep ratio per strategy (PNG or SVG)",
)
def evaluation_plot(
    evaluation_id: uuid.UUID, fmt: PlotFormat, session: SessionDep, tenant: TenantDep
) -> Response:
    row = _succeeded(session, tenant, evaluation_id)
    return image_response(plot.render(row.result, fmt), fmt, f"evaluation-{row.id}")


@router.post(
    "/v1/evaluations/{evaluation_id}/select",
    status_code=201,
    response_model=SelectionRead,
    responses=ERRORS,
    summary="Turn the recommendation into a selection (its strategy and keep ratio, seed 0)",
)
def select_recommended(
    evaluation_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    blobs: BlobDep,
    settings: SettingsDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyDep,
) -> JSONResponse:
    row = _succeeded(session, tenant, evaluation_id)
    rec = row.result.get("recommendation") if row.result else None
    if not rec:
        raise conflict(
            "no_recommendation",
            f"evaluation {row.id} found no keep ratio within its tolerance of the full set",
        )
    body = SelectionCreate(keep_ratio=float(rec["keep"]), strategy=rec["strategy"])

    def make() -> tuple[uuid.UUID, Any]:
        made = selections.create(session, blobs, tenant, row.job_id, body)
        return made.id, made

    sel, replayed = idempotency.run(
        session,
        tenant,
        idempotency_key,
        scope=f"POST /v1/evaluations/{evaluation_id}/select",
        fingerprint={"evaluation_id": str(evaluation_id)},
        create=make,
        load=lambda selection_id: selections.get(session, tenant, selection_id),
    )
    read = selections.to_read(sel, _num_samples(session, sel), base_url(request, settings))
    headers = {"Location": read.url}
    if replayed:
        headers[idempotency.REPLAYED_HEADER] = "true"
    return JSONResponse(
        read.model_dump(mode="json", by_alias=True), status_code=201, headers=headers
    )


def _num_samples(session, sel) -> int:  # type: ignore[no-untyped-def]
    from app.models import Dataset

    ds = session.get(Dataset, sel.dataset_id)
    return int(ds.num_samples or 0) if ds is not None else 0
