"""Selection request and response bodies (previews included)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.embeddings.schemas import ExcludeSuspected
from app.jobs.schemas import request_model
from dlcprune.core.selection.params import SelectionParams
from dlcprune.names import DEFAULT_HARD_CUTOFF, SELECTION_STRATEGIES

# The strategy names as a type, so the schema lists them (an enum in the OpenAPI document).
StrategyName = Literal.__getitem__(SELECTION_STRATEGIES)  # type: ignore[attr-defined]

# The fields, defaults, bounds and descriptions are SelectionParams' (the CLI's options too).
_SelectionBase = request_model(
    SelectionParams,
    "SelectionBase",
    None,
    json_schema_extra={
        "examples": [
            {"keep": 0.3, "strategy": "flexrand", "split": 0.5, "seed": 0},
            {"keep": 500, "strategy": "stratified", "seed": 7},
            {"keep": 0.1, "strategy": "easy"},
        ]
    },
)


class SelectionCreate(_SelectionBase):  # type: ignore[misc, valid-type]
    """What a selection asks for: SelectionParams' fields, and optionally suspected mislabels
    to leave out first (computed from the job's kept embeddings)."""

    exclude_suspected: ExcludeSuspected | None = Field(
        default=None,
        description="leave out suspected mislabels (lowest self-confidence) before selecting: "
        "a share of the samples or a confidence threshold",
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
    keep: float
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
