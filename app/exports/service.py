"""Export rules: what may be exported where, the export job (on the ``export`` queue kind), its
progress, cancelling, and the webhook events ``export.succeeded`` / ``export.failed``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import claims, idempotency, limits, pagination, queue
from app.blobstore import BlobStore
from app.config import Settings, get_settings
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
    dispatch(session, exp.id)
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
#
# A worker claims a queued export (``claim``: one conditional UPDATE, as jobs), beats while it
# writes (``beat``: the worker's heartbeat thread, and each progress report), and ends it with
# ``run``. Whatever goes wrong after the claim fails the export with a stable code, except a
# transient error (the database, broker or store briefly away): the export goes back to the
# queue and the error is raised for the caller to retry. A worker lost mid-export stops beating:
# the reaper (``worker.reaper._stale_exports``) queues the export again, or fails it with
# ``worker_lost`` after ``max_attempts``, and sends again a queued one the broker never got.


def dispatch(session: Session, export_id: uuid.UUID) -> bool:
    """Hand a committed export to the broker and note the send (a failed send leaves
    ``enqueued_at`` as it was: the reaper sends it again)."""
    if not queue.enqueue_export(export_id):
        return False
    claims.sent(session, StoreExport, export_id)
    return True


def claim(
    session: Session, export_id: uuid.UUID, worker: str, stale_after: timedelta
) -> StoreExport | None:
    """Take a queued export (or a running one whose worker was lost) for running; None when
    there is nothing to do (finished, cancelled, gone, or running elsewhere)."""
    if not claims.claim(session, StoreExport, export_id, worker, stale_after):
        return None
    return session.get(StoreExport, export_id, populate_existing=True)


def status_of(session: Session, export_id: uuid.UUID) -> str:
    exp = session.get(StoreExport, export_id, populate_existing=True)
    return str(exp.status) if exp is not None else "skipped"


def beat(session: Session, export_id: uuid.UUID) -> None:
    claims.beat(session, StoreExport, export_id)


def release(session: Session, export_id: uuid.UUID) -> None:
    """A running export back to the queue (its worker hit a transient error)."""
    claims.release(session, StoreExport, export_id)


def fail(session: Session, export_id: uuid.UUID, code: str, message: str) -> None:
    """End an unfinished export as failed (``export.failed``); a finished one is left alone."""
    exp = session.get(StoreExport, export_id, with_for_update=True, populate_existing=True)
    if exp is None or JobStatus(exp.status).finished:
        return
    _finish(session, exp, JobStatus.failed, get_settings().base_url, code[:64], message[:4000])


def mark_cancelled(session: Session, export_id: uuid.UUID) -> None:
    exp = session.get(StoreExport, export_id, with_for_update=True, populate_existing=True)
    if exp is None or JobStatus(exp.status).finished:
        return
    _finish(session, exp, JobStatus.cancelled, get_settings().base_url)


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


class Superseded(Exception):
    """The export was claimed again by another worker (this one was thought lost)."""


def run(
    export_id: uuid.UUID,
    factory: Callable[[], Session],
    settings: Settings,
    blobs: BlobStore,
    claimed: tuple[str | None, int] | None = None,
) -> str:
    """Write export ``export_id``, claimed by this worker (``claim``); returns its final status.
    An error fails it (``failed``, with a code), a cancel request discards what was written
    (``cancelled``); a transient error puts it back in the queue and is raised. ``claimed``:
    the claim's (worker, attempts), as ``claim`` left them (default: as the row has them)."""
    from app.transient import TRANSIENT  # the worker's concern: not imported by the API

    sink: writer.Sink | None = None
    dataset: Dataset | None = None
    uri = ""
    try:
        with factory() as session:
            exp = session.get(StoreExport, export_id)
            if exp is None:
                return "skipped"
            uri, fmt, tenant, selection_id = exp.uri, exp.format, exp.tenant_id, exp.selection_id
            # This claim: a worker thought lost whose export was claimed again by another stops
            # before publishing (``Superseded``), and each attempt writes a prefix of its own.
            mine = claimed if claimed is not None else (exp.worker, exp.attempts)
            row = session.get(Selection, selection_id)
            dataset = session.get(Dataset, row.dataset_id) if row is not None else None
            if row is None or dataset is None:
                raise not_found("selection", selection_id)
            scores, tokens, index = selections.scored_inputs(session, blobs, row)
            kept = selections.indices(row)
            session.expunge(dataset)
        store, path = _target(uri, settings)
        sink = writer.Sink(store, path, f"{export_id}-{mine[1]}")
        keep = _write(export_id, factory, settings, blobs, sink, dataset, selection_id, fmt,
                      (scores, tokens, index, kept), mine)  # fmt: skip
    except Superseded:
        log.warning("export %s: claimed again by another worker; this attempt stops", export_id)
        _discard(sink, export_id)
        return "superseded"
    except Cancelled:
        _discard(sink, export_id)
        with factory() as s:
            mark_cancelled(s, export_id)
        return JobStatus.cancelled
    except TRANSIENT as exc:
        log.warning("export %s: transient error, will retry: %s", export_id, exc)
        _discard(sink, export_id)
        try:
            with factory() as s:
                release(s, export_id)
        except Exception as again:  # still away: its heartbeat goes stale and the reaper does it
            log.warning("export %s: could not requeue now (%s); the reaper will", export_id, again)
        raise
    except Exception as exc:
        _discard(sink, export_id)
        code, message = _failure(exc, dataset, uri)
        if code in ("unreadable", "internal_error"):
            log.warning("export %s failed: %s: %s", export_id, type(exc).__name__, exc)
        with factory() as s:
            fail(s, export_id, code, message)
        return JobStatus.failed
    with factory() as s:
        cur = s.get(StoreExport, export_id, with_for_update=True, populate_existing=True)
        if (
            cur is not None
            and not JobStatus(cur.status).finished
            and (cur.worker, cur.attempts) == mine
        ):
            cur.objects = len(sink.written)
            cur.bytes_written = sink.bytes
            cur.progress_done = len(keep)
            _finish(s, cur, JobStatus.succeeded, settings.base_url)
    log.info("export %s: %d objects to %s (tenant %s)", export_id, len(sink.written), uri, tenant)
    return JobStatus.succeeded


def _write(
    export_id: uuid.UUID,
    factory: Callable[[], Session],
    settings: Settings,
    blobs: BlobStore,
    sink: writer.Sink,
    dataset: Dataset,
    selection_id: uuid.UUID,
    fmt: str,
    inputs: tuple,  # type: ignore[type-arg]
    mine: tuple[str | None, int],
) -> list:  # type: ignore[type-arg]
    """Write the export's objects under the temporary prefix and publish them; returns the
    kept positions. Each progress report beats and raises ``Cancelled`` on a cancel request."""
    scores, tokens, index, kept = inputs

    def progress(done: int) -> None:
        with factory() as s:
            cur = s.get(StoreExport, export_id)
            if cur is None or cur.cancel_requested:
                raise Cancelled()
            if (cur.worker, cur.attempts) != mine:
                raise Superseded()
            cur.progress_done = done
            cur.heartbeat_at = utcnow()
            s.commit()

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
                    sel = s.get(Selection, selection_id)
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
        if (cur.worker, cur.attempts) != mine:
            raise Superseded()
    sink.publish()
    return keep


def _discard(sink: writer.Sink | None, export_id: uuid.UUID) -> None:
    """Remove the temporary objects (best effort: a store still away keeps them, hidden under
    the target's ``.dlcprune-partial-<id>`` prefix, until the retry writes over them)."""
    if sink is None:
        return
    try:
        sink.discard()
    except Exception as exc:
        log.warning("export %s: temporary objects not removed: %s", export_id, exc)


def _failure(exc: BaseException, dataset: Dataset | None, uri: str) -> tuple[str, str]:
    """The stable code and the message of an error that fails an export."""
    if isinstance(exc, DatasetError):
        shown = (dataset.uri or dataset.filename) if dataset is not None else uri
        return exc.code, public_message(exc, getattr(exc, "local_path", shown), shown)
    if isinstance(exc, APIError):
        return exc.code, exc.message
    if isinstance(exc, ValueError):
        return "unsupported_export", str(exc)
    err = store_error(uri, exc)
    return err.code, err.message


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
            .where(StoreExport.status == JobStatus.queued, StoreExport.cancel_requested.is_(False))
            .order_by(StoreExport.created_at)
            .limit(10)
        )
    )
