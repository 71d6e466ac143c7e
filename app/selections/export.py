"""The pruned dataset in its original format.

- image folders and archives (folder, zip, tar): a zip of the kept images in their class folders,
  under the sample ids (``cat/001.png``), bytes unchanged;
- JSON lines (text, alpaca, dolly, sharegpt): the kept lines byte for byte, in their order;
- a CSV or JSONL manifest: a zip of the kept manifest rows (byte for byte, CSV header first) and
  the kept images at the paths the rows name;
- .npz: an .npz of the kept rows of ``x`` (and ``y`` and ids when present), streamed row block by
  row block into the archive.

An export is built once per selection into the blob store (``exports/<selection id>/...``) and
served from there afterwards.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.blobstore import BlobStore
from app.config import Settings
from app.datasets.indexing import read_limits
from app.datasets.service import local_data_path
from app.models import Dataset, Selection
from worker.scoring.readers import open_dataset

ROW_BLOCK = 4096


@dataclass
class ExportFile:
    key: str
    filename: str
    media_type: str


def export_name(dataset: Dataset, selection: Selection, suffix: str) -> str:
    stem = dataset.name or dataset.filename or "dataset"
    for ext in (".tar.gz", ".tgz", ".tar", ".zip", ".npz", ".jsonl", ".json", ".csv"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem) or "dataset"
    return f"{stem}-{str(selection.id)[:8]}{suffix}"


def _suffix_and_type(fmt: str, path: Path) -> tuple[str, str]:
    if fmt in ("text", "alpaca", "dolly", "sharegpt"):
        return ".jsonl", "application/jsonl"
    if fmt == "npz":
        return ".npz", "application/octet-stream"
    return ".zip", "application/zip"


def build_export(
    dataset: Dataset,
    selection: Selection,
    kept: np.ndarray,
    settings: Settings,
    blobs: BlobStore,
) -> ExportFile:
    """Write the export to the blob store (once) and describe it."""
    path = local_data_path(dataset, settings, blobs)
    suffix, media_type = _suffix_and_type(dataset.format or "", path)
    filename = export_name(dataset, selection, suffix)
    key = f"exports/{selection.id}/{filename}"
    if blobs.exists(key):
        return ExportFile(key, filename, media_type)
    keep = [int(i) for i in kept]
    with open_dataset(path, limits=read_limits(settings)) as ds:
        if len(ds) != (dataset.num_samples or 0):
            raise RuntimeError("the dataset changed since it was indexed")
        with blobs.writer(key) as out:
            if ds.format in ("text", "alpaca", "dolly", "sharegpt"):
                _copy_spans(ds.path, ds.spans, keep, out)
            elif ds.format == "npz":
                _write_npz(ds, keep, out)
            elif ds.format == "manifest":
                _write_manifest_zip(ds, keep, out)
            else:
                _write_image_zip(ds, keep, out)
    return ExportFile(key, filename, media_type)


def _copy_spans(path: str, spans: np.ndarray, keep: list[int], out) -> None:  # type: ignore[no-untyped-def]
    with open(path, "rb") as src:
        for i in keep:
            start, end = int(spans[i, 0]), int(spans[i, 1])
            src.seek(start)
            out.write(src.read(end - start))


def _write_image_zip(ds, keep: list[int], out) -> None:  # type: ignore[no-untyped-def]
    # Images are already compressed: store them as they are.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for i, data in ds.iter_raw(keep):
            zf.writestr(ds.ids[i], data)


def _write_manifest_zip(ds, keep: list[int], out) -> None:  # type: ignore[no-untyped-def]
    name = os.path.basename(ds.path)
    with open(ds.path, "rb") as src:
        header = b""
        if name.lower().endswith(".csv"):
            # The CSV header is everything before the first data row.
            first = int(ds.spans[0, 0]) if len(ds.spans) else 0
            header = src.read(first)
        parts = [header]
        for i in keep:
            start, end = int(ds.spans[i, 0]), int(ds.spans[i, 1])
            src.seek(start)
            parts.append(src.read(end - start))
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        zf.writestr(name, b"".join(parts))
        for i, data in ds.iter_raw(keep):
            zf.writestr(ds.source(i), data, compress_type=zipfile.ZIP_STORED)


def _write_npz(ds, keep: list[int], out) -> None:  # type: ignore[no-untyped-def]
    idx = np.asarray(keep, dtype=np.int64)
    first = ds.read_rows(0, 1) if len(ds) else None
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        if first is not None:
            row_shape = first.shape[1:]
            header = {
                "descr": np.lib.format.dtype_to_descr(first.dtype),
                "fortran_order": False,
                "shape": (len(idx), *row_shape),
            }
            with zf.open("x.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(member, header)
                # One sequential pass over x in windows of rows; only kept rows are written.
                for lo in range(0, len(ds), ROW_BLOCK):
                    hi = min(len(ds), lo + ROW_BLOCK)
                    a, b = np.searchsorted(idx, [lo, hi])
                    if a == b:
                        continue
                    rows = ds.read_rows(lo, hi)
                    member.write(np.ascontiguousarray(rows[idx[a:b] - lo]).tobytes())
        raw = _npz_extras(ds.path)
        for name, arr in raw.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr[idx], allow_pickle=False)


def _npz_extras(path: str) -> dict[str, np.ndarray]:
    """The small per-row arrays beside ``x`` (labels, ids), loaded whole."""
    out = {}
    with np.load(path, allow_pickle=False) as z:
        for name in ("y", "id", "ids"):
            if name in z.files:
                out[name] = z[name]
    return out


def export_to_tempfile(blobs: BlobStore, key: str) -> str:
    """A local path to stream the export from (the blob itself when the store is local)."""
    if not blobs.remote:
        return str(blobs.local_path(key))
    fd, tmp = tempfile.mkstemp(prefix="dlcprune-export-")
    with os.fdopen(fd, "wb") as fh, blobs.open(key) as src:
        while chunk := src.read(1 << 20):
            fh.write(chunk)
    return tmp
