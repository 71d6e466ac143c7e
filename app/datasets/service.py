"""Dataset rules: what may be registered, where its bytes live, and how it becomes ``ready``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import delete as sa_delete
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app import idempotency, limits, queue
from app.blobstore import BlobStore
from app.config import Settings
from app.datasets import repository, sources
from app.datasets.indexing import index_reader, public_message
from app.datasets.schemas import (
    NAME_MAX,
    DatasetOptions,
    DatasetRead,
    DatasetReference,
    ErrorInfo,
)
from app.errors import APIError, not_found, unprocessable
from app.models import (
    Dataset,
    DatasetStatus,
    Job,
    LabelIssueRun,
    ScoreSet,
    Selection,
    as_utc,
    utcnow,
)
from app.storage import STORE_SCHEMES, check_scheme, resolve_file, scheme_of, store_error
from app.uploads import ReceivedFile, sha256_path
from app.webhooks import outbox
from dlcprune.core.errors import DatasetError
from dlcprune.core.formats import registry as format_registry

log = logging.getLogger("dlcprune.datasets")

# Formats an upload may have (the formats registry's file suffixes); the stored blob keeps the
# suffix so the readers detect the format.
UPLOAD_SUFFIXES = format_registry.suffixes()


def upload_suffix(filename: str) -> str:
    lower = filename.lower()
    for suffix in UPLOAD_SUFFIXES:
        if lower.endswith(suffix):
            return suffix
    raise unprocessable(
        "unsupported_format",
        f"cannot tell the format of {filename!r}: upload an image archive (.zip, .tar, .tar.gz, "
        ".tgz), arrays (.npz), a table (.parquet, .csv) or JSON lines (.jsonl, .jsonl.gz)",
    )


def upload_key(dataset_id: uuid.UUID, filename: str) -> str:
    return f"datasets/{dataset_id}/data{upload_suffix(filename)}"


# References ---------------------------------------------------------------------------------


def resolve_file_reference(uri: str, settings: Settings) -> Path:
    """A ``file://`` URI's real path, which must lie below one of the configured roots."""
    return resolve_file(uri, settings)


def check_reference(uri: str, settings: Settings) -> str:
    """Validate a reference URI; returns its scheme (``file`` or an enabled one)."""
    scheme = check_scheme(uri, settings)
    if scheme == "file":
        resolve_file(uri, settings)
    elif scheme in ("http", "https"):
        from app.references import check_http_url

        check_http_url(uri)
    return scheme


def http_copy(uri: str, settings: Settings) -> Path:
    """Download an http(s) reference once into the cache (behind the SSRF guard)."""
    from app.references import download_http

    assert settings.cache_dir is not None
    digest = hashlib.sha256(uri.encode()).hexdigest()[:32]
    name = os.path.basename(urlsplit(uri).path) or "data"
    local = Path(settings.cache_dir) / "refs" / "http" / digest / name
    if not local.exists():
        download_http(uri, local, settings.max_upload_bytes)
    return local


def content_identity(dataset: Dataset) -> str:
    """What identifies the samples a dataset's bytes are read as, for the score cache: the bytes'
    SHA-256 and, when the registration named them, the format and the columns mapping (the same
    bytes read with other columns are other samples). Without either it is the SHA-256 alone, so
    score sets cached before these options existed keep their keys."""
    digest = dataset.sha256 or ""
    if not dataset.requested_format and not dataset.columns:
        return digest
    options = {"sha256": digest, "format": dataset.requested_format, "columns": dataset.columns}
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()


def _data_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


# Indexing -----------------------------------------------------------------------------------


def index_now(session: Session, dataset: Dataset, settings: Settings, blobs: BlobStore) -> None:
    """Validate and index ``dataset`` (status becomes ready or invalid, and the webhook event
    ``dataset.ready`` or ``dataset.invalid`` is emitted); the caller commits both."""
    _index(dataset, settings, blobs)
    read = to_read(dataset, settings.base_url)
    outbox.emit(
        session, dataset.tenant_id, f"dataset.{dataset.status}", read.model_dump(mode="json")
    )


def _index(dataset: Dataset, settings: Settings, blobs: BlobStore) -> None:
    shown = dataset.filename if dataset.source == "upload" else (dataset.uri or dataset.filename)
    seen: sources.Look | DatasetError | None = getattr(dataset, "_look", None)
    local = shown
    try:
        if isinstance(seen, DatasetError):
            raise seen
        if (
            dataset.source == "uri"
            and seen is None
            and scheme_of(dataset.uri or "")
            not in (
                "http",
                "https",
            )
        ):
            seen = sources.look(
                dataset.uri or "", settings, dataset.requested_format, dataset.columns or None
            )
            # Pinned when registered: indexed later, it must still be what was registered.
            sources.check_pin(dataset, seen, blobs)
        if seen is not None and dataset.source_pin is None:
            sources.record_pin(dataset, seen, blobs)
        reader, local = sources.open_source(dataset, settings, blobs, seen)
        with reader as ds:
            result = index_reader(ds)
        if dataset.sha256 is None:
            dataset.sha256, dataset.size_bytes = sha256_path(local)
    except APIError as exc:
        _invalid(dataset, exc.code, exc.message)
        return
    except DatasetError as exc:
        message = public_message(exc, getattr(exc, "local_path", local), shown)
        if dataset.requested_format:
            message += f" (read as format {dataset.requested_format!r}, as the request named)"
        _invalid(dataset, exc.code, message)
        return
    except Exception as exc:  # remote store unreachable, permissions
        err = store_error(shown, exc)
        _invalid(dataset, err.code, err.message)
        return
    key = f"datasets/{dataset.id}/index.npz"
    blobs.put_bytes(key, result.index_bytes)
    dataset.index_key = key
    dataset.format = result.format
    dataset.kind = result.kind
    dataset.num_samples = result.num_samples
    dataset.classes = result.classes
    dataset.status = DatasetStatus.ready
    dataset.error_code = dataset.error_message = None
    dataset.updated_at = utcnow()


def _invalid(dataset: Dataset, code: str, message: str) -> None:
    dataset.status = DatasetStatus.invalid
    dataset.error_code = code
    dataset.error_message = message
    dataset.updated_at = utcnow()


def index_pending(dataset_id: uuid.UUID, session: Session, settings: Settings, blobs: BlobStore):
    """The worker's indexing task: idempotent (a dataset no longer ``indexing`` is left alone)."""
    dataset = session.get(Dataset, dataset_id, with_for_update=not settings.is_sqlite)
    if dataset is None or dataset.status != DatasetStatus.indexing:
        return dataset
    index_now(session, dataset, settings, blobs)
    session.commit()
    return dataset


# Creating -----------------------------------------------------------------------------------


@dataclass
class Created:
    """What registering answered: the dataset, whether indexing was queued, whether it is one the
    tenant already had (same bytes), whether an Idempotency-Key replayed it."""

    dataset: Dataset
    queued: bool
    existing: bool = False
    replayed: bool = False


_CONTENT_LOCKS: dict[str, threading.Lock] = {}
_CONTENT_LOCKS_GUARD = threading.Lock()


@contextmanager
def _same_content_lock(
    session: Session, settings: Settings, tenant_id: uuid.UUID, sha256: str
) -> Iterator[None]:
    """Serialise registrations of the same bytes by one tenant, so concurrent uploads of one file
    make one dataset: a transaction-scoped advisory lock on PostgreSQL (held until the caller's
    commit or rollback), a process lock on SQLite (the embedded default is one process)."""
    name = f"{tenant_id}:{sha256}"
    if not settings.is_sqlite:
        lock_id = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
        yield
        return
    with _CONTENT_LOCKS_GUARD:
        lock = _CONTENT_LOCKS.setdefault(name, threading.Lock())
    with lock:
        yield


def register_upload(
    session: Session,
    settings: Settings,
    blobs: BlobStore,
    tenant_id: uuid.UUID,
    dataset_id: uuid.UUID,
    received: ReceivedFile,
    options: DatasetOptions,
    *,
    idempotency_key: str | None = None,
    copy: bool = False,
) -> Created:
    """Register an upload already in the blob store, once per Idempotency-Key; the tenant's
    dataset with the same bytes (read the same way) answers instead unless ``copy``."""
    made, _ = idempotency.run(
        session,
        tenant_id,
        idempotency_key,
        scope="POST /v1/datasets",
        fingerprint={
            "sha256": received.sha256,
            "filename": received.filename,
            "options": options.model_dump(mode="json"),
            "copy": copy,
        },
        create=lambda: _identified(
            create_from_upload(
                session, settings, blobs, tenant_id, dataset_id, received, options, copy=copy
            )
        ),
        load=lambda existing: _replayed(get(session, tenant_id, existing)),
    )
    return made


def register_reference(
    session: Session,
    settings: Settings,
    blobs: BlobStore,
    tenant_id: uuid.UUID,
    body: DatasetReference,
    *,
    idempotency_key: str | None = None,
) -> Created:
    made, _ = idempotency.run(
        session,
        tenant_id,
        idempotency_key,
        scope="POST /v1/dataset-references",
        fingerprint=body.model_dump(mode="json"),
        create=lambda: _identified(
            create_from_reference(session, settings, blobs, tenant_id, body)
        ),
        load=lambda existing: _replayed(get(session, tenant_id, existing)),
    )
    return made


def _identified(made: Created) -> tuple[uuid.UUID, Created]:
    return made.dataset.id, made


def _replayed(dataset: Dataset) -> Created:
    return Created(dataset, queued=dataset.status == DatasetStatus.indexing, replayed=True)


def create_from_upload(
    session: Session,
    settings: Settings,
    blobs: BlobStore,
    tenant_id: uuid.UUID,
    dataset_id: uuid.UUID,
    received: ReceivedFile,
    options: DatasetOptions | None = None,
    *,
    copy: bool = False,
) -> Created:
    """Record an upload already in the blob store (or answer the tenant's dataset with the same
    bytes, read the same way, unless ``copy``)."""
    options = options or DatasetOptions()
    name = (options.name or received.fields.get("name") or received.filename).strip()
    columns = dict(options.columns) if options.columns else None
    with _same_content_lock(session, settings, tenant_id, received.sha256):
        if not copy:
            existing = repository.same_content(
                session, tenant_id, received.sha256, options.format, columns
            )
            if existing is not None:
                return Created(
                    existing, queued=existing.status == DatasetStatus.indexing, existing=True
                )
        limits.check_storage(session, settings, tenant_id, received.size)
        now = utcnow()
        dataset = Dataset(
            created_at=now,
            updated_at=now,
            id=dataset_id,
            tenant_id=tenant_id,
            name=name[:NAME_MAX],
            status=DatasetStatus.indexing,
            source="upload",
            blob_key=received.key,
            filename=received.filename[:500],
            size_bytes=received.size,
            sha256=received.sha256,
            requested_format=options.format,
            columns=columns,
            tags=list(options.tags) if options.tags else None,
            external_id=options.external_id,
        )
        return _finish_create(session, settings, blobs, dataset, received.size)


def create_from_reference(
    session: Session,
    settings: Settings,
    blobs: BlobStore,
    tenant_id: uuid.UUID,
    body: DatasetReference,
) -> Created:
    scheme = check_reference(body.uri, settings)
    size: int | None = None
    seen: sources.Look | DatasetError | None = None
    if scheme == "file":
        size = _data_size(resolve_file_reference(body.uri, settings))
    elif scheme in STORE_SCHEMES:
        # Listed (and pinned) now: a missing prefix or a refused credential answers at once,
        # and a manifest's bad row makes the dataset invalid at once.
        try:
            seen = sources.look(body.uri, settings, body.format, body.columns or None)
            size = seen.size if len(seen.objects) <= settings.index_sync_max_objects else None
        except DatasetError as exc:
            seen, size = exc, 0
    filename = os.path.basename(urlsplit(body.uri).path.rstrip("/")) or body.uri
    now = utcnow()
    dataset = Dataset(
        created_at=now,
        updated_at=now,
        # Set here, not at flush: indexing inline names the index blob after the id.
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        name=(body.name or filename)[:NAME_MAX],
        status=DatasetStatus.indexing,
        source="uri",
        uri=body.uri,
        filename=filename[:500],
        requested_format=body.format,
        columns=dict(body.columns) if body.columns else None,
        tags=list(body.tags) if body.tags else None,
        external_id=body.external_id,
    )
    if isinstance(seen, sources.Look):
        sources.record_pin(dataset, seen, blobs)  # the pin is taken now, indexed now or later
    if seen is not None:
        dataset._look = seen  # type: ignore[attr-defined]  # indexing inline reuses it
    return _finish_create(session, settings, blobs, dataset, size)


def _finish_create(
    session: Session, settings: Settings, blobs: BlobStore, dataset: Dataset, size: int | None
) -> Created:
    """Index small data inline (a refused one keeps no row and no bytes: a 422 whose
    ``details.dataset`` is the record as read); queue the rest for the workers."""
    inline = size is not None and size <= settings.index_sync_max_bytes
    try:
        if inline:
            _index(dataset, settings, blobs)
            if dataset.status == DatasetStatus.invalid:
                read = to_read(dataset, settings.base_url)
                raise APIError(
                    422,
                    read.error.code if read.error else "invalid_dataset",
                    read.error.message if read.error else "the data is invalid",
                    details={"dataset": read.model_dump(mode="json")},
                )
            outbox.emit(
                session,
                dataset.tenant_id,
                f"dataset.{dataset.status}",
                to_read(dataset, settings.base_url).model_dump(mode="json"),
            )
        session.add(dataset)
        session.commit()
    except BaseException:
        session.rollback()
        blobs.delete_prefix(f"datasets/{dataset.id}")
        raise
    if not inline:
        queue.enqueue_index(dataset.id)
    return Created(dataset, queued=not inline)


# Reading and deleting ---------------------------------------------------------------------


def get(session: Session, tenant_id: uuid.UUID, dataset_id: uuid.UUID) -> Dataset:
    dataset = repository.get(session, tenant_id, dataset_id)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    return dataset


def delete(
    session: Session,
    blobs: BlobStore,
    tenant_id: uuid.UUID,
    dataset_id: uuid.UUID,
    *,
    force: bool = False,
) -> None:
    """Delete the dataset, its finished jobs, scores and selections, and their blobs. Queued or
    running jobs on it refuse the deletion (409 ``dataset_busy``) unless ``force``: then they are
    cancelled with the reason (``dataset_deleted``) and kept, without their dataset."""
    from app.jobs import lifecycle

    dataset = get(session, tenant_id, dataset_id)
    lifecycle.release_active_jobs(session, dataset.id, force=force)
    # The score sets' blobs: losses (a file) and kept embeddings (a prefix, with what was
    # computed from them beside it).
    blob_keys = session.execute(
        select(ScoreSet.losses_key, ScoreSet.embeddings_key).where(
            ScoreSet.dataset_id == dataset.id
        )
    ).all()
    losses_keys = [losses for losses, _ in blob_keys if losses]
    embeddings_keys = [kept for _, kept in blob_keys if kept]
    # Children first, explicitly: SQLite enforces foreign keys only when asked to.
    prefixes: list[str] = []
    lifecycle.delete_selection_rows(session, prefixes, Selection.dataset_id == dataset.id)
    session.execute(sa_delete(Job).where(Job.dataset_id == dataset.id))
    session.execute(
        sa_delete(LabelIssueRun).where(
            LabelIssueRun.score_set_id.in_(
                select(ScoreSet.id).where(ScoreSet.dataset_id == dataset.id)
            )
        )
    )
    session.execute(sa_delete(ScoreSet).where(ScoreSet.dataset_id == dataset.id))
    session.delete(dataset)
    session.commit()
    # Blobs after the commit: a failed commit must not leave rows pointing at deleted bytes.
    blobs.delete_prefix(f"datasets/{dataset.id}")
    blobs.delete_prefix(f"thumbs/{dataset.id}")
    for prefix in prefixes:
        blobs.delete_prefix(prefix)
    for key in losses_keys:
        blobs.delete(key)
    for prefix in embeddings_keys:
        blobs.delete_prefix(prefix)


def to_read(dataset: Dataset, base_url: str) -> DatasetRead:
    error = None
    if dataset.status == DatasetStatus.invalid:
        error = ErrorInfo(
            code=dataset.error_code or "invalid_dataset", message=dataset.error_message or ""
        )
    return DatasetRead(
        id=dataset.id,
        name=dataset.name,
        status=dataset.status,
        source=dataset.source,
        uri=dataset.uri,
        filename=dataset.filename,
        format=dataset.format,
        requested_format=dataset.requested_format,
        columns=dataset.columns,
        kind=dataset.kind,
        size_bytes=dataset.size_bytes,
        sha256=dataset.sha256,
        num_samples=dataset.num_samples,
        classes=dataset.classes,
        error=error,
        tags=list(dataset.tags or []),
        external_id=dataset.external_id,
        created_at=as_utc(dataset.created_at),
        updated_at=as_utc(dataset.updated_at),
        url=f"{base_url}/v1/datasets/{dataset.id}",
    )
