"""FastAPI dependencies, as ``Annotated`` aliases for the routers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.auth import tenant_for_request
from app.blobstore import BlobStore, get_blobstore
from app.config import Settings, get_settings
from app.db import session_factory


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


def current_tenant(request: Request, session: SessionDep) -> uuid.UUID:
    tenant = tenant_for_request(request, session)
    request.state.tenant_id = tenant
    return tenant


TenantDep = Annotated[uuid.UUID, Depends(current_tenant)]
