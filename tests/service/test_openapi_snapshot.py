"""The OpenAPI document changes only on purpose: it must equal docs/openapi.json.

A change to a route, a schema, a bound or a description shows up here as a diff to review and
commit with the change: ``.venv/bin/python -m app.openapi docs/openapi.json``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from app.openapi import render

SNAPSHOT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_openapi_document_equals_the_committed_snapshot() -> None:
    current = render()
    committed = SNAPSHOT.read_text(encoding="utf-8")
    if current != committed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                current.splitlines(keepends=True),
                "docs/openapi.json",
                "app.openapi()",
                n=2,
            )
        )
        raise AssertionError(
            "the OpenAPI document changed; if on purpose, run "
            "`.venv/bin/python -m app.openapi docs/openapi.json` and commit it:\n" + diff[:6000]
        )
