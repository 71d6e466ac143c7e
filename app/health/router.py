"""Liveness and readiness.

``/readyz`` names each dependency's state. The exception text of a failed check is shown only to
a caller whose API key is valid (or on the embedded default with auth off, which only its own
host reaches); anyone else reads ``failed``: the text can name hosts, users and paths."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app import db, queue
from app.auth import key_is_valid
from app.blobstore import get_blobstore
from app.config import get_settings
from app.errors import problem_document

log = logging.getLogger("dlcprune.api")
router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check(fn) -> str | None:  # type: ignore[no-untyped-def]
    try:
        fn()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"


@router.get(
    "/readyz",
    summary="Database (at the latest schema), broker and blob store are reachable",
    responses={503: {"description": "a dependency is down"}},
)
async def readyz(request: Request) -> JSONResponse:
    settings = get_settings()
    checks = {
        "database": await run_in_threadpool(_check, db.ping),
        "schema": await run_in_threadpool(_check, db.check_schema),
        "broker": await run_in_threadpool(_check, queue.broker_ping)
        if not settings.embedded_worker
        else None,
        "blob_store": await run_in_threadpool(_check, lambda: get_blobstore().check()),
    }
    failed = {k: v for k, v in checks.items() if v is not None}
    for name, why in failed.items():
        log.warning("readiness check %s failed: %s", name, why)
    if failed and settings.auth_enabled and not await run_in_threadpool(key_is_valid, request):
        failed = dict.fromkeys(failed, "failed")
    shown = {k: ("ok" if failed.get(k) is None else failed[k]) for k in checks}
    if settings.embedded_worker:
        shown["broker"] = "embedded (no broker)"
    body = {
        "status": "ready" if not failed else "unavailable",
        "checks": shown,
        "broker": "embedded" if settings.embedded_worker else "celery",
    }
    if failed:
        problem = problem_document(
            503,
            "unavailable",
            "; ".join(f"{k}: {v}" for k, v in failed.items()),
            instance=request.url.path,
            request_id=getattr(request.state, "request_id", None),
        )
        return JSONResponse(
            {**body, **problem}, status_code=503, media_type="application/problem+json"
        )
    return JSONResponse(body)
