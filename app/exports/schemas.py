"""Export request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.datasets.schemas import ErrorInfo
from dlcprune.names import STORE_EXPORT_FORMATS

StoreFormat = Literal[STORE_EXPORT_FORMATS]  # type: ignore[valid-type]


class ExportCreate(BaseModel):
    """Write a selection's samples into an object store."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"uri": "s3://my-bucket/pruned/cifar10-30pct/", "format": "original"},
                {"uri": "s3://my-bucket/pruned/shards/", "format": "webdataset"},
            ]
        },
    )

    uri: str = Field(
        min_length=1,
        max_length=4096,
        description="a prefix ending in '/' in an enabled store (s3://, gs://) or below a "
        "file root (file://); it must hold no objects yet",
    )
    format: StoreFormat = Field(
        default="original",
        description="original (class folders of the kept images, or the kept rows), "
        "manifest-csv, manifest-jsonl, parquet (every sample, scored and flagged), webdataset "
        "(tar shards of the kept samples), hf (a Hugging Face save_to_disk directory)",
    )


class ExportRead(BaseModel):
    id: uuid.UUID
    selection_id: uuid.UUID
    uri: str
    format: str
    status: str = Field(description="queued, running, succeeded, failed or cancelled")
    progress: dict[str, int] = Field(description="done and total samples")
    objects: int = Field(description="objects written (visible once succeeded)")
    bytes_written: int
    cancel_requested: bool
    error: ErrorInfo | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    url: str


class ExportList(BaseModel):
    items: list[ExportRead]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = None
