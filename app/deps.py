"""FastAPI dependencies, as ``Annotated`` aliases for the routers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app import limits
from app.auth import Principal, principal_for_request
from app.blobstore import BlobStore, get_blobstore
from app.config import Settings, get_settings
from app.db import session_factory
from app.errors import APIError


def get_session(request: Request) -> Iterator[Session]:
    session = session_factory()()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_blobs() -> BlobStore:
    return get_blobstore()


BlobDep = Annotated[BlobStore, Depends(get_blobs)]


_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def current_principal(request: Request, session: SessionDep) -> Principal:
    """The request's key (401 when missing or wrong), its tenant's request rate (429), and the
    scope its method needs: read for GET, write for the rest (403)."""
    principal = principal_for_request(request, session)
    request.state.tenant_id = principal.tenant_id
    limits.check_rate(get_settings(), principal.tenant_id)
    needed = "read" if request.method in _READS else "write"
    if not principal.allows(needed):
        raise APIError(
            403,
            "insufficient_scope",
            f"this API key lacks the {needed!r} scope "
            f"(it has: {', '.join(sorted(principal.scopes))})",
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def current_tenant(principal: PrincipalDep) -> uuid.UUID:
    return principal.tenant_id


TenantDep = Annotated[uuid.UUID, Depends(current_tenant)]


def admin_principal(principal: PrincipalDep) -> Principal:
    if not principal.allows("admin"):
        raise APIError(
            403, "insufficient_scope", "managing API keys needs a key with the 'admin' scope"
        )
    return principal


AdminDep = Annotated[Principal, Depends(admin_principal)]
