"""Lists: offset pages and cursor pages over the same order, and the tag filter.

Every list is ordered newest first (``created_at`` then ``id``, both descending). ``offset`` pages
are what they were; a ``cursor`` (the previous page's ``next_cursor``, opaque) pages by keyset
instead, so rows created meanwhile neither repeat nor go missing. A page answers ``next_cursor``
while more rows follow.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import String, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from app.errors import APIError
from app.models import as_utc

CursorQuery = Annotated[
    str | None,
    Query(
        max_length=200,
        description="the previous page's next_cursor: the next page, by keyset (no offset)",
    ),
]
TagQuery = Annotated[
    list[str] | None,
    Query(max_length=20, description="only those with every tag named (repeat ?tag=)"),
]
ExternalIdQuery = Annotated[
    str | None, Query(min_length=1, max_length=200, description="only those with this id")
]


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([as_utc(created_at).isoformat(), str(row_id)]).encode()  # type: ignore[union-attr]
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, row_id = json.loads(raw)
        return as_utc(datetime.fromisoformat(stamp)), uuid.UUID(row_id)  # type: ignore[return-value]
    except (ValueError, TypeError, binascii.Error) as exc:
        raise APIError(
            400, "bad_cursor", "cursor: not a cursor this service gave (use next_cursor as is)"
        ) from exc


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_tags(query: Any, column: Any, tags: list[str] | None) -> Any:
    """Rows whose JSON list ``column`` holds every tag of ``tags``."""
    for tag in tags or ():
        needle = "%" + _like_escape(json.dumps(tag)) + "%"
        query = query.where(cast(column, String).like(needle, escape="\\"))
    return query


def page(
    session: Session,
    query: Any,
    model: Any,
    *,
    limit: int,
    offset: int,
    cursor: str | None,
) -> tuple[list[Any], int, str | None]:
    """(rows, total, next_cursor) of ``query`` over ``model`` (with ``created_at`` and ``id``)."""
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    ordered = query.order_by(model.created_at.desc(), model.id.desc())
    if cursor is not None:
        if offset:
            raise APIError(400, "bad_cursor", "send either cursor or offset, not both")
        stamp, row_id = decode_cursor(cursor)
        ordered = ordered.where(
            or_(
                model.created_at < stamp,
                and_(model.created_at == stamp, model.id < row_id),
            )
        )
    else:
        ordered = ordered.offset(offset)
    rows = list(session.scalars(ordered.limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
    return rows, total, next_cursor
