"""Dataset request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ErrorInfo(BaseModel):
    code: str
    message: str


class DatasetReference(BaseModel):
    """Register data the service can already read, instead of uploading it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"uri": "file:///datasets/digits", "name": "digits"},
                {"uri": "s3://my-bucket/datasets/cifar10-train.tar.gz"},
            ]
        },
    )

    uri: str = Field(
        min_length=1,
        max_length=4096,
        description="file:// below an operator-configured root, or an enabled fsspec URL "
        "(s3://, gs://)",
    )
    name: str | None = Field(default=None, max_length=500)


class DatasetRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "9b0c3b8e-3d0c-4c55-9a53-5f4c3d2a1b10",
                    "name": "digits.zip",
                    "status": "ready",
                    "source": "upload",
                    "filename": "digits.zip",
                    "format": "zip",
                    "kind": "image",
                    "size_bytes": 1160000,
                    "sha256": "5d41402abc4b2a76b9719d911017c592" * 2,
                    "num_samples": 1797,
                    "classes": {"0": 178, "1": 182},
                    "error": None,
                    "url": "http://127.0.0.1:8000/v1/datasets/9b0c3b8e-3d0c-4c55-9a53-5f4c3d2a1b10",
                }
            ]
        }
    )

    id: uuid.UUID
    name: str
    status: str = Field(description="indexing, ready or invalid")
    source: str = Field(description="upload or uri")
    uri: str | None = None
    filename: str
    format: str | None = None
    kind: str | None = Field(default=None, description="image, vector, text or instruction")
    size_bytes: int | None = None
    sha256: str | None = None
    num_samples: int | None = None
    classes: dict[str, int] | None = Field(
        default=None, description="class name to sample count; {} when unlabelled"
    )
    error: ErrorInfo | None = None
    created_at: datetime
    updated_at: datetime
    url: str


class DatasetList(BaseModel):
    items: list[DatasetRead]
    total: int
    limit: int
    offset: int
