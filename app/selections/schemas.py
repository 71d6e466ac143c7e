"""Selection request and response bodies (previews included)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.embeddings.schemas import ExcludeSuspected
from app.jobs.schemas import request_model
from dlcprune.core.selection.params import SelectionParams
from dlcprune.names import DEFAULT_HARD_CUTOFF, SELECTION_STRATEGIES

# The strategy names as a type, so the schema lists them (an enum in the OpenAPI document).
StrategyName = Literal.__getitem__(SELECTION_STRATEGIES)  # type: ignore[attr-defined]

KEEP_HELP = (
    "deprecated alias of keep_ratio / keep_count: a number <= 1 is a ratio, a whole number "
    "above 1 a count; send keep_ratio or keep_count instead"
)


class _KeepFields(BaseModel):
    """How much to keep: exactly one of ``keep_ratio``, ``keep_count`` or (the older alias)
    ``keep``. After validation ``keep`` holds what the strategies take (a ratio, or a count)."""

    keep_ratio: float | None = Field(
        default=None,
        strict=True,
        gt=0,
        le=1,
        description="the share of samples to keep, in (0, 1]: 1 keeps every scored sample",
    )
    keep_count: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=2**31 - 1,
        description="how many samples to keep, >= 1 (at most the samples with a score)",
    )
    keep: (
        Annotated[float, Field(strict=True, gt=0, le=1)]
        | Annotated[int, Field(strict=True, ge=2, le=2**31 - 1)]
        | None
    ) = Field(default=None, description=KEEP_HELP, json_schema_extra={"deprecated": True})

    @model_validator(mode="after")
    def _one_keep(self) -> _KeepFields:
        given = [n for n in ("keep_ratio", "keep_count", "keep") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "send exactly one of keep_ratio (a share in (0, 1]) or keep_count (>= 1)"
                + (f"; got {', '.join(given)}" if given else "")
            )
        if self.keep_ratio is not None:
            self.keep = float(self.keep_ratio)
        elif self.keep_count is not None:
            self.keep = float(self.keep_count)
        else:
            value = self.keep
            if isinstance(value, int) and value >= 2:
                self.keep_count = value
            else:
                self.keep_ratio = float(value)  # type: ignore[arg-type]
            self.keep = float(value)  # type: ignore[arg-type]
        return self


# The other fields, defaults, bounds and descriptions are SelectionParams' (the CLI's options
# too); how much to keep is _KeepFields'.
_SelectionRest = request_model(SelectionParams, "_SelectionRest", None, exclude=("keep",))


class SelectionCreate(_KeepFields, _SelectionRest):  # type: ignore[misc, valid-type]
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"keep_ratio": 0.3, "strategy": "flexrand", "split": 0.5, "seed": 0},
                {"keep_count": 500, "strategy": "stratified", "seed": 7},
                {"keep_ratio": 0.1, "strategy": "easy"},
            ]
        },
    )

    exclude_suspected: ExcludeSuspected | None = Field(
        default=None,
        description="leave out suspected mislabels (lowest self-confidence) before selecting: "
        "a share of the samples or a confidence threshold. The job's label issues must be "
        "computed first (a worker does it: GET /v1/jobs/{id}/label-issues answers 202 until "
        "they are, then 200); before, the selection answers 409 label_issues_not_ready and "
        "queues them",
    )


class ProvenanceSelection(BaseModel):
    id: str
    strategy: str
    keep: float
    split: float
    hard_cutoff: float = DEFAULT_HARD_CUTOFF
    seed: int
    size: int
    excluded: int = 0


class ProvenanceDataset(BaseModel):
    id: str
    name: str | None = None
    filename: str | None = None
    format: str | None = None
    kind: str | None = None
    source: str | None = None
    num_samples: int | None = None
    sha256: str | None = Field(default=None, description="SHA-256 of the dataset's bytes")


class ProvenanceJob(BaseModel):
    id: str
    cached: bool | None = None
    finished_at: str | None = None


class ProvenanceModel(BaseModel):
    name: str | None = None
    weights_id: str | None = None
    weights_sha256: str | None = Field(default=None, description="null for registry models")


class ProvenanceMethod(BaseModel):
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class ProvenanceCode(BaseModel):
    package: str = "dlcprune"
    version: str | None = None
    commit: str | None = Field(default=None, description="git HEAD, or null outside a checkout")


class Provenance(BaseModel):
    """Where a selection came from; the same record is ``provenance.json`` in zip exports."""

    model_config = ConfigDict(extra="allow")

    schema_: str = Field(alias="schema", default="dlcprune.provenance/1")
    created_at: str | None = Field(default=None, description="the selection's creation time")
    selection: ProvenanceSelection
    dataset: ProvenanceDataset
    job: ProvenanceJob
    model: ProvenanceModel
    method: ProvenanceMethod
    code: ProvenanceCode


class SelectionRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0c2f6a1e-8d7b-4b3a-9e2f-1a2b3c4d5e6f",
                    "job_id": "5f1d8a4e-2b1c-4f7e-8a9b-0c1d2e3f4a5b",
                    "dataset_id": "9b0c3b8e-3d0c-4c55-9a53-5f4c3d2a1b10",
                    "keep": 0.3,
                    "strategy": "flexrand",
                    "split": 0.5,
                    "seed": 0,
                    "size": 539,
                    "num_samples": 1797,
                    "class_counts": {"0": 53, "1": 55},
                }
            ]
        }
    )

    id: uuid.UUID
    job_id: uuid.UUID
    dataset_id: uuid.UUID
    keep: float = Field(description="as asked: the ratio, or the count (see keep_ratio/keep_count)")
    keep_ratio: float | None = Field(default=None, description="the ratio asked for, or null")
    keep_count: int | None = Field(default=None, description="the count asked for, or null")
    strategy: str
    split: float
    hard_cutoff: float = DEFAULT_HARD_CUTOFF
    seed: int
    size: int
    num_samples: int
    class_counts: dict[str, int] = Field(description="kept samples per class; {} if unlabelled")
    excluded: int = Field(
        default=0, description="samples without a score, which a selection never keeps"
    )
    created_at: datetime
    url: str
    items_url: str
    export_url: str
    provenance: Provenance | None = Field(
        default=None,
        description="dataset (id, sha256), model and weights, method and parameters, the "
        "selection's settings and the code version; provenance.json in zip exports",
    )


class SelectionList(BaseModel):
    items: list[SelectionRead]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = None


class SelectionItem(BaseModel):
    sample_id: str
    label: str | None


class ItemPage(BaseModel):
    items: list[SelectionItem]
    total: int
    limit: int
    offset: int


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
