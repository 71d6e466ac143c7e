"""A job's kept embeddings and what is computed from them (label issues).

Everything here reads the features a scoring job left in the blob store
(:mod:`dlcprune.core.embeddings`); no model runs. A job scored before embeddings were kept
answers 409 ``no_embeddings`` with a hint to rescore. Label issues are computed by a worker
(``app.embeddings.issues``), never in a request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from app.blobstore import BlobStore, BlobStoreError
from app.datasets.indexing import DatasetIndex, load_index
from app.embeddings import issues
from app.errors import conflict, not_found, unprocessable
from app.jobs import service as jobs
from app.models import Dataset, Job, JobStatus, LabelIssueRun, ScoreSet
from dlcprune.core import embeddings as emb
from dlcprune.core.cache import LRU
from dlcprune.core.evaluation import EvaluationError, suspected_mislabels

RESCORE_HINT = (
    "rescore to keep them: POST /v1/jobs again with the same body (scores stored before "
    "embeddings were kept are computed again, with their embeddings)"
)

# Features by blob prefix: the most recent stays in memory (selections at many ratios); one,
# because 1,000,000 samples x 256 float16 dimensions are 512 MB.
_features: LRU[str, np.ndarray] = LRU(1)


@dataclass(frozen=True)
class JobFeatures:
    job: Job
    score_set: ScoreSet
    dataset: Dataset
    index: DatasetIndex
    key: str


def job_features(
    session: Session, blobs: BlobStore, tenant_id: uuid.UUID, job_id: uuid.UUID
) -> JobFeatures:
    """The job, its score set, dataset and index, and where its embeddings lie; 409 when the
    job is not finished or has none."""
    job = jobs.get(session, tenant_id, job_id)
    return features_of(session, blobs, job)


def features_of(session: Session, blobs: BlobStore, job: Job) -> JobFeatures:
    if job.status != JobStatus.succeeded or job.score_set_id is None:
        raise conflict("job_not_ready", f"job {job.id} has no scores yet (status {job.status})")
    score_set = session.get(ScoreSet, job.score_set_id)
    dataset = session.get(Dataset, job.dataset_id)
    if score_set is None or dataset is None or dataset.index_key is None:
        raise not_found("job", job.id)
    if score_set.embeddings_key is None:
        if score_set.embeddings_dims is None:
            raise conflict(
                "no_embeddings",
                f"job {job.id} was scored before embeddings were kept; {RESCORE_HINT}",
            )
        why = (
            "instruction data has no class features"
            if dataset.kind == "instruction"
            else "it was scored in shards, whose features stay on their workers"
        )
        raise conflict("no_embeddings", f"job {job.id} has no embeddings: {why}")
    return JobFeatures(
        job, score_set, dataset, load_index(blobs, dataset.index_key), score_set.embeddings_key
    )


def load_features(blobs: BlobStore, key: str) -> np.ndarray:
    """float16 (N, D), read-only."""

    def read() -> np.ndarray:
        try:
            arr = emb.from_npy(blobs.get_bytes(f"{key}/{emb.FEATURES_FILE}"))
        except BlobStoreError as exc:
            raise conflict(
                "no_embeddings", f"the embeddings are gone ({exc}); {RESCORE_HINT}"
            ) from exc
        arr.flags.writeable = False
        return arr

    return _features.get_or_make(key, read)


def load_projection(blobs: BlobStore, key: str) -> emb.Projection | None:
    name = f"{key}/{emb.PROJECTION_FILE}"
    return emb.Projection.from_bytes(blobs.get_bytes(name)) if blobs.exists(name) else None


def labelled(found: JobFeatures) -> np.ndarray:
    """The job's class codes (N,); 422 ``unlabelled_dataset`` for data without classes."""
    labels = found.index.label_array()
    if labels is None:
        raise unprocessable(
            "unlabelled_dataset",
            f"dataset {found.dataset.id} has no labels ({found.dataset.kind} data): label "
            "issues and evaluations need classes",
        )
    return labels


def label_issues(
    session: Session, blobs: BlobStore, found: JobFeatures
) -> np.ndarray | LabelIssueRun:
    """Each sample's self-confidence (float32, (N,)) once a worker computed it; until then the
    score set's run (queued by this call when there is none: ``app.embeddings.issues``). A
    failed run raises its problem; 422 ``unlabelled_dataset`` for data without classes."""
    labelled(found)
    conf = issues.stored(blobs, found.key)
    if conf is not None:
        return conf
    row = issues.request(session, blobs, found.score_set)
    if row.status == JobStatus.succeeded:  # written between the look and the request
        conf = issues.stored(blobs, found.key)
        if conf is not None:
            return conf
    if row.status == JobStatus.failed:
        error = issues.problem(row, found.job.id)
        issues.retry_failed(session, row)
        raise error
    return row


def pick(conf: np.ndarray, share: float | None, threshold: float | None) -> np.ndarray:
    """Positions of suspected mislabels, least confident first."""
    try:
        return suspected_mislabels(conf, share=share, threshold=threshold)
    except EvaluationError as exc:
        raise unprocessable("invalid_parameters", str(exc)) from exc


def suspected(
    session: Session,
    blobs: BlobStore,
    found: JobFeatures,
    share: float | None,
    threshold: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(positions of suspected mislabels, least confident first; all samples' confidence), for
    a selection's ``exclude_suspected``: 409 ``label_issues_not_ready`` while a worker computes
    them (queued by this call if nobody had asked)."""
    got = label_issues(session, blobs, found)
    if isinstance(got, LabelIssueRun):
        raise conflict(
            "label_issues_not_ready",
            f"exclude_suspected needs the label issues of job {found.job.id}, which are "
            f"{got.status}: compute them first (GET /v1/jobs/{found.job.id}/label-issues answers "
            "202 while a worker computes them, 200 once they are; they are queued if nobody had "
            "asked), then select again",
        )
    return pick(got, share, threshold), got
