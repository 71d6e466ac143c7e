"""Writing a selection into an object store: every object first goes under a hidden temporary
prefix (``<target>/.dlcprune-partial-<export id>/``), and only when all are written are they
moved to the target prefix, so nothing half-written is ever visible there; a failed or
cancelled export removes its temporary objects.

Formats (``dlcprune.names.STORE_EXPORT_FORMATS``):

- ``original``: images as class folders (``<label>/<file>``, bytes unchanged; the sample id's
  own path for folders and archives); other data as the original-format file of the download
  route (the kept JSON lines, an .npz of the kept rows);
- ``manifest-csv`` / ``manifest-jsonl`` / ``parquet``: ``manifest.csv``, ``manifest.jsonl``,
  ``scores.parquet``: every sample with its label, score and kept flag (as the downloads);
- ``webdataset``: ``shard-000000.tar``, ... of ``SHARD_SAMPLES`` kept images each:
  ``<key>.<ext>``, ``<key>.cls`` (the class index) and ``<key>.json`` (sample id and label);
- ``hf``: a Hugging Face ``save_to_disk`` directory with ``image`` (``Image``), ``label``
  (``ClassLabel``) and ``sample_id`` columns.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from app.datasets.indexing import DatasetIndex
from dlcprune.core.formats import Reader
from dlcprune.core.storage import Store

SHARD_SAMPLES = 1000
PROGRESS_EVERY = 256
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")

Progress = Callable[[int], None]


class Sink:
    """Objects of one export: written under the temporary prefix, then published."""

    def __init__(self, store: Store, target: str, export_id: str) -> None:
        self.store = store
        self.target = target.rstrip("/")
        self.tmp = f"{self.target}/.dlcprune-partial-{export_id}"
        self.written: list[str] = []
        self.bytes = 0

    def _prepare(self, path: str) -> None:
        if self.store.scheme == "file":
            self.store.fs.makedirs(posixpath.dirname(path), exist_ok=True)

    def put(self, rel: str, data: bytes) -> None:
        path = f"{self.tmp}/{rel}"
        self._prepare(path)
        self.store.fs.pipe_file(path, data)
        self.written.append(rel)
        self.bytes += len(data)

    def put_file(self, rel: str, local: str | Path) -> None:
        path = f"{self.tmp}/{rel}"
        self._prepare(path)
        self.store.fs.put_file(str(local), path)
        self.written.append(rel)
        self.bytes += Path(local).stat().st_size

    def publish(self) -> None:
        for rel in self.written:
            final = f"{self.target}/{rel}"
            self._prepare(final)
            self.store.fs.mv(f"{self.tmp}/{rel}", final)
        self.discard()

    def discard(self) -> None:
        try:
            if self.store.fs.exists(self.tmp):
                self.store.fs.rm(self.tmp, recursive=True)
        except FileNotFoundError:
            pass


def _ext(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data.startswith(b"BM"):
        return ".bmp"
    return ".img"


def _safe(name: str) -> str:
    return _SAFE.sub("_", name).strip("._") or "sample"


def _images(ds: Reader, keep: list[int], progress: Progress) -> Iterator[tuple[int, bytes]]:
    if ds.kind != "image":
        raise ValueError(f"a {ds.kind} dataset has no images for this format")
    for n, (i, data) in enumerate(ds.iter_raw(keep), start=1):  # type: ignore[attr-defined]
        yield i, data
        if n % PROGRESS_EVERY == 0:
            progress(n)
    progress(len(keep))


def write_original(
    sink: Sink, ds: Reader, index: DatasetIndex, keep: list[int], progress: Progress
) -> None:
    labels = index.labels()
    own_paths = ds.format in ("folder", "zip", "tar")
    for i, data in _images(ds, keep, progress):
        sid = index.id(i)
        if own_paths:
            rel = "/".join(_safe(p) for p in sid.split("/"))
        else:
            label = _safe(labels[i]) if labels is not None else "unlabelled"
            stem = _safe(sid)
            rel = f"{label}/{stem}" if "." in stem[-5:] else f"{label}/{stem}{_ext(data)}"
        sink.put(rel, data)


def write_webdataset(
    sink: Sink, ds: Reader, index: DatasetIndex, keep: list[int], progress: Progress
) -> None:
    classes = index.class_names
    codes = index.label_codes

    def add(tarf: tarfile.TarFile, name: str, payload: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mtime = 0
        tarf.addfile(info, io.BytesIO(payload))

    for shard, start in enumerate(range(0, len(keep), SHARD_SAMPLES)):
        chunk = keep[start : start + SHARD_SAMPLES]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for i, data in _images(ds, chunk, lambda n, start=start: progress(start + n)):
                key = f"{i:09d}"
                add(tf, f"{key}{_ext(data)}", data)
                meta: dict[str, object] = {"sample_id": index.id(i)}
                if classes:
                    add(tf, f"{key}.cls", str(int(codes[i])).encode())
                    meta["label"] = classes[int(codes[i])]
                add(tf, f"{key}.json", json.dumps(meta, ensure_ascii=False).encode())
        sink.put(f"shard-{shard:06d}.tar", buf.getvalue())


def write_hf(
    sink: Sink, ds: Reader, index: DatasetIndex, keep: list[int], progress: Progress
) -> None:
    import datasets

    classes = index.class_names
    images, labels, ids = [], [], []
    for i, data in _images(ds, keep, progress):
        images.append({"bytes": data, "path": None})
        labels.append(int(index.label_codes[i]))
        ids.append(index.id(i))
    columns: dict[str, object] = {"image": images, "sample_id": ids}
    features = {"image": datasets.Image(), "sample_id": datasets.Value("string")}
    if classes:
        columns["label"] = labels
        features["label"] = datasets.ClassLabel(names=classes)
    table = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    with tempfile.TemporaryDirectory(prefix="dlcprune-hf-") as tmp:
        table.save_to_disk(tmp)
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                sink.put_file(path.relative_to(tmp).as_posix(), path)


def kept_list(kept: np.ndarray) -> list[int]:
    return [int(i) for i in kept]
