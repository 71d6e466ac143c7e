"""The Alembic migrations build exactly the schema the ORM models describe, on both databases."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from app.config import Settings
from app.db import migrate
from app.models import Base


def _diff(url: str) -> list:
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    return diff


def test_migrations_match_models_on_postgres(service_env: dict[str, str]) -> None:
    assert _diff(service_env["DLCPRUNE_DATABASE_URL"]) == []


def test_migrations_match_models_on_sqlite_and_are_idempotent(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    migrate(settings)
    migrate(settings)  # a second start changes nothing
    assert _diff(settings.database_url) == []
