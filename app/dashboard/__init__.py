"""The web dashboard: a one-page app served by the API itself.

``router`` (in :mod:`app.dashboard.router`) answers the page at ``/``; :func:`static_files` serves
its JavaScript and CSS, which the app mounts at :data:`STATIC_PATH`. The page and its files need no
API key. The ``/v1`` routes the page reads (job summaries, plots, previews, samples) belong to
their resources' routers and need a key, exactly like the rest of the API.
"""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PATH = "/dashboard/static"


def static_files() -> StaticFiles:
    """The dashboard's static files: ``index.html``, ``app.css`` and the scripts, ``app.js`` and
    the JavaScript modules it imports (``api.js``, ``dom.js``, ``vocabulary.js``, ``home.js``,
    ``job.js``, ``builder.js``; no build step)."""
    return StaticFiles(directory=STATIC_DIR)


__all__ = ["STATIC_DIR", "STATIC_PATH", "static_files"]
