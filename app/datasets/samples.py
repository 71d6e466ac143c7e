"""One sample of a ready dataset: its id, label and a text snippet, or a PNG thumbnail of an image
(``GET /v1/datasets/{id}/samples/{index}`` and ``.../thumbnail``).

Thumbnails are at most :data:`THUMBNAIL_PX` a side, cached in the blob store under
``thumbs/<dataset id>/<index>.png``. Snippets are cached in memory; a few opened readers are kept
(:class:`dlcprune.core.cache.LRU`, closed when evicted) so that a gallery of text samples does not
index the file again for every sample.
"""

from __future__ import annotations

import io
import threading
import uuid
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from app.blobstore import BlobStore, BlobStoreError
from app.config import Settings
from app.datasets import service as datasets_service
from app.datasets import sources
from app.datasets.indexing import DatasetIndex, load_index
from app.errors import APIError, conflict, not_found
from app.models import Dataset, DatasetStatus
from dlcprune.core.cache import LRU
from dlcprune.core.errors import DatasetError
from dlcprune.core.formats import Reader

THUMBNAIL_PX = 96
SNIPPET_CHARS = 300

# The sample routes' errors, in the words of the job and selection views they serve (the
# dashboard's): the OpenAPI document says the same as before the routes moved here.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    404: {"description": "no such job, selection, dataset or sample for this tenant"},
    409: {"description": "the job has no scores yet, or the dataset is not ready"},
    422: {"description": "invalid parameters, or an operation the data's kind does not have"},
}


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
        # Taken under the lock: a reader evicted mid-read closes once that read is done.
        with self.lock:
            self.ds.close()


_readers: LRU[str, _OpenReader] = LRU(4, on_evict=_OpenReader.close)
_snippets: LRU[tuple[uuid.UUID, int], str | None] = LRU(4096)


def ready_dataset(
    session: Session, blobs: BlobStore, tenant: uuid.UUID, dataset_id: uuid.UUID, index: int
) -> tuple[Dataset, DatasetIndex]:
    """The tenant's dataset and its index, if it is ready and has sample ``index`` (else 404 or
    409)."""
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
        reader = _readers.get_or_make(
            f"{dataset.id}:{dataset.sha256}",
            lambda: _OpenReader(sources.open_source(dataset, settings, blobs)[0]),
        )
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


def sample(
    dataset: Dataset,
    idx: DatasetIndex,
    index: int,
    base_url: str,
    settings: Settings,
    blobs: BlobStore,
) -> SampleRead:
    """Sample ``index``: a thumbnail URL for images, a snippet for text and instructions."""
    labels = idx.labels(np.array([index])) if idx.labelled else None
    read = SampleRead(
        dataset_id=dataset.id,
        index=index,
        id=idx.id(index),
        label=labels[0] if labels else None,
        kind=dataset.kind,
    )
    if dataset.kind == "image":
        read.thumbnail_url = f"{base_url}/v1/datasets/{dataset.id}/samples/{index}/thumbnail"
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


def thumbnail(dataset: Dataset, index: int, settings: Settings, blobs: BlobStore) -> bytes:
    """The PNG thumbnail of image sample ``index`` (made once, then read from the blob store);
    422 for a dataset that holds no images."""
    if dataset.kind != "image":
        raise APIError(
            422,
            "not_an_image",
            f"dataset {dataset.id} holds {dataset.kind or 'non-image'} samples; only image "
            "datasets have thumbnails (GET /v1/datasets/{id}/samples/{index} gives a snippet)",
        )
    key = f"thumbs/{dataset.id}/{index}.png"
    try:
        return blobs.get_bytes(key)
    except BlobStoreError:
        data = _thumbnail_png(_payload(dataset, index, settings, blobs))
        blobs.put_bytes(key, data)
        return data
