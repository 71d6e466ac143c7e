"""Routes of the dashboard: the page itself, and the JSON and plot endpoints it reads.

- ``GET /``: the one-page app (no key needed; the page asks for one when the API answers 401).
- ``GET /v1/jobs/{id}/summary``: score histograms per class, the loss-versus-mask-level curve and
  the easiest and hardest samples of each class.
- ``POST /v1/jobs/{id}/selections/preview``: what a selection would keep (size, class counts, the
  Kolmogorov-Smirnov statistic and total variation distance against the full set); stores nothing.
- ``GET /v1/jobs/{id}/plots/{histogram,loss-curve,distribution}.{png,svg}`` and
  ``GET /v1/selections/{id}/plots/distribution.{png,svg}``: the same plots as images for reports.
- ``GET /v1/datasets/{id}/samples/{index}`` and ``.../thumbnail``: one sample's id, label and text
  snippet, or a PNG thumbnail of at most 96 px (cached in the blob store under
  ``thumbs/<dataset id>/<index>.png``).

Every ``/v1`` route is scoped to the key's tenant: another tenant's ids answer 404. Scores, losses
and indexes never change once written, so their summaries are cached in memory by their ids.
"""

from __future__ import annotations

import io
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session

from app import plots
from app.blobstore import BlobStore, BlobStoreError
from app.config import Settings
from app.dashboard import STATIC_DIR
from app.datasets import service as datasets_service
from app.datasets.indexing import DatasetIndex, load_index, read_limits
from app.datasets.router import base_url
from app.deps import BlobDep, SessionDep, SettingsDep, TenantDep
from app.errors import APIError, conflict, not_found, unprocessable
from app.jobs import service as jobs_service
from app.models import Dataset, DatasetStatus, Job, JobStatus, ScoreSet
from app.selections import service as selections_service
from app.selections.schemas import SelectionCreate
from dlcprune.core.errors import DatasetError
from dlcprune.core.formats import Reader, open_dataset
from dlcprune.core.selection import DEFAULT_SPLIT

router = APIRouter()

THUMBNAIL_PX = 96
SNIPPET_CHARS = 300

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    404: {"description": "no such job, selection, dataset or sample for this tenant"},
    409: {"description": "the job has no scores yet, or the dataset is not ready"},
    422: {"description": "invalid parameters, or an operation the data's kind does not have"},
}

_IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {"content": {"image/png": {}, "image/svg+xml": {}}, "description": "the plot"},
}

PlotFormat = Literal["png", "svg"]
Strategy = Literal["flexrand", "easy", "hard", "random", "stratified", "ccs"]


# --------------------------------------------------------------------------------------------
# Small caches
# --------------------------------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A thread-safe least-recently-used map of immutable results."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[K, V] = OrderedDict()
        self.lock = threading.Lock()

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = make()
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


class _OpenReader:
    """An opened dataset reader; one request reads from it at a time."""

    def __init__(self, ds: Reader) -> None:
        self.ds = ds
        self.lock = threading.Lock()

    def payload(self, i: int) -> Any:
        with self.lock:
            for _, payload in self.ds.iter_range(i, i + 1):
                return payload
        raise IndexError(i)

    def close(self) -> None:
        with self.lock:
            self.ds.close()


class _ReaderCache:
    """A few opened readers, so that a gallery of text samples does not index the file again for
    every sample. Evicted readers are closed."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.items: OrderedDict[str, _OpenReader] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str, path: Path, settings: Settings) -> _OpenReader:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        reader = _OpenReader(open_dataset(path, limits=read_limits(settings)))
        evicted: list[_OpenReader] = []
        with self.lock:
            if key in self.items:  # another request opened it meanwhile
                evicted.append(reader)
                reader = self.items[key]
            else:
                self.items[key] = reader
            while len(self.items) > self.size:
                evicted.append(self.items.popitem(last=False)[1])
        for old in evicted:
            old.close()
        return reader

    def clear(self) -> None:
        with self.lock:
            readers = list(self.items.values())
            self.items.clear()
        for reader in readers:
            reader.close()


_summaries: _Lru[tuple[Any, ...], JobSummary] = _Lru(32)
_curves: _Lru[tuple[Any, ...], plots.LossCurve | None] = _Lru(16)
_snippets: _Lru[tuple[uuid.UUID, int], tuple[str, str | None]] = _Lru(4096)
readers = _ReaderCache()


def clear_caches() -> None:
    """Forget every cached summary, curve, snippet and open reader (tests, reconfiguration)."""
    _summaries.clear()
    _curves.clear()
    _snippets.clear()
    readers.clear()


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


class PreviewClass(BaseModel):
    label: str
    full: int
    kept: int


class PreviewHistogram(BaseModel):
    edges: list[float]
    full: list[int]
    kept: list[int]


class SelectionPreview(BaseModel):
    job_id: uuid.UUID
    keep: float
    strategy: str
    split: float
    seed: int
    size: int
    num_samples: int
    excluded: int = Field(description="samples without a score (never kept)")
    class_counts: dict[str, dict[str, int]] = Field(
        description='{"full": {class: n}, "kept": {class: n}}; empty objects when unlabelled'
    )
    classes: list[PreviewClass] = Field(description="the same counts as a list, in class order")
    ks_statistic: float = Field(
        description="two-sample Kolmogorov-Smirnov D between the kept and the full scores"
    )
    tv_distance: float | None = Field(
        description="total variation distance between class proportions (null if unlabelled)"
    )
    mean_score: dict[str, float | None]
    histogram: PreviewHistogram


class SampleRead(BaseModel):
    dataset_id: uuid.UUID
    index: int
    id: str
    label: str | None
    kind: str | None
    snippet: str | None = Field(
        default=None, description=f"text and instructions: the text, at most {SNIPPET_CHARS} chars"
    )
    thumbnail_url: str | None = Field(default=None, description="images: a PNG thumbnail")


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
def dashboard_page() -> FileResponse:
    """The dashboard (static HTML; it needs no key, the API calls it makes do)."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class _Scored:
    """A finished job with what its summaries need."""

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
        return self.index.label_array()

    @property
    def class_names(self) -> list[str]:
        return self.index.class_names


def _scored(session: Session, blobs: BlobStore, tenant: uuid.UUID, job_id: uuid.UUID) -> _Scored:
    job = jobs_service.get(session, tenant, job_id)
    if job.status != JobStatus.succeeded or job.score_set_id is None:
        raise conflict("job_not_ready", f"job {job.id} has no scores yet (status {job.status})")
    score_set = session.get(ScoreSet, job.score_set_id)
    dataset = session.get(Dataset, job.dataset_id)
    if score_set is None or dataset is None or dataset.index_key is None:
        raise not_found("dataset", job.dataset_id)
    return _Scored(job, dataset, score_set, load_index(blobs, dataset.index_key))


def _load_losses(blobs: BlobStore, key: str) -> np.ndarray:
    """The (L+1, N) loss matrix, memory-mapped when the blob is a local file."""
    try:
        return np.load(blobs.local_path(key), mmap_mode="r", allow_pickle=False)
    except BlobStoreError:
        return np.load(io.BytesIO(blobs.get_bytes(key)), allow_pickle=False)


def _curve(blobs: BlobStore, scored: _Scored, max_classes: int) -> plots.LossCurve | None:
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


def _extremes(scored: _Scored, k: int, max_classes: int) -> list[ClassExtremes]:
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


def _histogram(scored: _Scored, bins: int, max_classes: int) -> plots.ScoreHistogram:
    return plots.score_histogram(
        scored.scores, scored.codes, scored.class_names, bins, max_classes=max_classes
    )


def _image(data: bytes, fmt: str, name: str) -> Response:
    """A plot response: scores never change once stored, so a private cache may keep it."""
    headers = {
        "Content-Disposition": f'inline; filename="{name}.{fmt}"',
        "Cache-Control": "private, max-age=300",
    }
    return Response(content=data, media_type=plots.MEDIA_TYPES[fmt], headers=headers)


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


@router.get(
    "/v1/jobs/{job_id}/summary",
    response_model=JobSummary,
    responses=ERRORS,
    tags=["jobs"],
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
) -> JobSummary:
    scored = _scored(session, blobs, tenant, job_id)

    def make() -> JobSummary:
        scores = scored.scores
        n_scored = int(np.isfinite(scores).sum())
        hist = _histogram(scored, bins, max_classes)
        curve = _curve(blobs, scored, max_classes)
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
    summary = _summaries.get_or_make(key, make)
    # A cached job shares its score set with the job that computed it: answer with this job's id.
    return summary.model_copy(update={"job_id": scored.job.id, "model": scored.job.model})


# --------------------------------------------------------------------------------------------
# Selection preview
# --------------------------------------------------------------------------------------------


def _select(scored: _Scored, body: SelectionCreate) -> np.ndarray:
    """The indices ``POST /v1/jobs/{id}/selections`` would keep for ``body`` (same call)."""
    result = selections_service.run_strategy(scored.scores, scored.codes, body)
    return np.asarray(result.indices, dtype=np.int64)


def _preview(
    scored: _Scored, body: SelectionCreate, kept: np.ndarray, bins: int
) -> SelectionPreview:
    scores = scored.scores
    kept_scores = scores[kept]
    edges = plots.histogram_edges(scores, bins)
    names = scored.class_names
    codes = scored.codes
    if codes is not None and names:
        full_counts = np.bincount(codes, minlength=len(names))
        kept_counts = np.bincount(codes[kept], minlength=len(names))
        classes = [
            PreviewClass(label=name, full=int(f), kept=int(k))
            for name, f, k in zip(names, full_counts, kept_counts, strict=True)
        ]
        tv = plots.tv_distance(full_counts, kept_counts)
    else:
        classes, tv = [], None
    finite_all = scores[np.isfinite(scores)].astype(np.float64)
    finite_kept = kept_scores[np.isfinite(kept_scores)].astype(np.float64)
    return SelectionPreview(
        job_id=scored.job.id,
        keep=float(body.keep),
        strategy=body.strategy,
        split=float(body.split),
        seed=int(body.seed),
        size=len(kept),
        num_samples=len(scores),
        excluded=int(np.isnan(scores).sum()),
        class_counts={
            "full": {c.label: c.full for c in classes},
            "kept": {c.label: c.kept for c in classes},
        },
        classes=classes,
        ks_statistic=plots.ks_statistic(scores, kept_scores),
        tv_distance=tv,
        mean_score={
            "full": float(finite_all.mean()) if finite_all.size else None,
            "kept": float(finite_kept.mean()) if finite_kept.size else None,
        },
        histogram=PreviewHistogram(
            edges=[float(e) for e in edges],
            full=plots.counts_in(scores, edges).tolist(),
            kept=plots.counts_in(kept_scores, edges).tolist(),
        ),
    )


@router.post(
    "/v1/jobs/{job_id}/selections/preview",
    response_model=SelectionPreview,
    responses=ERRORS,
    tags=["selections"],
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
    scored = _scored(session, blobs, tenant, job_id)
    return _preview(scored, body, _select(scored, body), bins)


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


@router.get(
    "/v1/jobs/{job_id}/plots/histogram.{fmt}",
    responses=_IMAGE_RESPONSES,
    response_class=Response,
    tags=["jobs"],
    summary="Histogram of the DLC scores, overall and per class (PNG or SVG)",
)
def histogram_plot(
    job_id: uuid.UUID,
    fmt: PlotFormat,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    bins: Annotated[int, Query(ge=2, le=200)] = 30,
) -> Response:
    scored = _scored(session, blobs, tenant, job_id)
    hist = _histogram(scored, bins, plots.MAX_PLOTTED_CLASSES)
    if len(scored.class_names) > plots.MAX_PLOTTED_CLASSES:
        hist.classes, hist.per_class = [], []
    title = f"{scored.dataset.name} · {scored.job.model}"
    return _image(plots.render_histogram(hist, fmt, title), fmt, f"histogram-{str(job_id)[:8]}")


@router.get(
    "/v1/jobs/{job_id}/plots/loss-curve.{fmt}",
    responses=_IMAGE_RESPONSES,
    response_class=Response,
    tags=["jobs"],
    summary="Loss against the share of weights masked: mean and 10-90% band (PNG or SVG)",
)
def loss_curve_plot(
    job_id: uuid.UUID,
    fmt: PlotFormat,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
) -> Response:
    scored = _scored(session, blobs, tenant, job_id)
    curve = _curve(blobs, scored, 50)
    if curve is None:
        raise conflict("no_loss_curve", f"job {job_id} has no per-level losses stored")
    title = f"{scored.dataset.name} · {scored.job.model} · {curve.samples} samples"
    return _image(plots.render_loss_curve(curve, fmt, title), fmt, f"loss-curve-{str(job_id)[:8]}")


def _distribution(scored: _Scored, kept: np.ndarray, fmt: str, title: str, bins: int) -> bytes:
    scores = scored.scores
    edges = plots.histogram_edges(scores, bins)
    kept_scores = scores[kept]
    return plots.render_distribution(
        edges,
        plots.counts_in(scores, edges),
        plots.counts_in(kept_scores, edges),
        fmt,  # type: ignore[arg-type]
        ks=plots.ks_statistic(scores, kept_scores),
        title=title,
    )


@router.get(
    "/v1/jobs/{job_id}/plots/distribution.{fmt}",
    responses=_IMAGE_RESPONSES,
    response_class=Response,
    tags=["selections"],
    summary="A previewed selection's scores against the full set (PNG or SVG; stores nothing)",
)
def preview_distribution_plot(
    job_id: uuid.UUID,
    fmt: PlotFormat,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    keep: Annotated[float, Query(gt=0)],
    strategy: Strategy = "flexrand",
    split: Annotated[float, Query(ge=0, le=1)] = DEFAULT_SPLIT,
    seed: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    bins: Annotated[int, Query(ge=2, le=200)] = 30,
) -> Response:
    try:
        body = SelectionCreate(keep=keep, strategy=strategy, split=split, seed=seed)
    except ValidationError as exc:  # pragma: no cover - the Query constraints are the same
        raise unprocessable("validation_error", str(exc)) from exc
    scored = _scored(session, blobs, tenant, job_id)
    kept = _select(scored, body)
    title = f"{body.strategy}, keep {body.keep:g}: {len(kept)} of {len(scored.scores)}"
    data = _distribution(scored, kept, fmt, title, bins)
    return _image(data, fmt, f"distribution-{str(job_id)[:8]}")


@router.get(
    "/v1/selections/{selection_id}/plots/distribution.{fmt}",
    responses=_IMAGE_RESPONSES,
    response_class=Response,
    tags=["selections"],
    summary="A selection's scores against the full set (PNG or SVG)",
)
def selection_distribution_plot(
    selection_id: uuid.UUID,
    fmt: PlotFormat,
    session: SessionDep,
    blobs: BlobDep,
    tenant: TenantDep,
    bins: Annotated[int, Query(ge=2, le=200)] = 30,
) -> Response:
    row = selections_service.get(session, tenant, selection_id)
    scored = _scored(session, blobs, tenant, row.job_id)
    kept = selections_service.indices(row)
    title = f"{row.strategy}, keep {row.keep:g}: {row.size} of {len(scored.scores)}"
    data = _distribution(scored, kept, fmt, title, bins)
    return _image(data, fmt, f"distribution-{str(selection_id)[:8]}")


# --------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------


def _ready_dataset(
    session: Session, blobs: BlobStore, tenant: uuid.UUID, dataset_id: uuid.UUID, index: int
) -> tuple[Dataset, DatasetIndex]:
    dataset = datasets_service.get(session, tenant, dataset_id)
    if dataset.status == DatasetStatus.indexing:
        raise conflict("dataset_not_ready", f"dataset {dataset.id} is still being indexed")
    if dataset.status != DatasetStatus.ready or dataset.index_key is None:
        raise conflict("dataset_invalid", f"dataset {dataset.id} is invalid")
    idx = load_index(blobs, dataset.index_key)
    if not 0 <= index < len(idx):
        raise not_found("sample", f"{index} of dataset {dataset.id}")
    return dataset, idx


def _payload(dataset: Dataset, index: int, settings: Settings, blobs: BlobStore) -> Any:
    """Sample ``index``'s payload: a PIL image, a str, an Instruction or a vector."""
    try:
        path = datasets_service.local_data_path(dataset, settings, blobs)
        reader = readers.get(f"{dataset.id}:{path}", path, settings)
        return reader.payload(index)
    except DatasetError as exc:
        raise APIError(
            409, "dataset_unreadable", f"the dataset can no longer be read: {exc.message}"
        ) from exc
    except (BlobStoreError, OSError) as exc:
        raise APIError(409, "dataset_unreadable", "the dataset's data cannot be read") from exc


def _clip(text: str, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _snippet(payload: Any) -> str | None:
    if isinstance(payload, str):
        return _clip(payload)
    parts = []
    for name, heading in (
        ("instruction", "Instruction"),
        ("input", "Input"),
        ("response", "Response"),
    ):
        value = getattr(payload, name, None)
        if isinstance(value, str) and value.strip():
            parts.append(f"{heading}: {' '.join(value.split())}")
    return _clip(" | ".join(parts)) if parts else None


@router.get(
    "/v1/datasets/{dataset_id}/samples/{index}",
    response_model=SampleRead,
    responses=ERRORS,
    tags=["datasets"],
    summary="One sample: id, label, and a text snippet (text) or a thumbnail URL (images)",
)
def get_sample(
    dataset_id: uuid.UUID,
    index: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobDep,
    tenant: TenantDep,
) -> SampleRead:
    dataset, idx = _ready_dataset(session, blobs, tenant, dataset_id, index)
    labels = idx.labels(np.array([index])) if idx.labelled else None
    read = SampleRead(
        dataset_id=dataset.id,
        index=index,
        id=idx.id(index),
        label=labels[0] if labels else None,
        kind=dataset.kind,
    )
    url = base_url(request, settings)
    if dataset.kind == "image":
        read.thumbnail_url = f"{url}/v1/datasets/{dataset.id}/samples/{index}/thumbnail"
    elif dataset.kind in ("text", "instruction"):
        read.snippet = _snippets.get_or_make(
            (dataset.id, index), lambda: _snippet(_payload(dataset, index, settings, blobs))
        )
    return read


def _thumbnail_png(image: Any) -> bytes:
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise APIError(422, "not_an_image", "this sample is not an image")
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


@router.get(
    "/v1/datasets/{dataset_id}/samples/{index}/thumbnail",
    responses={
        **ERRORS,
        200: {"content": {"image/png": {}}, "description": "PNG, at most 96 px a side"},
    },
    response_class=Response,
    tags=["datasets"],
    summary=f"A PNG thumbnail (at most {THUMBNAIL_PX} px) of an image sample",
)
def get_thumbnail(
    dataset_id: uuid.UUID,
    index: int,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobDep,
    tenant: TenantDep,
) -> Response:
    dataset, _ = _ready_dataset(session, blobs, tenant, dataset_id, index)
    if dataset.kind != "image":
        raise APIError(
            422,
            "not_an_image",
            f"dataset {dataset.id} holds {dataset.kind or 'non-image'} samples; only image "
            "datasets have thumbnails (GET /v1/datasets/{id}/samples/{index} gives a snippet)",
        )
    key = f"thumbs/{dataset.id}/{index}.png"
    try:
        data = blobs.get_bytes(key)
    except BlobStoreError:
        data = _thumbnail_png(_payload(dataset, index, settings, blobs))
        blobs.put_bytes(key, data)
    return Response(
        content=data,
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=86400"},
    )
