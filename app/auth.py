"""API keys and tenants.

A key looks like ``dlc_<8 hex prefix>_<43 url-safe chars>``; only its SHA-256 is stored (keys are
random 256-bit secrets, so a fast hash is enough and lookups stay one indexed read). The key is sent
as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Every resource belongs to the tenant of
the key that created it. With auth off (the embedded default on a loopback host) every request acts
as the tenant ``local``.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import get_settings
from app.errors import APIError
from app.models import ApiKey, Tenant, utcnow

LOCAL_TENANT = "local"
KEY_PREFIX = "dlc_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """(key, prefix): the key is shown once; the prefix identifies it in listings."""
    prefix = secrets.token_hex(4)
    return f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is not None:
        return tenant
    try:
        # A savepoint: two first requests may race to create the same tenant.
        with session.begin_nested():
            tenant = Tenant(name=name)
            session.add(tenant)
        return tenant
    except IntegrityError:
        existing = session.scalar(select(Tenant).where(Tenant.name == name))
        assert existing is not None
        return existing


def create_key(session: Session, tenant_name: str, name: str = "") -> tuple[str, ApiKey]:
    tenant = get_or_create_tenant(session, tenant_name)
    key, prefix = new_key()
    row = ApiKey(tenant_id=tenant.id, name=name, prefix=prefix, key_hash=hash_key(key))
    session.add(row)
    session.flush()
    return key, row


def revoke_key(session: Session, prefix: str) -> int:
    rows = session.scalars(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    ).all()
    for row in rows:
        row.revoked_at = utcnow()
    return len(rows)


def list_keys(session: Session) -> list[tuple[str, str, str, datetime, datetime | None]]:
    rows = session.execute(
        select(Tenant.name, ApiKey.prefix, ApiKey.name, ApiKey.created_at, ApiKey.revoked_at)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .order_by(ApiKey.created_at)
    ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise APIError(
            401,
            "unauthorized",
            "the Authorization header must be 'Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = request.headers.get("x-api-key")
    return key.strip() if key else None


def _unauthorized(message: str) -> APIError:
    return APIError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def key_is_valid(request: Request) -> bool:
    """Whether the request presents a key that is known and not revoked (False when the
    database cannot say: a caller that cannot be checked sees no more than one without a key)."""
    from app.db import session_factory

    try:
        key = _presented_key(request)
        if not key:
            return False
        with session_factory()() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
            return row is not None and row.revoked_at is None
    except Exception:
        return False


def tenant_for_request(request: Request, session: Session) -> uuid.UUID:
    settings = get_settings()
    if not settings.auth_enabled:
        cached = getattr(request.app.state, "local_tenant_id", None)
        if cached is None:
            cached = get_or_create_tenant(session, LOCAL_TENANT).id
            session.commit()
            request.app.state.local_tenant_id = cached
        return cached
    key = _presented_key(request)
    if not key:
        raise _unauthorized("an API key is required (Authorization: Bearer <key>)")
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    # The same message for unknown and revoked keys: it tells an attacker nothing.
    if row is None or row.revoked_at is not None:
        raise _unauthorized("the API key is not valid")
    return row.tenant_id
