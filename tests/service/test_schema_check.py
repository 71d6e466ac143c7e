"""Readiness waits for the schema: with DLCPRUNE_MIGRATE_ON_START off (a migration job runs the
migrations), the API answers /readyz 503 naming the schema until the migrations ran."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.db import migrate


def test_readyz_is_503_until_the_schema_is_current(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.config import reset_settings
    from app.main import create_app

    for key, value in {
        "DLCPRUNE_DATA_DIR": str(tmp_path),
        "DLCPRUNE_MIGRATE_ON_START": "false",
        "DLCPRUNE_BROKER_URL": "",
        "DLCPRUNE_DATABASE_URL": "",
        "DLCPRUNE_BLOB_URL": "",
        # The embedded default on loopback: no keys, so readiness names what failed.
        "DLCPRUNE_AUTH_ENABLED": "false",
    }.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    try:
        with TestClient(create_app()) as client:
            before = client.get("/readyz")
            assert before.status_code == 503
            assert "schema" in before.json()["checks"]["schema"]
            assert "dlcprune migrate" in before.json()["checks"]["schema"]
            migrate(Settings())
            after = client.get("/readyz")
            assert after.status_code == 200, after.text
            assert after.json()["checks"]["schema"] == "ok"
    finally:
        monkeypatch.undo()
        reset_settings()
