"""What the client returns: frozen dataclasses read from the API's JSON (``from_json``), each
keeping the whole answer in ``raw`` for fields added after this client was written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "FINISHED",
    "Dataset",
    "ErrorInfo",
    "Item",
    "Job",
    "Preview",
    "Progress",
    "Score",
    "Selection",
    "StoreExport",
    "Weights",
]


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class ErrorInfo:
    """Why a dataset is invalid or a job failed."""

    code: str
    message: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ErrorInfo | None:
        if not data:
            return None
        return cls(code=str(data.get("code", "")), message=str(data.get("message", "")))


@dataclass(frozen=True)
class Dataset:
    """A registered dataset (``GET /v1/datasets/{id}``)."""

    id: str
    name: str
    status: str  # indexing, ready or invalid
    source: str
    filename: str
    uri: str | None = None
    format: str | None = None
    kind: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    num_samples: int | None = None
    classes: dict[str, int] | None = None
    error: ErrorInfo | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    url: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Dataset:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            status=str(data["status"]),
            source=str(data.get("source") or ""),
            filename=str(data.get("filename") or ""),
            uri=data.get("uri"),
            format=data.get("format"),
            kind=data.get("kind"),
            size_bytes=data.get("size_bytes"),
            sha256=data.get("sha256"),
            num_samples=data.get("num_samples"),
            classes=data.get("classes"),
            error=ErrorInfo.from_json(data.get("error")),
            created_at=_time(data.get("created_at")),
            updated_at=_time(data.get("updated_at")),
            url=str(data.get("url") or ""),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Weights:
    """An uploaded weights file (``POST /v1/weights``)."""

    id: str
    filename: str
    size_bytes: int
    sha256: str
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Weights:
        return cls(
            id=str(data["id"]),
            filename=str(data.get("filename") or ""),
            size_bytes=int(data.get("size_bytes") or 0),
            sha256=str(data.get("sha256") or ""),
            created_at=_time(data.get("created_at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Progress:
    """Where a job stands: work units done of total, the stage, the estimated time left."""

    done: int
    total: int
    fraction: float
    stage: str
    eta_seconds: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Progress:
        data = data or {}
        return cls(
            done=int(data.get("done") or 0),
            total=int(data.get("total") or 0),
            fraction=float(data.get("fraction") or 0.0),
            stage=str(data.get("stage") or ""),
            eta_seconds=data.get("eta_seconds"),
        )


FINISHED = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class Job:
    """A scoring job (``GET /v1/jobs/{id}``)."""

    id: str
    dataset_id: str
    model: str
    method: str
    params: dict[str, Any]
    status: str  # queued, running, succeeded, failed or cancelled
    cached: bool
    progress: Progress
    weights_id: str | None = None
    unscored: int = 0
    cancel_requested: bool = False
    error: ErrorInfo | None = None
    attempts: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    timings: dict[str, float] = field(default_factory=dict)
    url: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """Succeeded, failed or cancelled: the job will not change any more."""
        return self.status in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        return cls(
            id=str(data["id"]),
            dataset_id=str(data["dataset_id"]),
            model=str(data.get("model") or ""),
            method=str(data.get("method") or ""),
            params=dict(data.get("params") or {}),
            status=str(data["status"]),
            cached=bool(data.get("cached")),
            progress=Progress.from_json(data.get("progress")),
            weights_id=data.get("weights_id"),
            unscored=int(data.get("unscored") or 0),
            cancel_requested=bool(data.get("cancel_requested")),
            error=ErrorInfo.from_json(data.get("error")),
            attempts=int(data.get("attempts") or 0),
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            timings=dict(data.get("timings") or {}),
            url=str(data.get("url") or ""),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Score:
    """One sample's DLC score (None when it could not be scored)."""

    sample_id: str
    label: str | None
    score: float | None
    tokens: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Score:
        return cls(
            sample_id=str(data["sample_id"]),
            label=data.get("label"),
            score=data.get("score"),
            tokens=data.get("tokens"),
        )


@dataclass(frozen=True)
class Selection:
    """A stored subset (``GET /v1/selections/{id}``), with its provenance record."""

    id: str
    job_id: str
    dataset_id: str
    keep: float
    strategy: str
    split: float
    seed: int
    size: int
    num_samples: int
    class_counts: dict[str, int]
    excluded: int = 0
    created_at: datetime | None = None
    url: str = ""
    items_url: str = ""
    export_url: str = ""
    provenance: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Selection:
        return cls(
            id=str(data["id"]),
            job_id=str(data["job_id"]),
            dataset_id=str(data["dataset_id"]),
            keep=float(data["keep"]),
            strategy=str(data["strategy"]),
            split=float(data.get("split") or 0.0),
            seed=int(data.get("seed") or 0),
            size=int(data["size"]),
            num_samples=int(data.get("num_samples") or 0),
            class_counts=dict(data.get("class_counts") or {}),
            excluded=int(data.get("excluded") or 0),
            created_at=_time(data.get("created_at")),
            url=str(data.get("url") or ""),
            items_url=str(data.get("items_url") or ""),
            export_url=str(data.get("export_url") or ""),
            provenance=data.get("provenance"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Preview:
    """What a selection would keep (``POST /v1/jobs/{id}/selections/preview``; nothing stored)."""

    job_id: str
    keep: float
    strategy: str
    split: float
    seed: int
    size: int
    num_samples: int
    excluded: int
    class_counts: dict[str, dict[str, int]]
    ks_statistic: float
    tv_distance: float | None
    mean_score: dict[str, float | None]
    histogram: dict[str, list[Any]]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preview:
        return cls(
            job_id=str(data["job_id"]),
            keep=float(data["keep"]),
            strategy=str(data["strategy"]),
            split=float(data.get("split") or 0.0),
            seed=int(data.get("seed") or 0),
            size=int(data["size"]),
            num_samples=int(data["num_samples"]),
            excluded=int(data.get("excluded") or 0),
            class_counts=dict(data.get("class_counts") or {}),
            ks_statistic=float(data["ks_statistic"]),
            tv_distance=data.get("tv_distance"),
            mean_score=dict(data.get("mean_score") or {}),
            histogram=dict(data.get("histogram") or {}),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Item:
    """A kept sample of a selection."""

    sample_id: str
    label: str | None


@dataclass(frozen=True)
class StoreExport:
    """A selection written into an object store (``GET /v1/exports/{id}``)."""

    id: str
    selection_id: str
    uri: str
    format: str
    status: str  # queued, running, succeeded, failed or cancelled
    done: int
    total: int
    objects: int = 0
    bytes_written: int = 0
    error: ErrorInfo | None = None
    url: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoreExport:
        progress = data.get("progress") or {}
        return cls(
            id=str(data["id"]),
            selection_id=str(data["selection_id"]),
            uri=str(data["uri"]),
            format=str(data["format"]),
            status=str(data["status"]),
            done=int(progress.get("done") or 0),
            total=int(progress.get("total") or 0),
            objects=int(data.get("objects") or 0),
            bytes_written=int(data.get("bytes_written") or 0),
            error=ErrorInfo.from_json(data.get("error")),
            url=str(data.get("url") or ""),
            raw=dict(data),
        )
