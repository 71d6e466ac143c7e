"""Evaluation request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.datasets.schemas import ErrorInfo
from app.jobs.schemas import ProgressRead


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "strategies": ["flexrand", "moderate"],
                    "keep": [0.1, 0.3, 0.5],
                    "seeds": 10,
                    "holdout": 0.2,
                    "tolerance": 0.01,
                }
            ]
        },
    )

    strategies: list[str] = Field(
        min_length=1,
        max_length=9,
        description="selection strategies to compare (the control 'stratified' always runs too)",
    )
    keep: list[float] = Field(
        min_length=1, max_length=20, description="keep ratios, each in (0, 1)"
    )
    seeds: int = Field(default=10, ge=2, le=50, description="paired seeds per cell")
    holdout: float = Field(
        default=0.2, gt=0, lt=1, description="stratified held-out share (seed 0, every cell)"
    )
    tolerance: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="accuracy the recommendation may give up against the full set",
    )


class EvaluationRead(BaseModel):
    id: uuid.UUID
    job_id: uuid.UUID
    status: str = Field(description="queued, running, succeeded, failed or cancelled")
    request: dict[str, Any]
    progress: ProgressRead
    cancel_requested: bool = False
    error: ErrorInfo | None = None
    probe: str = Field(description="what the probe measures (a frozen-feature proxy)")
    result: dict[str, Any] | None = Field(
        default=None,
        description="cells (accuracy mean and 95% interval, paired difference from the "
        "control), the full-set accuracy and the recommendation",
    )
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    url: str
    plot_url: str


class EvaluationList(BaseModel):
    items: list[EvaluationRead]
    total: int
    limit: int
    offset: int
