"""Validate and index a dataset: format, sample ids, labels, classes; stored as one blob.

The index blob (``datasets/<id>/index.npz``) holds every sample id as UTF-8 bytes
(``ids_utf8`` uint8 + ``id_offsets`` int64 (N+1,)), the label codes (``label_codes`` int32 (N,),
-1 when unlabelled) and the class names in order. The API reads it for selections, items and
exports without re-reading the data; the worker reads the data itself.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.blobstore import BlobStore
from app.config import Settings
from dlcprune.core.cache import LRU
from dlcprune.core.errors import DatasetError
from dlcprune.core.formats import Reader, ReadLimits, open_dataset

if TYPE_CHECKING:
    from app.models import Dataset


@dataclass
class IndexResult:
    format: str
    kind: str
    num_samples: int
    classes: dict[str, int]
    index_bytes: bytes


@dataclass
class DatasetIndex:
    ids_utf8: np.ndarray  # (B,) uint8
    id_offsets: np.ndarray  # (N+1,) int64
    label_codes: np.ndarray  # (N,) int32, -1 = unlabelled
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.id_offsets) - 1

    @property
    def labelled(self) -> bool:
        return bool(self.class_names)

    def id_bytes(self, i: int) -> bytes:
        return self.ids_utf8[self.id_offsets[i] : self.id_offsets[i + 1]].tobytes()

    def id(self, i: int) -> str:
        return self.id_bytes(i).decode("utf-8")

    def ids(self, indices: np.ndarray | None = None) -> list[str]:
        rng = range(len(self)) if indices is None else indices.tolist()
        raw = self.ids_utf8.tobytes()
        off = self.id_offsets
        return [raw[off[i] : off[i + 1]].decode("utf-8") for i in rng]

    def labels(self, indices: np.ndarray | None = None) -> list[str] | None:
        if not self.labelled:
            return None
        codes = self.label_codes if indices is None else self.label_codes[indices]
        names = self.class_names
        return [names[c] for c in codes.tolist()]

    def label_array(self) -> np.ndarray | None:
        """(N,) int32 codes for selection (class order = ``class_names`` order), or None."""
        return self.label_codes if self.labelled else None


def build_index(ds: Reader) -> bytes:
    encoded = [sid.encode("utf-8") for sid in ds.ids]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    ids_utf8 = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    class_names = list(ds.classes)
    if ds.labels is None:
        codes = np.full(len(encoded), -1, dtype=np.int32)
    else:
        lookup = {name: i for i, name in enumerate(class_names)}
        codes = np.fromiter((lookup[x] for x in ds.labels), dtype=np.int32, count=len(ds.labels))
    buf = io.BytesIO()
    np.savez(
        buf,
        ids_utf8=ids_utf8,
        id_offsets=offsets,
        label_codes=codes,
        class_names=np.array(class_names, dtype=np.str_),
    )
    return buf.getvalue()


def parse_index(data: bytes) -> DatasetIndex:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return DatasetIndex(
            ids_utf8=z["ids_utf8"],
            id_offsets=z["id_offsets"],
            label_codes=z["label_codes"],
            class_names=[str(c) for c in z["class_names"].tolist()],
        )


# Recently used indexes, by blob key (an index never changes once written).
index_cache: LRU[str, DatasetIndex] = LRU(8)


def load_index(blobs: BlobStore, key: str) -> DatasetIndex:
    """The index stored at blob ``key``, read and parsed once while it stays in ``index_cache``."""
    return index_cache.get_or_make(key, lambda: parse_index(blobs.get_bytes(key)))


def read_limits(settings: Settings) -> ReadLimits:
    return ReadLimits(
        max_samples=settings.max_samples,
        max_members=settings.max_archive_members,
        max_total_bytes=settings.max_archive_bytes,
        max_member_bytes=min(2 * 2**30, settings.max_archive_bytes),
        max_compression_ratio=settings.max_compression_ratio,
        max_image_pixels=settings.max_image_pixels,
        max_line_bytes=settings.max_line_bytes,
        max_array_bytes=settings.max_array_bytes,
    )


def public_message(err: DatasetError, local_path: str | os.PathLike[str], name: str) -> str:
    """The error's one-line message with the service's own storage path replaced by the name the
    user knows (the upload's filename or the reference URI)."""
    text = str(err)
    local = str(local_path)
    # A message may already name the reference URI, which holds the local path
    # (file:///refs/x.zip): keep those as they are rather than nesting the URI in itself.
    keep = "\x00name\x00"
    text = text.replace(name, keep)
    if err.path and str(err.path).startswith(local):
        rel = str(err.path)[len(local) :].lstrip("/")
        shown = f"{keep}/{rel}" if rel else keep
        text = text.replace(str(err.path), shown, 1)
    return text.replace(local, keep).replace(keep, name)


def open_reader(
    dataset: Dataset,
    path: str | os.PathLike[str] | list[str],
    settings: Settings,
) -> Reader:
    """The reader of ``dataset``'s data at ``path`` (its local copy): read with the settings'
    limits and the format and columns mapping its registration named. Every place that opens a
    dataset's files opens them here."""
    return open_dataset(
        [os.fspath(p) for p in path] if isinstance(path, (list, tuple)) else Path(path),
        format=dataset.requested_format,
        limits=read_limits(settings),
        columns=dataset.columns or None,
    )


def index_reader(ds: Reader) -> IndexResult:
    """Deep-check an open dataset and build its index; raises ``DatasetError`` when it is not
    valid."""
    ds.verify()
    return IndexResult(
        format=ds.format,
        kind=ds.kind,
        num_samples=len(ds),
        classes=dict(ds.classes),
        index_bytes=build_index(ds),
    )


def index_path(dataset: Dataset, path: str | os.PathLike[str], settings: Settings) -> IndexResult:
    """Open and deep-check ``dataset``'s data at ``path``; raises ``DatasetError`` when it is not
    valid."""
    with open_reader(dataset, path, settings) as ds:
        return index_reader(ds)
