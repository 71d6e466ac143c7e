"""HTTP routes for a job's kept embeddings and the label issues found from them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from app.datasets.router import base_url
from app.deps import BlobDep, SessionDep, SettingsDep, TenantDep
from app.embeddings import service
from app.embeddings.schemas import LabelIssue, LabelIssues, LabelIssuesPending
from app.errors import unprocessable
from app.http import ACCEPTED_HEADERS, accepted
from app.models import LabelIssueRun
from dlcprune.core import embeddings as emb

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ERRORS = {
    401: {"description": "missing or invalid API key"},
    404: {"description": "no such job for this tenant"},
    409: {
        "description": "job not finished, no embeddings kept (the message says to rescore), "
        "or no projection"
    },
    422: {"description": "invalid parameters, or a dataset without labels"},
}


@router.get(
    "/{job_id}/embeddings",
    responses={
        **ERRORS,
        200: {
            "content": {
                "application/vnd.apache.parquet": {},
                "application/octet-stream": {},
            },
            "description": "npy: float16 (N, D) in dataset order; parquet: index, sample_id, "
            "label, embedding (fixed-size list of float16)",
        },
    },
    summary="Download the samples' kept backbone features (npy or Parquet)",
)
def get_embeddings(
    job_id: uuid.UUID,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    format: Annotated[Literal["npy", "parquet"], Query()] = "npy",
) -> Response:
    found = service.job_features(session, blobs, tenant, job_id)
    x = service.load_features(blobs, found.key)
    headers = {
        "X-Embedding-Dims": str(x.shape[1]),
        "X-Embedding-Projected": "true" if found.score_set.embeddings_projected else "false",
    }
    if format == "npy":
        headers["Content-Disposition"] = f'attachment; filename="embeddings-{job_id}.npy"'
        return Response(emb.to_npy(x), media_type="application/octet-stream", headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="embeddings-{job_id}.parquet"'
    data = emb.to_parquet(x, found.index.ids(), found.index.labels())
    return Response(data, media_type="application/vnd.apache.parquet", headers=headers)


@router.get(
    "/{job_id}/embeddings/projection",
    responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}},
    summary="The PCA projection the embeddings were reduced with (npz: mean, components)",
)
def get_projection(
    job_id: uuid.UUID, session: SessionDep, blobs: BlobDep, tenant: TenantDep
) -> Response:
    found = service.job_features(session, blobs, tenant, job_id)
    projection = service.load_projection(blobs, found.key)
    if projection is None:
        from app.errors import conflict

        raise conflict(
            "no_projection",
            f"job {job_id} kept its features whole (DLCPRUNE_EMBEDDINGS_PCA_DIMS was 0): there is "
            "no projection",
        )
    return Response(projection.to_bytes(), media_type="application/octet-stream")


@router.get(
    "/{job_id}/label-issues",
    response_model=LabelIssues,
    responses={
        **ERRORS,
        202: {
            "model": LabelIssuesPending,
            "headers": ACCEPTED_HEADERS,
            "description": "a worker computes them (the first request queued it): poll Location "
            "after Retry-After",
        },
        422: {"description": ERRORS[422]["description"] + "; or the computation's failure"},
        500: {
            "description": "the computation did not finish (label_issues_failed, worker_lost): "
            "asking again computes them again"
        },
    },
    summary="Suspected mislabels: samples whose given label the features disagree with "
    "(computed by a worker: 202 until they are)",
    description="Each sample's self-confidence (the out-of-fold probability of its label from a "
    "5-fold cross-validated logistic probe on the kept embeddings) is computed by a worker on "
    'the "evaluate" queue, once per score set, never inside the request: the first request '
    "answers 202 with Location and Retry-After, later ones 202 until it is stored, then 200 "
    "for any share, threshold or page. A failure is answered as its problem document (422 for "
    "the data, kept; 500 when the computation did not finish, which the next request starts "
    "again). A selection's exclude_suspected needs them stored: before, it answers 409 "
    "label_issues_not_ready (and queues them).",
)
def label_issues(
    job_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    blobs: BlobDep,
    settings: SettingsDep,
    tenant: TenantDep,
    share: Annotated[float | None, Query(ge=0, le=1)] = None,
    threshold: Annotated[float | None, Query(ge=0, le=1)] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Any:
    if share is not None and threshold is not None:
        raise unprocessable("invalid_parameters", "give share or threshold, not both")
    if share is None and threshold is None:
        threshold = 0.5
    found = service.job_features(session, blobs, tenant, job_id)
    got = service.label_issues(session, blobs, found)
    if isinstance(got, LabelIssueRun):
        query = f"?{request.url.query}" if request.url.query else ""
        url = f"{base_url(request, settings)}/v1/jobs/{job_id}/label-issues{query}"
        pending = LabelIssuesPending(job_id=job_id, status=got.status, url=url)
        return accepted(pending.model_dump(mode="json"), url, settings)
    conf = got
    positions = service.pick(conf, share, threshold)
    page = positions[offset : offset + limit]
    ids = found.index.ids(page)
    labels = found.index.labels(page) or []
    items = [
        LabelIssue(index=int(i), sample_id=sid, label=lab, self_confidence=float(conf[i]))
        for i, sid, lab in zip(page.tolist(), ids, labels, strict=True)
    ]
    return LabelIssues(
        job_id=job_id,
        num_samples=len(conf),
        share=share,
        threshold=threshold,
        total=len(positions),
        limit=limit,
        offset=offset,
        items=items,
    )
