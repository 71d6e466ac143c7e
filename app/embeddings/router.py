"""HTTP routes for a job's kept embeddings and the label issues found from them."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.deps import BlobDep, SessionDep, TenantDep
from app.embeddings import service
from app.embeddings.schemas import LabelIssue, LabelIssues
from app.errors import unprocessable
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
    responses=ERRORS,
    summary="Suspected mislabels: samples whose given label the features disagree with",
)
def label_issues(
    job_id: uuid.UUID,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    share: Annotated[float | None, Query(ge=0, le=1)] = None,
    threshold: Annotated[float | None, Query(ge=0, le=1)] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> LabelIssues:
    if share is not None and threshold is not None:
        raise unprocessable("invalid_parameters", "give share or threshold, not both")
    if share is None and threshold is None:
        threshold = 0.5
    found = service.job_features(session, blobs, tenant, job_id)
    positions, conf = service.suspected(blobs, found, share, threshold)
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
