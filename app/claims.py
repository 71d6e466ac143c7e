"""Claiming queued work for a worker, its heartbeat, and its sends to the broker: one code for
the rows of every kind of queued work (jobs, evaluations, store exports), each of which has
``status``, ``cancel_requested``, ``attempts``, ``worker``, ``heartbeat_at``, ``started_at``,
``enqueued_at`` and ``enqueues``.

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
from sqlalchemy.orm import Session

from app.models import JobStatus, utcnow


def claim(
    session: Session,
    model: Any,
    ident: uuid.UUID,
    worker: str,
    stale_after: timedelta,
    **values: Any,
) -> bool:
    """Take row ``ident`` of ``model`` for running (``values``: more columns to set). True when
    this call took it; commits."""
    now = utcnow()
    taken = session.execute(
        update(model)
        .where(
            model.id == ident,
            model.cancel_requested.is_(False),
            or_(
                model.status == JobStatus.queued,
                and_(
                    model.status == JobStatus.running,
                    or_(model.heartbeat_at.is_(None), model.heartbeat_at < now - stale_after),
                ),
            ),
        )
        .values(
            status=JobStatus.running,
            attempts=model.attempts + 1,
            worker=worker,
            heartbeat_at=now,
            started_at=func.coalesce(model.started_at, now),
            **values,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return taken == 1


def beat(session: Session, model: Any, ident: uuid.UUID, **values: Any) -> None:
    """Refresh a running row's heartbeat (and set ``values``); one UPDATE, no read; commits."""
    session.execute(
        update(model)
        .where(model.id == ident, model.status == JobStatus.running)
        .values(heartbeat_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def release(session: Session, model: Any, ident: uuid.UUID, **values: Any) -> bool:
    """A running row back to the queue; True when it was running. Commits."""
    done = session.execute(
        update(model)
        .where(model.id == ident, model.status == JobStatus.running)
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
            model.id == ident,
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
        .where(model.id == ident)
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
