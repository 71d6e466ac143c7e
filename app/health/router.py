"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app import db, queue
from app.blobstore import get_blobstore
from app.config import get_settings

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
async def readyz() -> JSONResponse:
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
    shown = {k: ("ok" if v is None else v) for k, v in checks.items()}
    if settings.embedded_worker:
        shown["broker"] = "embedded (no broker)"
    body = {
        "status": "ready" if not failed else "unavailable",
        "checks": shown,
        "broker": "embedded" if settings.embedded_worker else "celery",
    }
    if failed:
        return JSONResponse(
            {
                "error": {
                    "code": "unavailable",
                    "message": "; ".join(f"{k}: {v}" for k, v in failed.items()),
                },
                **body,
            },
            status_code=503,
        )
    return JSONResponse(body)
