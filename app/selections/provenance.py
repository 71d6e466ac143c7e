"""Provenance of a selection: what data, model, method and code it came from.

The record is written once, when the selection is created, to the blob store next to its exports
(``exports/<selection id>/provenance.json``, removed with them when the dataset is deleted), so it
names the code version that made the selection, and the bytes returned in the selection's JSON
(``provenance``) and put in zip exports (``provenance.json``) are the same whenever they are
asked for. A selection made before provenance existed gets its record on first read.

    {
      "schema": "dlcprune.provenance/1",
      "created_at": "...",                       the selection's creation time (UTC)
      "selection": {"id", "strategy", "keep", "split", "hard_cutoff", "seed", "size",
      "excluded"},
      "dataset": {"id", "name", "filename", "format", "kind", "source", "num_samples", "sha256"},
      "job": {"id", "cached", "finished_at"},    the job whose scores were used
      "model": {"name", "weights_id", "weights_sha256"},
      "method": {"name", "params"},
      "code": {"package", "version", "commit"}   commit: git HEAD, or null outside a checkout
    }
"""

from __future__ import annotations

import json
import logging
import subprocess
import uuid
from datetime import datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.blobstore import BlobStore
from app.models import Dataset, Job, Selection, as_utc
from dlcprune.core.cache import LRU
from dlcprune.names import DEFAULT_HARD_CUTOFF

log = logging.getLogger("dlcprune.api")

SCHEMA = "dlcprune.provenance/1"
FILENAME = "provenance.json"
_CACHE_SIZE = 4096


def blob_key(selection_id: uuid.UUID | str) -> str:
    return f"exports/{selection_id}/{FILENAME}"


def _iso(value: datetime | None) -> str | None:
    """UTC, ISO 8601 with a ``Z``, as the API writes times."""
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


@lru_cache
def code_version() -> dict[str, str | None]:
    """The package version and, when the code runs from a git checkout, its commit."""
    try:
        version: str | None = metadata.version("dlcprune")
    except metadata.PackageNotFoundError:
        version = None
    commit = None
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        text = done.stdout.strip()
        if (
            done.returncode == 0
            and len(text) in (40, 64)
            and all(c in "0123456789abcdef" for c in text)
        ):
            commit = text
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"package": "dlcprune", "version": version, "commit": commit}


def build(session: Session, row: Selection) -> dict[str, Any]:
    """The provenance record of ``row`` from the database (nothing stored)."""
    job = session.get(Job, row.job_id)
    dataset = session.get(Dataset, row.dataset_id)
    return {
        "schema": SCHEMA,
        "created_at": _iso(row.created_at),
        "selection": {
            "id": str(row.id),
            "strategy": row.strategy,
            "keep": row.keep,
            "split": row.split,
            "hard_cutoff": row.hard_cutoff if row.hard_cutoff is not None else DEFAULT_HARD_CUTOFF,
            "seed": row.seed,
            "size": row.size,
            "excluded": row.excluded or 0,
        },
        "dataset": {
            "id": str(row.dataset_id),
            "name": dataset.name if dataset else None,
            "filename": dataset.filename if dataset else None,
            "format": dataset.format if dataset else None,
            "kind": dataset.kind if dataset else None,
            "source": dataset.source if dataset else None,
            "num_samples": dataset.num_samples if dataset else None,
            "sha256": dataset.sha256 if dataset else None,
        },
        "job": {
            "id": str(row.job_id),
            "cached": bool(job.cached) if job else None,
            "finished_at": _iso(job.finished_at) if job else None,
        },
        "model": {
            "name": job.model if job else None,
            "weights_id": str(job.weights_id) if job and job.weights_id else None,
            "weights_sha256": job.weights_sha256 if job else None,
        },
        "method": {
            "name": job.method if job else None,
            "params": dict(job.params) if job else {},
        },
        "code": dict(code_version()),
    }


def dumps(record: dict[str, Any]) -> bytes:
    """The bytes of ``provenance.json``: indented, keys sorted, UTF-8, a final newline."""
    return (json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


# Stored records by selection id, the most recently used kept in memory (a record never changes).
_records: LRU[uuid.UUID, dict[str, Any]] = LRU(_CACHE_SIZE)


def record(session: Session, blobs: BlobStore, row: Selection) -> dict[str, Any]:
    """Build ``row``'s record and store it (at creation; a failed write is retried on read)."""
    built = build(session, row)
    try:
        blobs.put_bytes(blob_key(row.id), dumps(built))
    except Exception as exc:
        log.warning("selection %s: could not store its provenance yet: %s", row.id, exc)
        return built
    _records.put(row.id, built)
    return built


def get(session: Session, blobs: BlobStore, row: Selection) -> dict[str, Any]:
    """``row``'s stored record (written now if it has none yet)."""
    cached = _records.get(row.id)
    if cached is not None:
        return cached
    key = blob_key(row.id)
    try:
        if blobs.exists(key):
            stored = json.loads(blobs.get_bytes(key))
            _records.put(row.id, stored)
            return stored
    except Exception as exc:
        log.warning("selection %s: unreadable provenance, rebuilding it: %s", row.id, exc)
    return record(session, blobs, row)


def get_bytes(session: Session, blobs: BlobStore, row: Selection) -> bytes:
    """``provenance.json`` as stored (the bytes every zip export of the selection holds)."""
    key = blob_key(row.id)
    try:
        if blobs.exists(key):
            return blobs.get_bytes(key)
    except Exception as exc:
        log.warning("selection %s: unreadable provenance, rebuilding it: %s", row.id, exc)
    return dumps(record(session, blobs, row))
