"""Export rules: what may be exported where, the export job (on the ``export`` queue kind), its
progress, cancelling, and the webhook events ``export.succeeded`` / ``export.failed``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import idempotency, limits, pagination, queue
from app.blobstore import BlobStore
from app.config import Settings
from app.datasets.indexing import public_message
from app.datasets.schemas import ErrorInfo
from app.datasets.sources import open_source
from app.errors import APIError, conflict, not_found, unprocessable
from app.exports import writer
from app.exports.schemas import ExportCreate, ExportRead
from app.models import Dataset, JobStatus, Selection, StoreExport, as_utc, utcnow
from app.selections import export as downloads
from app.selections import service as selections
from app.storage import locate, store_error
from app.webhooks import outbox
from dlcprune.core.errors import DatasetError

log = logging.getLogger("dlcprune.exports")


class Cancelled(Exception):
    pass


def _target(uri: str, settings: Settings):  # type: ignore[no-untyped-def]
    if not uri.endswith("/"):
        raise unprocessable("invalid_target", f"{uri}: an export target is a prefix ending in '/'")
    store, path = locate(uri, settings) if not uri.startswith("file:") else _file_target(
        uri, settings
    )  # fmt: skip
    return store, path


def _file_target(uri: str, settings: Settings):  # type: ignore[no-untyped-def]
    from app.storage import resolve_file, store_for

    return store_for("file", settings), str(resolve_file(uri, settings, must_exist=False)) + "/"


def _check_empty(store, path: str, uri: str) -> None:  # type: ignore[no-untyped-def]
    try:
        store.listing(path, limit=1)
    except FileNotFoundError:
        return
    except OverflowError:
        pass
    raise unprocessable(
        "target_not_empty", f"{uri} already holds objects; export into an empty prefix"
    )


def create(
    session: Session,
    settings: Settings,
    tenant_id: uuid.UUID,
    selection_id: uuid.UUID,
    body: ExportCreate,
    idempotency_key: str | None = None,
) -> tuple[StoreExport, bool]:
    """Queue an export (or replay the one an idempotency key made). Returns (export,
    replayed); the task is sent only after the row is committed."""
    return idempotency.run(
        session,
        tenant_id,
        idempotency_key,
        scope=f"POST /v1/selections/{selection_id}/exports",
        fingerprint=body.model_dump(mode="json"),
        create=lambda: _create(session, settings, tenant_id, selection_id, body),
        load=lambda export_id: get(session, tenant_id, export_id),
    )


def _create(
    session: Session,
    settings: Settings,
    tenant_id: uuid.UUID,
    selection_id: uuid.UUID,
    body: ExportCreate,
) -> tuple[uuid.UUID, StoreExport]:
    row = selections.get(session, tenant_id, selection_id)
    try:
        store, path = _target(body.uri, settings)
        _check_empty(store, path, body.uri)
    except APIError:
        raise
    except Exception as exc:
        raise store_error(body.uri, exc) from exc
    limits.check_active_jobs(session, settings, tenant_id)
    exp = StoreExport(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        selection_id=row.id,
        uri=body.uri,
        format=body.format,
        status=JobStatus.queued,
        progress_done=0,
        progress_total=int(row.size),
        objects=0,
        bytes_written=0,
        cancel_requested=False,
        created_at=utcnow(),
    )
    session.add(exp)
    session.commit()
    queue.enqueue_export(exp.id)
    return exp.id, exp


def get(session: Session, tenant_id: uuid.UUID, export_id: uuid.UUID) -> StoreExport:
    exp = session.scalar(
        select(StoreExport).where(StoreExport.id == export_id, StoreExport.tenant_id == tenant_id)
    )
    if exp is None:
        raise not_found("export", export_id)
    return exp


def list_(
    session: Session,
    tenant_id: uuid.UUID,
    selection_id: uuid.UUID | None,
    limit: int,
    offset: int,
    cursor: str | None = None,
) -> tuple[list[StoreExport], int, str | None]:
    """(rows, total, next_cursor), newest first (app.pagination)."""
    query = select(StoreExport).where(StoreExport.tenant_id == tenant_id)
    if selection_id is not None:
        query = query.where(StoreExport.selection_id == selection_id)
    return pagination.page(session, query, StoreExport, limit=limit, offset=offset, cursor=cursor)


def cancel(session: Session, tenant_id: uuid.UUID, export_id: uuid.UUID) -> StoreExport:
    """A queued export is cancelled at once; a running one at its next progress report (its
    temporary objects removed, nothing published)."""
    exp = get(session, tenant_id, export_id)
    if JobStatus(exp.status).finished:
        raise conflict("export_finished", f"export {exp.id} has already {exp.status}")
    exp.cancel_requested = True
    if exp.status == JobStatus.queued:
        exp.status = JobStatus.cancelled
        exp.finished_at = utcnow()
    session.commit()
    return exp


def to_read(exp: StoreExport, base_url: str) -> ExportRead:
    error = None
    if exp.error_code:
        error = ErrorInfo(code=exp.error_code, message=exp.error_message or "")
    return ExportRead(
        id=exp.id,
        selection_id=exp.selection_id,
        uri=exp.uri,
        format=exp.format,
        status=exp.status,
        progress={"done": exp.progress_done, "total": exp.progress_total},
        objects=exp.objects,
        bytes_written=exp.bytes_written,
        cancel_requested=exp.cancel_requested,
        error=error,
        created_at=as_utc(exp.created_at),
        started_at=as_utc(exp.started_at) if exp.started_at else None,
        finished_at=as_utc(exp.finished_at) if exp.finished_at else None,
        url=f"{base_url}/v1/exports/{exp.id}",
    )


# Running (the worker's task) -----------------------------------------------------------------


def _finish(
    session: Session, exp: StoreExport, status: str, base_url: str, code: str = "",
    message: str = "",
) -> None:  # fmt: skip
    exp.status = status
    exp.finished_at = utcnow()
    if code:
        exp.error_code, exp.error_message = code, message
    if status in (JobStatus.succeeded, JobStatus.failed):
        outbox.emit(
            session,
            exp.tenant_id,
            f"export.{status}",
            to_read(exp, base_url).model_dump(mode="json"),
        )
    session.commit()


def run(
    export_id: uuid.UUID, factory: Callable[[], Session], settings: Settings, blobs: BlobStore
) -> str:
    """Write export ``export_id`` (idempotent: one no longer queued is left alone)."""
    with factory() as session:
        exp = session.get(StoreExport, export_id, with_for_update=not settings.is_sqlite)
        if exp is None or exp.status != JobStatus.queued:
            return exp.status if exp is not None else "skipped"
        exp.status = JobStatus.running
        exp.started_at = utcnow()
        session.commit()
        row = session.get(Selection, exp.selection_id)
        dataset = session.get(Dataset, row.dataset_id) if row is not None else None
        if row is None or dataset is None:
            _finish(session, exp, JobStatus.failed, settings.base_url, "not_found", "gone")
            return JobStatus.failed
        scores, tokens, index = selections.scored_inputs(session, blobs, row)
        kept = selections.indices(row)
        uri, fmt, tenant = exp.uri, exp.format, exp.tenant_id
        session.expunge(dataset)
    store, path = _target(uri, settings)
    sink = writer.Sink(store, path, str(export_id))

    def progress(done: int) -> None:
        with factory() as s:
            cur = s.get(StoreExport, export_id)
            if cur is None or cur.cancel_requested:
                raise Cancelled()
            cur.progress_done = done
            s.commit()

    try:
        keep = writer.kept_list(kept)
        if fmt in ("manifest-csv", "manifest-jsonl"):
            buf = _buffer(lambda out: downloads.write_manifest(out, index, scores, kept, fmt[9:]))
            sink.put(f"manifest.{fmt[9:]}", buf)
            progress(len(keep))
        elif fmt == "parquet":
            buf = _buffer(lambda out: downloads.write_parquet(out, index, scores, tokens, kept))
            sink.put("scores.parquet", buf)
            progress(len(keep))
        else:
            reader, _ = open_source(dataset, settings, blobs)
            with reader as ds:
                if fmt == "original" and ds.kind != "image":
                    with factory() as s:
                        sel = s.get(Selection, exp.selection_id)
                        out = downloads.build_export(dataset, sel, kept, settings, blobs)
                    sink.put_file(out.filename, blobs.local_path(out.key))
                    progress(len(keep))
                else:
                    write = {
                        "original": writer.write_original,
                        "webdataset": writer.write_webdataset,
                        "hf": writer.write_hf,
                    }[fmt]
                    write(sink, ds, index, keep, progress)
        with factory() as s:
            cur = s.get(StoreExport, export_id)
            if cur is None or cur.cancel_requested:
                raise Cancelled()
        sink.publish()
    except Cancelled:
        sink.discard()
        with factory() as s:
            cur = s.get(StoreExport, export_id)
            if cur is not None:
                _finish(s, cur, JobStatus.cancelled, settings.base_url)
        return JobStatus.cancelled
    except Exception as exc:
        sink.discard()
        if isinstance(exc, DatasetError):
            shown = dataset.uri or dataset.filename
            code = exc.code
            message = public_message(exc, getattr(exc, "local_path", shown), shown)
        elif isinstance(exc, ValueError):
            code, message = "unsupported_export", str(exc)
        else:
            err = store_error(uri, exc)
            code, message = err.code, err.message
            log.warning("export %s failed: %s: %s", export_id, type(exc).__name__, exc)
        with factory() as s:
            cur = s.get(StoreExport, export_id)
            if cur is not None:
                _finish(s, cur, JobStatus.failed, settings.base_url, code, message)
        return JobStatus.failed
    with factory() as s:
        cur = s.get(StoreExport, export_id)
        if cur is not None:
            cur.objects = len(sink.written)
            cur.bytes_written = sink.bytes
            cur.progress_done = len(keep)
            _finish(s, cur, JobStatus.succeeded, settings.base_url)
    log.info("export %s: %d objects to %s (tenant %s)", export_id, len(sink.written), uri, tenant)
    return JobStatus.succeeded


def _buffer(fill: Callable[..., None]) -> bytes:
    import io

    out = io.BytesIO()
    fill(out)
    return out.getvalue()


def pending(session: Session) -> list[uuid.UUID]:
    """Queued exports, oldest first (the embedded worker's poll)."""
    return list(
        session.scalars(
            select(StoreExport.id)
            .where(StoreExport.status == JobStatus.queued)
            .order_by(StoreExport.created_at)
            .limit(10)
        )
    )
