"""Dataset request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from dlcprune.core.formats import FORMATS
from dlcprune.core.formats.columns import ROLES

# The values ``format`` and a ``columns`` key may take: the formats registry's own lists.
FormatName = Literal[FORMATS]  # type: ignore[valid-type]
Role = Literal[ROLES]  # type: ignore[valid-type]
ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


NAME_MAX = 500
EXTERNAL_ID_MAX = 200
TAG_MAX = 64
TAGS_MAX = 20
# A client's labels for a resource (filter lists with ?tag=) and its own id for it.
Tag = Annotated[str, StringConstraints(min_length=1, max_length=TAG_MAX, pattern=r"^[^,\s]+$")]
TagsField = Annotated[
    list[Tag] | None,
    Field(max_length=TAGS_MAX, description=f"labels (at most {TAGS_MAX}, no spaces or commas)"),
]
ExternalIdField = Annotated[
    str | None,
    Field(min_length=1, max_length=EXTERNAL_ID_MAX, description="the client's own id for it"),
]


class ErrorInfo(BaseModel):
    code: str
    message: str


# How to read the data, for a reference (JSON fields) or an upload (form fields).
FormatOption = Annotated[
    FormatName | None,
    Field(description="read the data as this format instead of detecting it"),
]
ColumnsOption = Annotated[
    dict[Role, ColumnName] | None,
    Field(
        max_length=len(ROLES),
        description="which column (or field) holds each role, for formats with named fields "
        '(manifests, Parquet, Hugging Face, JSONL, WebDataset): {"image": "img", "label": "y"}',
    ),
]


class DatasetOptions(BaseModel):
    """An upload's form fields beside the file (``columns`` as a JSON object), with the JSON
    reference's limits."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, max_length=NAME_MAX)
    format: FormatOption = None
    columns: ColumnsOption = None
    tags: TagsField = None
    external_id: ExternalIdField = None


class DatasetReference(BaseModel):
    """Register data the service can already read, instead of uploading it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"uri": "file:///datasets/digits", "name": "digits"},
                {"uri": "s3://my-bucket/datasets/cifar10-train.tar.gz"},
                {
                    "uri": "file:///datasets/pets/manifest.parquet",
                    "format": "parquet",
                    "columns": {"image": "img", "label": "y"},
                },
            ]
        },
    )

    uri: str = Field(
        min_length=1,
        max_length=4096,
        description="file:// below an operator-configured root, or an enabled fsspec URL "
        "(s3://, gs://)",
    )
    name: str | None = Field(default=None, max_length=NAME_MAX)
    format: FormatOption = None
    columns: ColumnsOption = None
    tags: TagsField = None
    external_id: ExternalIdField = None


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
    format: str | None = Field(default=None, description="the format the data was read as")
    requested_format: str | None = Field(
        default=None, description="the format the registration named; null when detected"
    )
    columns: dict[str, str] | None = Field(
        default=None, description="the columns mapping the registration named (role to column)"
    )
    kind: str | None = Field(default=None, description="image, vector, text or instruction")
    size_bytes: int | None = None
    sha256: str | None = None
    num_samples: int | None = None
    classes: dict[str, int] | None = Field(
        default=None, description="class name to sample count; {} when unlabelled"
    )
    error: ErrorInfo | None = None
    tags: list[str] = Field(default_factory=list)
    external_id: str | None = None
    created_at: datetime
    updated_at: datetime
    url: str


class DatasetList(BaseModel):
    items: list[DatasetRead]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = Field(
        default=None, description="pass as ?cursor= for the next page; null on the last page"
    )
