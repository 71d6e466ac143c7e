"""``Idempotency-Key`` for every creating POST, in one call.

A route that creates a resource takes the header through :data:`IdempotencyKeyDep` and wraps its
creation in :func:`run`::

    value, replayed = idempotency.run(
        session, tenant, key,
        scope=f"POST {request.url.path}",          # the operation (path ids included)
        fingerprint=body.model_dump(mode="json"),  # what makes two requests the same
        create=lambda: make_it(),                  # -> (resource id, value); commits
        load=lambda resource_id: read_it(resource_id),
    )

The rules, per tenant:

- the first request with a key claims it (a row in ``idempotency_keys``, committed before the work
  starts) and creates the resource; the resource's id is then recorded on the key;
- a later request with the same key and the same scope and fingerprint gets the same resource
  (``load``), marked ``replayed`` (routes answer ``Idempotent-Replayed: true``);
- the same key with another scope or body is ``409 idempotency_key_reused``;
- a request whose key is held by one still running waits for it (up to
  ``DLCPRUNE_IDEMPOTENCY_WAIT_S``) and then replays its resource, so N concurrent requests with one
  key make one resource; past the wait it answers ``409 idempotency_key_in_progress`` with
  ``Retry-After``;
- a request that fails (a 4xx, a crash) releases its claim: errors are not remembered, so a retry
  after fixing the cause goes through;
- a claim whose request made nothing within ``DLCPRUNE_IDEMPOTENCY_CLAIM_STALE_S`` (6 hours by
  default: longer than any upload) is taken as abandoned, its process having died, and can be
  claimed again;
- a key is forgotten ``DLCPRUNE_IDEMPOTENCY_TTL_S`` after it was first used (24 hours by default);
  then the same key creates anew.

Without a key, ``create`` runs as it is.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import tenacity
from fastapi import Depends, Header
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from app.config import get_settings
from app.errors import APIError, conflict
from app.models import IdempotencyKey, as_utc, utcnow

T = TypeVar("T")

MAX_KEY_LENGTH = 200
REPLAYED_HEADER = "Idempotent-Replayed"
_POLL_S = 0.05


# Printable ASCII, no space at either end (HTTP trims those).
KEY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"


def _check_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY_LENGTH or re.fullmatch(KEY_PATTERN, value) is None:
        raise APIError(
            400,
            "bad_idempotency_key",
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters",
        )
    return value


def idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            pattern=KEY_PATTERN,
            description="makes the request safe to retry: the same key with the same body "
            "returns what the first made (Idempotent-Replayed: true); with another body, 409",
        ),
    ] = None,
) -> str | None:
    return _check_key(idempotency_key)


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]

# For the OpenAPI document of a route that replays.
REPLAY_HEADERS = {
    REPLAYED_HEADER: {
        "description": "true when this answer replays what an earlier request with the same "
        "Idempotency-Key made",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def fingerprint_of(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``."""
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _sessions() -> Any:
    from app.db import session_factory

    return session_factory()


_CLAIMED = "claimed"
_PENDING = "pending"


def _claim(tenant_id: uuid.UUID, key: str, scope: str, digest: str) -> Any:
    """Claim ``key``: ``_CLAIMED``, ``_PENDING`` (another request holds it), or the id of the
    resource it made. Raises 409 when the key was used for another request."""
    settings = get_settings()
    with _sessions()() as session:
        for _ in range(3):
            now = utcnow()
            row = session.scalar(
                select(IdempotencyKey).where(
                    IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.key == key
                )
            )
            stale = row is not None and (
                as_utc(row.expires_at) <= now
                or (
                    row.resource_id is None
                    and as_utc(row.created_at)
                    <= now - timedelta(seconds=settings.idempotency_claim_stale_s)
                )
            )
            if stale:
                session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row.id))
                session.commit()
                row = None
            if row is None:
                session.add(
                    IdempotencyKey(
                        tenant_id=tenant_id,
                        key=key,
                        scope=scope[:500],
                        request_hash=digest,
                        created_at=now,
                        expires_at=now + timedelta(seconds=settings.idempotency_ttl_s),
                    )
                )
                try:
                    session.commit()
                    return _CLAIMED
                except IntegrityError:
                    session.rollback()
                    continue
            if row.scope != scope[:500] or row.request_hash != digest:
                raise conflict(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request "
                    f"({row.scope}, another body): use a new key for a new request",
                )
            return row.resource_id if row.resource_id is not None else _PENDING
        return _PENDING


@tenacity.retry(
    retry=tenacity.retry_if_exception_type((OperationalError, InterfaceError)),
    wait=tenacity.wait_exponential(multiplier=0.2, max=5),
    stop=tenacity.stop_after_delay(30),
    reraise=True,
)
def _record(tenant_id: uuid.UUID, key: str, resource_id: uuid.UUID) -> None:
    """Bind the key to what it made. Retried on a lost connection: the resource exists, and a
    key left claimed without it would make a retry wait, then create a second one."""
    with _sessions()() as session:
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.key == key)
            .values(resource_id=resource_id)
        )
        session.commit()


def _release(tenant_id: uuid.UUID, key: str) -> None:
    with _sessions()() as session:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.tenant_id == tenant_id,
                IdempotencyKey.key == key,
                IdempotencyKey.resource_id.is_(None),
            )
        )
        session.commit()


def run(
    session: Session,
    tenant_id: uuid.UUID,
    key: str | None,
    *,
    scope: str,
    fingerprint: Any,
    create: Callable[[], tuple[uuid.UUID, T]],
    load: Callable[[uuid.UUID], T],
) -> tuple[T, bool]:
    """Create once per key: ``(value, replayed)``. See the module's docstring for the rules."""
    key = _check_key(key)
    if key is None:
        return create()[1], False
    digest = fingerprint_of(fingerprint)
    deadline = time.monotonic() + get_settings().idempotency_wait_s
    while True:
        state = _claim(tenant_id, key, scope, digest)
        if isinstance(state, uuid.UUID):
            session.expire_all()
            return load(state), True
        if state == _CLAIMED:
            break
        if time.monotonic() >= deadline:
            raise APIError(
                409,
                "idempotency_key_in_progress",
                "a request with this Idempotency-Key is still running; retry shortly",
                headers={"Retry-After": "1"},
            )
        time.sleep(_POLL_S)
    try:
        resource_id, value = create()
    except BaseException:
        _release(tenant_id, key)
        raise
    _record(tenant_id, key, resource_id)
    return value, False


def purge_expired(session: Session) -> int:
    """Forget expired keys (the reaper calls this); returns how many."""
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= utcnow()))
    session.commit()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
