"""The dashboard's one route: the page itself, ``GET /``.

It needs no key; the page asks for one when the API answers 401. The JSON and plot routes it reads
live with their resources: ``GET /v1/jobs/{id}/summary`` and the job's plots in
:mod:`app.jobs.router`, previews and distribution plots in :mod:`app.selections.router`, samples
and thumbnails in :mod:`app.datasets.router`.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.dashboard import STATIC_DIR

router = APIRouter()


@router.get("/", include_in_schema=False)
def dashboard_page() -> FileResponse:
    """The dashboard (static HTML; it needs no key, the API calls it makes do)."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )
