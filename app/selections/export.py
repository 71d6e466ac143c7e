"""Exports of a selection: the pruned dataset in its original format, a manifest of every
sample (CSV or JSON lines), the scores as Parquet, and a bundle of the three with provenance.

The original format:

- image folders and archives (folder, zip, tar): a zip of the kept images in their class folders,
  under the sample ids (``cat/001.png``), bytes unchanged;
- JSON lines (text, alpaca, dolly, sharegpt): the kept lines byte for byte, in their order;
- a CSV or JSONL manifest: a zip of the kept manifest rows (byte for byte, CSV header first) and
  the kept images at the paths the rows name;
- .npz: an .npz of the kept rows of ``x`` (and ``y`` and ids when present), streamed row block by
  row block into the archive.

With ``provenance`` given, the zips (image folders and archives, CSV/JSONL manifests) also hold
``provenance.json`` as their last member (stored apart, under ``with-provenance/``; without it the
export is exactly the one above).

The other formats (of ``dlcprune.names.EXPORT_FORMATS``), one row per sample of the dataset in
its order:

- ``manifest-csv``: ``sample_id,label,score,kept`` (empty label when unlabelled, empty score when
  the sample could not be scored, kept ``true``/``false``);
- ``manifest-jsonl``: ``{"sample_id", "label", "score", "kept"}`` per line (nulls for the same);
- ``parquet``: columns ``sample_id`` (string), ``label`` (string, null when unlabelled), ``score``
  (float32, null when unscored), ``kept`` (bool) and ``tokens`` (int32, instruction data only);
  the provenance record is in the file's key-value metadata under ``dlcprune.provenance``;
- ``bundle``: a zip of the original-format export (under its own file name), ``manifest.csv`` and
  ``provenance.json``.

An export is built once per selection into the blob store (``exports/<selection id>/...``) and
served from there afterwards.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from app.blobstore import BlobStore
from app.config import Settings
from app.datasets.indexing import DatasetIndex
from app.datasets.sources import open_source
from app.models import Dataset, Selection
from dlcprune.core.formats.remote import RemoteImageReader

ROW_BLOCK = 4096
MANIFEST_BLOCK = 20_000
PARQUET_ROW_GROUP = 262_144
PROVENANCE_MEMBER = "provenance.json"
PARQUET_TYPE = "application/vnd.apache.parquet"


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


def _suffix_and_type(fmt: str) -> tuple[str, str]:
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
    provenance: bytes | None = None,
) -> ExportFile:
    """Write the original-format export to the blob store (once) and describe it. With
    ``provenance``, zip exports also hold it as ``provenance.json``."""
    suffix, media_type = _suffix_and_type(dataset.format or "")
    filename = export_name(dataset, selection, suffix)
    with_provenance = provenance is not None and suffix == ".zip"
    folder = "with-provenance/" if with_provenance else ""
    key = f"exports/{selection.id}/{folder}{filename}"
    if blobs.exists(key):
        return ExportFile(key, filename, media_type)
    keep = [int(i) for i in kept]
    extra = provenance if with_provenance else None
    reader, _ = open_source(dataset, settings, blobs)
    with reader as ds:
        if len(ds) != (dataset.num_samples or 0):
            raise RuntimeError("the dataset changed since it was indexed")
        with blobs.writer(key) as out:
            if ds.format in ("text", "alpaca", "dolly", "sharegpt"):
                _copy_spans(ds.path, ds.spans, keep, out)
            elif ds.format == "npz":
                _write_npz(ds, keep, out)
            elif ds.format == "manifest" and not isinstance(ds, RemoteImageReader):
                _write_manifest_zip(ds, keep, out, extra)
            else:
                _write_image_zip(ds, keep, out, extra)
    return ExportFile(key, filename, media_type)


def _copy_spans(path: str, spans: np.ndarray, keep: list[int], out) -> None:  # type: ignore[no-untyped-def]
    with open(path, "rb") as src:
        for i in keep:
            start, end = int(spans[i, 0]), int(spans[i, 1])
            src.seek(start)
            out.write(src.read(end - start))


def _write_image_zip(ds, keep: list[int], out, provenance: bytes | None = None) -> None:  # type: ignore[no-untyped-def]
    # Images are already compressed: store them as they are.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for i, data in ds.iter_raw(keep):
            zf.writestr(ds.ids[i], data)
        if provenance is not None:
            zf.writestr(PROVENANCE_MEMBER, provenance, compress_type=zipfile.ZIP_DEFLATED)


def _write_manifest_zip(ds, keep: list[int], out, provenance: bytes | None = None) -> None:  # type: ignore[no-untyped-def]
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
        if provenance is not None:
            zf.writestr(PROVENANCE_MEMBER, provenance)


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
    """A local path to stream the export from (the blob itself when the store is local; else a
    temporary copy, which ``file_response`` removes once sent)."""
    if not blobs.remote:
        return str(blobs.local_path(key))
    fd, tmp = tempfile.mkstemp(prefix="dlcprune-export-")
    try:
        with os.fdopen(fd, "wb") as fh, blobs.open(key) as src:
            while chunk := src.read(1 << 20):
                fh.write(chunk)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def file_response(blobs: BlobStore, out: ExportFile):  # type: ignore[no-untyped-def]
    """The export streamed from a local file; a temporary copy of a remote blob is removed once
    the response has been sent (or the client went away)."""
    from starlette.background import BackgroundTask
    from starlette.responses import FileResponse

    path = export_to_tempfile(blobs, out.key)
    cleanup = None
    if blobs.remote:
        cleanup = BackgroundTask(lambda: os.path.exists(path) and os.unlink(path))
    return FileResponse(path, media_type=out.media_type, filename=out.filename, background=cleanup)


# Manifests, Parquet and bundles ----------------------------------------------------------------


def _kept_mask(n: int, kept: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[np.asarray(kept, dtype=np.int64)] = True
    return mask


def _blocks(n: int, size: int) -> Iterator[np.ndarray]:
    for lo in range(0, n, size):
        yield np.arange(lo, min(n, lo + size), dtype=np.int64)


def _check_lengths(scores: np.ndarray, index: DatasetIndex) -> None:
    if len(scores) != len(index):
        raise RuntimeError("the scores do not match the dataset's index")


def write_manifest(
    out: IO[bytes], index: DatasetIndex, scores: np.ndarray, kept: np.ndarray, fmt: str
) -> None:
    """Every sample in dataset order with its label, score and kept flag, as CSV or JSONL."""
    _check_lengths(scores, index)
    mask = _kept_mask(len(index), kept)
    if fmt == "csv":
        out.write(b"sample_id,label,score,kept\n")
    for rows in _blocks(len(index), MANIFEST_BLOCK):
        ids = index.ids(rows)
        labels = index.labels(rows)
        values = scores[rows].tolist()
        flags = mask[rows].tolist()
        buf = io.StringIO()
        if fmt == "csv":
            writer = csv.writer(buf, lineterminator="\n")
            for k, sid in enumerate(ids):
                value = values[k]
                writer.writerow(
                    [
                        sid,
                        labels[k] if labels is not None else "",
                        "" if math.isnan(value) else f"{value:.9g}",
                        "true" if flags[k] else "false",
                    ]
                )
        else:
            for k, sid in enumerate(ids):
                value = values[k]
                record = {
                    "sample_id": sid,
                    "label": labels[k] if labels is not None else None,
                    "score": None if math.isnan(value) else value,
                    "kept": flags[k],
                }
                buf.write(json.dumps(record, ensure_ascii=False))
                buf.write("\n")
        out.write(buf.getvalue().encode("utf-8"))


def build_manifest(
    dataset: Dataset,
    selection: Selection,
    kept: np.ndarray,
    scores: np.ndarray,
    index: DatasetIndex,
    fmt: str,
    blobs: BlobStore,
) -> ExportFile:
    """``manifest-csv`` or ``manifest-jsonl`` (``fmt`` is ``csv`` or ``jsonl``), built once."""
    if fmt == "csv":
        suffix, media_type = "-manifest.csv", "text/csv; charset=utf-8"
    else:
        suffix, media_type = "-manifest.jsonl", "application/jsonl"
    filename = export_name(dataset, selection, suffix)
    key = f"exports/{selection.id}/{filename}"
    if not blobs.exists(key):
        with blobs.writer(key) as out:
            write_manifest(out, index, scores, kept, fmt)
    return ExportFile(key, filename, media_type)


def write_parquet(
    out: IO[bytes],
    index: DatasetIndex,
    scores: np.ndarray,
    tokens: np.ndarray | None,
    kept: np.ndarray,
    provenance: bytes | None = None,
) -> None:
    """The scores as Parquet: sample_id, label, score, kept (and tokens), in dataset order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_lengths(scores, index)
    fields = [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("kept", pa.bool_(), nullable=False),
    ]
    if tokens is not None:
        fields.append(pa.field("tokens", pa.int32()))
    metadata = {b"dlcprune.provenance": provenance} if provenance is not None else None
    schema = pa.schema(fields, metadata=metadata)
    mask = _kept_mask(len(index), kept)
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for rows in _blocks(len(index), PARQUET_ROW_GROUP):
            block = np.asarray(scores[rows], dtype=np.float32)
            columns = [
                pa.array(index.ids(rows), type=pa.string()),
                pa.array(index.labels(rows), type=pa.string())
                if index.labelled
                else pa.nulls(len(rows), type=pa.string()),
                pa.array(block, type=pa.float32(), mask=np.isnan(block)),
                pa.array(mask[rows], type=pa.bool_()),
            ]
            if tokens is not None:
                columns.append(pa.array(np.asarray(tokens[rows], dtype=np.int32)))
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
        if len(index) == 0:
            writer.write_table(schema.empty_table())


def build_parquet(
    dataset: Dataset,
    selection: Selection,
    kept: np.ndarray,
    scores: np.ndarray,
    tokens: np.ndarray | None,
    index: DatasetIndex,
    blobs: BlobStore,
    provenance: bytes | None = None,
) -> ExportFile:
    """``parquet``: the scores file, built once into the blob store."""
    filename = export_name(dataset, selection, "-scores.parquet")
    key = f"exports/{selection.id}/{filename}"
    if not blobs.exists(key):
        with blobs.writer(key) as out:
            write_parquet(out, index, scores, tokens, kept, provenance)
    return ExportFile(key, filename, PARQUET_TYPE)


def _add_member(zf: zipfile.ZipFile, name: str, src: IO[bytes], compress: int) -> None:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.compress_type = compress
    info.external_attr = 0o644 << 16
    with zf.open(info, "w", force_zip64=True) as member:
        shutil.copyfileobj(src, member, 1 << 20)


def build_bundle(
    dataset: Dataset,
    selection: Selection,
    kept: np.ndarray,
    scores: np.ndarray,
    index: DatasetIndex,
    settings: Settings,
    blobs: BlobStore,
    provenance: bytes,
) -> ExportFile:
    """``bundle``: a zip of the original-format export, ``manifest.csv`` and
    ``provenance.json``, built once."""
    filename = export_name(dataset, selection, "-bundle.zip")
    key = f"exports/{selection.id}/{filename}"
    if blobs.exists(key):
        return ExportFile(key, filename, "application/zip")
    original = build_export(dataset, selection, kept, settings, blobs)
    manifest = build_manifest(dataset, selection, kept, scores, index, "csv", blobs)
    # Zips and .npz are compressed already (or hold compressed images): stored as they are.
    stored = original.filename.lower().endswith((".zip", ".npz"))
    with (
        blobs.writer(key) as out,
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf,
    ):
        with blobs.open(original.key) as src:
            _add_member(
                zf,
                original.filename,
                src,
                zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
            )
        with blobs.open(manifest.key) as src:
            _add_member(zf, "manifest.csv", src, zipfile.ZIP_DEFLATED)
        zf.writestr(PROVENANCE_MEMBER, provenance)
    return ExportFile(key, filename, "application/zip")
