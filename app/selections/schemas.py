"""Selection request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SelectionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"keep": 0.3, "strategy": "flexrand", "split": 0.5, "seed": 0},
                {"keep": 500, "strategy": "stratified", "seed": 7},
            ]
        },
    )

    keep: float = Field(
        gt=0,
        description="a ratio in (0, 1], or a count of samples (a whole number above 1)",
    )
    strategy: Literal["flexrand", "easy", "hard", "random", "stratified"] = "flexrand"
    split: float = Field(default=0.5, ge=0, le=1, description="FlexRand's easy share g")
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


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
