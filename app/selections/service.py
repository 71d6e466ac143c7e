"""Selections: computed on demand in the API process from cached scores (pure numpy)."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import pagination
from app.blobstore import BlobStore
from app.datasets.indexing import DatasetIndex, load_index
from app.embeddings import service as embeddings
from app.errors import conflict, not_found, unprocessable
from app.jobs import repository as jobs_repo
from app.jobs import service as jobs
from app.models import Dataset, Job, JobStatus, Selection, as_utc
from app.selections import provenance
from app.selections.schemas import Provenance, SelectionCreate, SelectionRead
from dlcprune.core.selection import SelectionError, Subset
from dlcprune.core.selection import select as select_subset
from dlcprune.core.selection.features import select_features
from dlcprune.names import DEFAULT_HARD_CUTOFF, FEATURE_STRATEGIES


def _job_inputs(
    session: Session, blobs: BlobStore, job: Job
) -> tuple[np.ndarray, DatasetIndex, Dataset]:
    if job.status != JobStatus.succeeded or job.score_set_id is None:
        raise conflict("job_not_ready", f"job {job.id} has no scores yet (status {job.status})")
    dataset = session.get(Dataset, job.dataset_id)
    if dataset is None or dataset.index_key is None:
        raise not_found("dataset", job.dataset_id)
    scores = jobs_repo.load_scores(session, job.score_set_id)
    return scores, load_index(blobs, dataset.index_key), dataset


def run_strategy(
    scores: np.ndarray,
    labels: Any,
    body: Any,
    features: np.ndarray | None = None,
    left_out: np.ndarray | None = None,
) -> Subset:
    """The subset ``body`` asks for over a job's scores (or, for a feature strategy, its kept
    embeddings ``features``): the one call stored selections, previews and evaluations make, so
    a preview keeps exactly what the selection will. Unscored samples and the positions in
    ``left_out`` (suspected mislabels) are never kept; a request the strategy refuses answers
    422 with its code. ``keep_count`` is a count even at 1 (the strategies read a bare 1 as
    "everything")."""
    if left_out is not None and len(left_out):
        scores = np.array(scores, dtype=np.float32, copy=True)
        scores[left_out] = np.nan
    keep: float = body.keep
    keep_total = None
    keep_count = getattr(body, "keep_count", None)
    if keep_count is not None:
        scored = int(np.isfinite(np.asarray(scores, dtype=np.float64)).sum())
        if keep_count > scored:
            raise unprocessable(
                "invalid_selection",
                f"keep_count {keep_count} exceeds the {scored} samples with a score",
            )
        keep, keep_total = (1.0, 1) if keep_count == 1 else (int(keep_count), None)
    try:
        if body.strategy in FEATURE_STRATEGIES:
            if features is None:
                raise SelectionError(
                    f"{body.strategy} selects from the job's kept embeddings; it has no preview"
                )
            from threadpoolctl import threadpool_limits

            # Matrix-vector products, one per pick: one BLAS thread is faster on a busy machine.
            with threadpool_limits(limits=1):
                return select_features(
                    features,
                    labels,
                    keep=keep,
                    keep_total=keep_total,
                    strategy=body.strategy,
                    seed=body.seed,
                    eligible=~np.isnan(scores),
                )
        return select_subset(
            scores,
            labels,
            keep=keep,
            strategy=body.strategy,
            split=body.split,
            seed=body.seed,
            unscored="exclude",
            hard_cutoff=body.hard_cutoff,
            keep_total=keep_total,
        )
    except SelectionError as exc:
        raise unprocessable(exc.code, str(exc)) from exc


def create(
    session: Session,
    blobs: BlobStore,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    body: SelectionCreate,
) -> Selection:
    job = jobs.get(session, tenant_id, job_id)
    scores, index, dataset = _job_inputs(session, blobs, job)
    if len(scores) != len(index):
        raise conflict("scores_mismatch", "the scores do not match the dataset's index")
    features = left_out = None
    if body.strategy in FEATURE_STRATEGIES or body.exclude_suspected is not None:
        found = embeddings.features_of(session, blobs, job)
        if body.strategy in FEATURE_STRATEGIES:
            features = embeddings.load_features(blobs, found.key)
        if body.exclude_suspected is not None:
            rule = body.exclude_suspected
            left_out, _ = embeddings.suspected(session, blobs, found, rule.share, rule.threshold)
    result = run_strategy(scores, index.label_array(), body, features, left_out)
    # The selection labels classes by code; report them by name, in the dataset's class order.
    if index.labelled:
        by_code = {int(k): v for k, v in result.class_counts.items()}
        counts = {name: by_code.get(i, 0) for i, name in enumerate(index.class_names)}
    else:
        counts = {}
    row = Selection(
        tenant_id=tenant_id,
        job_id=job.id,
        dataset_id=dataset.id,
        keep=float(body.keep),
        strategy=body.strategy,
        split=float(body.split),
        hard_cutoff=float(body.hard_cutoff),
        seed=int(body.seed),
        size=result.size,
        class_counts=counts,
        excluded=int(np.isnan(scores).sum()) + (len(left_out) if left_out is not None else 0),
        indices=np.ascontiguousarray(result.indices, dtype="<i8").tobytes(),
    )
    session.add(row)
    session.commit()
    # Recorded now, so it names the code that made the selection.
    provenance.record(session, blobs, row)
    return row


def get(session: Session, tenant_id: uuid.UUID, selection_id: uuid.UUID) -> Selection:
    row = session.scalar(
        select(Selection).where(Selection.id == selection_id, Selection.tenant_id == tenant_id)
    )
    if row is None:
        raise not_found("selection", selection_id)
    return row


def list_for_job(
    session: Session,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    limit: int,
    offset: int,
    cursor: str | None = None,
) -> tuple[list[Selection], int, str | None]:
    jobs.get(session, tenant_id, job_id)
    query = select(Selection).where(Selection.tenant_id == tenant_id, Selection.job_id == job_id)
    return pagination.page(session, query, Selection, limit=limit, offset=offset, cursor=cursor)


def indices(row: Selection) -> np.ndarray:
    """(size,) int64 kept positions, ascending."""
    return np.frombuffer(row.indices, dtype="<i8")


def dataset_index(session: Session, blobs: BlobStore, row: Selection) -> DatasetIndex:
    dataset = session.get(Dataset, row.dataset_id)
    if dataset is None or dataset.index_key is None:
        raise not_found("dataset", row.dataset_id)
    return load_index(blobs, dataset.index_key)


def scored_inputs(
    session: Session, blobs: BlobStore, row: Selection
) -> tuple[np.ndarray, np.ndarray | None, DatasetIndex]:
    """The scores (and response tokens) the selection was cut from, and the dataset's index."""
    job = session.get(Job, row.job_id)
    if job is None or job.score_set_id is None:
        raise conflict("job_not_ready", f"the scores of selection {row.id} are gone")
    scores = jobs_repo.load_scores(session, job.score_set_id)
    tokens = jobs_repo.load_tokens(session, job.score_set_id)
    return scores, tokens, dataset_index(session, blobs, row)


def keep_kind(row: Selection, num_samples: int) -> dict[str, Any]:
    """``keep_ratio`` or ``keep_count`` of a stored selection: ``keep`` above 1 is a count; 1
    that kept fewer than every scored sample was a count of 1, else the ratio 1."""
    scored = num_samples - (row.excluded or 0)
    if row.keep > 1 or (row.keep == 1 and row.size == 1 < scored):
        return {"keep_ratio": None, "keep_count": int(row.keep)}
    return {"keep_ratio": float(row.keep), "keep_count": None}


def to_read(
    row: Selection,
    num_samples: int,
    base_url: str,
    provenance_record: dict[str, Any] | None = None,
) -> SelectionRead:
    url = f"{base_url}/v1/selections/{row.id}"
    return SelectionRead(
        id=row.id,
        job_id=row.job_id,
        dataset_id=row.dataset_id,
        keep=row.keep,
        **keep_kind(row, num_samples),
        strategy=row.strategy,
        split=row.split,
        hard_cutoff=row.hard_cutoff if row.hard_cutoff is not None else DEFAULT_HARD_CUTOFF,
        seed=row.seed,
        size=row.size,
        num_samples=num_samples,
        class_counts=row.class_counts,
        excluded=row.excluded or 0,
        created_at=as_utc(row.created_at),
        url=url,
        items_url=f"{url}/items",
        export_url=f"{url}/export",
        provenance=Provenance.model_validate(provenance_record) if provenance_record else None,
    )
