"""Claiming queued work for a worker, its heartbeat, and its sends to the broker: one code for
the rows of every kind of queued work (jobs, evaluations, store exports, label issues, shards),
each of which has ``status``, ``attempts``, ``worker`` and ``heartbeat_at`` (and, where it is
sent to the broker on its own, ``enqueued_at`` and ``enqueues``; ``cancel_requested`` and
``started_at`` where it has them). Rows are named by their primary key.

- ``claim``: one conditional UPDATE takes a queued row, or a running one whose heartbeat is older
  than ``stale_after`` (its worker was lost); two workers or two deliveries cannot both win.
- ``beat``: the heartbeat of a running row.
- ``release``: a running row back to the queue (its worker hit a transient error).
- ``sent`` / ``resend_due``: when a queued row was last handed to the broker, and whether the
  reaper should hand it again (``redeliver_after_seconds``, doubling with each send; one never
  sent after a few seconds: the send after its commit failed).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from app.models import JobStatus, utcnow


def key_of(model: Any) -> Any:
    """The primary key column of ``model`` (``id``, or ``score_set_id`` for label issues)."""
    return sa_inspect(model).primary_key[0]


def claim(
    session: Session,
    model: Any,
    ident: uuid.UUID,
    worker: str,
    stale_after: timedelta,
    **values: Any,
) -> bool:
    """Take row ``ident`` of ``model`` for running (``values``: more columns to set). True when
    this call took it; commits. A row asked to cancel is not taken (where the model has
    ``cancel_requested``); ``started_at`` keeps the first start (where the model has one)."""
    now = utcnow()
    where = [
        key_of(model) == ident,
        or_(
            model.status == JobStatus.queued,
            and_(
                model.status == JobStatus.running,
                or_(model.heartbeat_at.is_(None), model.heartbeat_at < now - stale_after),
            ),
        ),
    ]
    if hasattr(model, "cancel_requested"):
        where.append(model.cancel_requested.is_(False))
    sets: dict[str, Any] = {
        "status": JobStatus.running,
        "attempts": model.attempts + 1,
        "worker": worker,
        "heartbeat_at": now,
    }
    if hasattr(model, "started_at"):
        sets["started_at"] = func.coalesce(model.started_at, now)
    taken = session.execute(
        update(model)
        .where(*where)
        .values(**sets, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return taken == 1


def beat(session: Session, model: Any, ident: uuid.UUID, **values: Any) -> None:
    """Refresh a running row's heartbeat (and set ``values``); one UPDATE, no read; commits."""
    session.execute(
        update(model)
        .where(key_of(model) == ident, model.status == JobStatus.running)
        .values(heartbeat_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def release(session: Session, model: Any, ident: uuid.UUID, **values: Any) -> bool:
    """A running row back to the queue; True when it was running. Commits."""
    done = session.execute(
        update(model)
        .where(key_of(model) == ident, model.status == JobStatus.running)
        .values(status=JobStatus.queued, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return done == 1


def requeue_stale(
    session: Session, model: Any, ident: uuid.UUID, cutoff: datetime, **values: Any
) -> bool:
    """A running row whose heartbeat is older than ``cutoff`` back to the queue (the reaper;
    conditional, so a row that beat meanwhile stays running). Commits."""
    done = session.execute(
        update(model)
        .where(
            key_of(model) == ident,
            model.status == JobStatus.running,
            or_(model.heartbeat_at.is_(None), model.heartbeat_at < cutoff),
        )
        .values(status=JobStatus.queued, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return done == 1


def sent(session: Session, model: Any, ident: uuid.UUID) -> None:
    """Note that row ``ident`` was handed to the broker now; commits."""
    session.execute(
        update(model)
        .where(key_of(model) == ident)
        .values(enqueued_at=utcnow(), enqueues=model.enqueues + 1)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def resend_due(row: Any, now: datetime, redeliver_after_seconds: float) -> bool:
    """Whether a queued row should be handed to the broker again: not taken within
    ``redeliver_after_seconds`` of its last send (doubling with each send, up to 64 times), or
    never sent and created more than a few seconds ago (its own request's send failed)."""
    last = row.enqueued_at or row.created_at
    if last is None:
        return True
    if last.tzinfo is None:
        last = last.replace(tzinfo=now.tzinfo)
    if row.enqueued_at is None:
        return now - last >= timedelta(seconds=min(5.0, redeliver_after_seconds))
    wait = redeliver_after_seconds * 2 ** min(max((row.enqueues or 0) - 1, 0), 6)
    return now - last >= timedelta(seconds=wait)
