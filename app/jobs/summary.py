"""What a finished job's scores look like: histograms per class, the loss-versus-mask-level curve
and the easiest and hardest samples of each class (``GET /v1/jobs/{id}/summary``, the job's plots).

:func:`load_scored` loads a succeeded job with its scores and its dataset's index; the summary,
the plots and the selection previews (``app.selections.preview``) all read from it. Scores, losses
and indexes never change once written, so summaries and loss curves are cached in memory by their
ids (:class:`dlcprune.core.cache.LRU`).
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from app import plots
from app.blobstore import BlobStore, BlobStoreError
from app.datasets.indexing import DatasetIndex, load_index
from app.errors import conflict, not_found
from app.jobs import service as jobs_service
from app.models import Dataset, Job, JobStatus, ScoreSet
from dlcprune.core.cache import LRU

# The errors of every route that reads a job's scores (summary, plots, previews).
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    404: {"description": "no such job, selection, dataset or sample for this tenant"},
    409: {"description": "the job has no scores yet, or the dataset is not ready"},
    422: {"description": "invalid parameters, or an operation the data's kind does not have"},
}

# The same, for the routes that answer a plot.
IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {"content": {"image/png": {}, "image/svg+xml": {}}, "description": "the plot"},
}


# --------------------------------------------------------------------------------------------
# Response bodies
# --------------------------------------------------------------------------------------------


class SampleRef(BaseModel):
    index: int = Field(description="position in the dataset (for the sample routes)")
    sample_id: str
    label: str | None
    score: float


class ClassExtremes(BaseModel):
    label: str | None = Field(description="the class; null for unlabelled data")
    count: int = Field(description="scored samples of the class")
    easiest: list[SampleRef] = Field(description="lowest scores first")
    hardest: list[SampleRef] = Field(description="highest scores first")


class HistogramClass(BaseModel):
    label: str
    counts: list[int]


class Histogram(BaseModel):
    edges: list[float] = Field(description="bins + 1 ascending bin edges")
    total: list[int] = Field(description="scored samples per bin")
    per_class: list[HistogramClass]


class ClassCurve(BaseModel):
    label: str
    mean: list[float | None]


class LossCurveRead(BaseModel):
    levels: int = Field(description="rows: the unmasked model, then each mask level")
    mask_fractions: list[float | None] = Field(description="share of weights masked per row")
    mean: list[float | None]
    median: list[float | None]
    band: dict[str, float] = Field(description="the percentiles of low and high")
    low: list[float | None]
    high: list[float | None]
    samples: int
    per_class_mean: list[ClassCurve]


class ScoreStats(BaseModel):
    min: float
    max: float
    mean: float
    median: float


class JobSummary(BaseModel):
    job_id: uuid.UUID
    dataset_id: uuid.UUID
    dataset_name: str
    kind: str | None = Field(description="image, vector, text or instruction")
    model: str
    num_samples: int
    scored: int
    unscored: int
    bins: int
    k: int
    classes_total: int
    classes_shown: int = Field(description="classes in per_class, per_class_mean and extremes")
    score_stats: ScoreStats | None
    histogram: Histogram
    loss_curve: LossCurveRead | None = Field(
        description="null when the job stored no per-level losses"
    )
    extremes: list[ClassExtremes]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class ScoredJob:
    """A succeeded job with its score set, dataset and index; ``scores`` is (N,) float32, NaN
    where a sample could not be scored."""

    def __init__(
        self, job: Job, dataset: Dataset, score_set: ScoreSet, index: DatasetIndex
    ) -> None:
        self.job = job
        self.dataset = dataset
        self.score_set = score_set
        self.index = index
        self.scores = np.frombuffer(score_set.scores, dtype="<f4")
        if len(self.scores) != len(index):
            raise conflict("scores_mismatch", "the scores do not match the dataset's index")

    @property
    def codes(self) -> np.ndarray | None:
        """(N,) int class codes into :attr:`class_names`, or None for unlabelled data."""
        return self.index.label_array()

    @property
    def class_names(self) -> list[str]:
        return self.index.class_names


def load_scored(
    session: Session, blobs: BlobStore, tenant: uuid.UUID, job_id: uuid.UUID
) -> ScoredJob:
    """Tenant ``tenant``'s job ``job_id`` with its scores: 404 if it is not theirs, 409 until it
    has succeeded."""
    job = jobs_service.get(session, tenant, job_id)
    if job.status != JobStatus.succeeded or job.score_set_id is None:
        raise conflict("job_not_ready", f"job {job.id} has no scores yet (status {job.status})")
    score_set = session.get(ScoreSet, job.score_set_id)
    dataset = session.get(Dataset, job.dataset_id)
    if score_set is None or dataset is None or dataset.index_key is None:
        raise not_found("dataset", job.dataset_id)
    return ScoredJob(job, dataset, score_set, load_index(blobs, dataset.index_key))


# --------------------------------------------------------------------------------------------
# The summary and its parts
# --------------------------------------------------------------------------------------------

_summaries: LRU[tuple[Any, ...], JobSummary] = LRU(32)
_curves: LRU[tuple[Any, ...], plots.LossCurve | None] = LRU(16)


def _load_losses(blobs: BlobStore, key: str) -> np.ndarray:
    """The (L+1, N) loss matrix, memory-mapped when the blob is a local file."""
    try:
        return np.load(blobs.local_path(key), mmap_mode="r", allow_pickle=False)
    except BlobStoreError:
        return np.load(io.BytesIO(blobs.get_bytes(key)), allow_pickle=False)


def loss_curve(blobs: BlobStore, scored: ScoredJob, max_classes: int) -> plots.LossCurve | None:
    """The loss-versus-mask-level curve, or None when the job stored no per-level losses."""
    key = scored.score_set.losses_key
    if not key:
        return None

    def make() -> plots.LossCurve | None:
        if not blobs.exists(key):
            return None
        losses = _load_losses(blobs, key)
        if losses.ndim != 2 or losses.shape[1] != len(scored.scores):
            return None
        levels = (scored.score_set.mask_fractions or {}).get("levels")
        return plots.loss_curve(
            losses,
            levels,
            codes=scored.codes,
            class_names=scored.class_names,
            max_classes=max_classes,
        )

    return _curves.get_or_make((key, max_classes), make)


def histogram(scored: ScoredJob, bins: int, max_classes: int) -> plots.ScoreHistogram:
    return plots.score_histogram(
        scored.scores, scored.codes, scored.class_names, bins, max_classes=max_classes
    )


def _extremes(scored: ScoredJob, k: int, max_classes: int) -> list[ClassExtremes]:
    """The k lowest and k highest scores of each class (ties by dataset order)."""
    scores = scored.scores
    finite = np.flatnonzero(np.isfinite(scores))
    codes = scored.codes
    names = scored.class_names
    if codes is None:
        group = np.zeros(len(finite), dtype=np.int64)
        groups: list[str | None] = [None]
    else:
        group = codes[finite].astype(np.int64)
        groups = list(names[: min(len(names), max_classes)])
    sort = np.lexsort((finite, scores[finite], group))
    order, sorted_groups = finite[sort], group[sort]
    ids_needed: list[int] = []
    spans = []
    for g in range(len(groups)):
        lo, hi = np.searchsorted(sorted_groups, [g, g + 1])
        members = order[lo:hi]
        easy = members[:k]
        hard = members[::-1][:k]
        spans.append((int(hi - lo), easy, hard))
        ids_needed.extend(easy.tolist())
        ids_needed.extend(hard.tolist())
    ids = dict(
        zip(ids_needed, scored.index.ids(np.asarray(ids_needed, dtype=np.int64)), strict=True)
    )

    def ref(i: int, label: str | None) -> SampleRef:
        return SampleRef(index=i, sample_id=ids[i], label=label, score=float(scores[i]))

    return [
        ClassExtremes(
            label=label,
            count=count,
            easiest=[ref(int(i), label) for i in easy],
            hardest=[ref(int(i), label) for i in hard],
        )
        for label, (count, easy, hard) in zip(groups, spans, strict=True)
    ]


def _score_stats(scores: np.ndarray) -> ScoreStats | None:
    finite = scores[np.isfinite(scores)].astype(np.float64)
    if finite.size == 0:
        return None
    return ScoreStats(
        min=float(finite.min()),
        max=float(finite.max()),
        mean=float(finite.mean()),
        median=float(np.median(finite)),
    )


def summary(blobs: BlobStore, scored: ScoredJob, bins: int, k: int, max_classes: int) -> JobSummary:
    """The job's summary: ``bins`` histogram bins, ``k`` samples per class and end, per-class
    figures for the first ``max_classes`` classes."""

    def make() -> JobSummary:
        scores = scored.scores
        n_scored = int(np.isfinite(scores).sum())
        hist = histogram(scored, bins, max_classes)
        curve = loss_curve(blobs, scored, max_classes)
        names = scored.class_names
        return JobSummary(
            job_id=scored.job.id,
            dataset_id=scored.dataset.id,
            dataset_name=scored.dataset.name,
            kind=scored.dataset.kind,
            model=scored.job.model,
            num_samples=len(scores),
            scored=n_scored,
            unscored=len(scores) - n_scored,
            bins=bins,
            k=k,
            classes_total=len(names),
            classes_shown=min(len(names), max_classes),
            score_stats=_score_stats(scores),
            histogram=Histogram.model_validate(hist.as_json()),
            loss_curve=LossCurveRead.model_validate(curve.as_json()) if curve else None,
            extremes=_extremes(scored, k, max_classes),
        )

    key = (scored.score_set.id, scored.dataset.id, bins, k, max_classes)
    cached = _summaries.get_or_make(key, make)
    # A cached job shares its score set with the job that computed it: answer with this job's id.
    return cached.model_copy(update={"job_id": scored.job.id, "model": scored.job.model})
