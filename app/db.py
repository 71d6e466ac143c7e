"""Database engine, sessions and migrations (SQLAlchemy 2, Alembic).

PostgreSQL in production, SQLite in the embedded default; the schema is the same and comes from the
Alembic migrations in ``migrations/``, applied on start.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL lets the API read while the embedded worker writes; foreign keys are off by
            # default in SQLite.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def get_engine(settings: Settings | None = None) -> Engine:
    url = (settings or get_settings()).database_url
    with _lock:
        if url not in _engines:
            _engines[url] = make_engine(url)
            _factories[url] = sessionmaker(_engines[url], expire_on_commit=False)
        return _engines[url]


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    url = (settings or get_settings()).database_url
    get_engine(settings)
    return _factories[url]


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(settings: Settings | None = None) -> None:
    """Bring the schema to the latest migration (idempotent)."""
    from alembic import command

    settings = settings or get_settings()
    engine = get_engine(settings)
    cfg = alembic_config(settings.database_url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Two processes starting at once must not both run the migrations.
            conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


_heads: dict[str, str] = {}


def check_schema(settings: Settings | None = None) -> None:
    """Raise unless the database's schema is at the latest migration (a readiness check: where
    a migration job runs the migrations, the API is not ready before it finished)."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    settings = settings or get_settings()
    if "head" not in _heads:
        _heads["head"] = str(ScriptDirectory.from_config(alembic_config("")).get_current_head())
    with get_engine(settings).connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != _heads["head"]:
        raise RuntimeError(
            f"the database schema is at {current or 'nothing'}, this code needs "
            f"{_heads['head']} (dlcprune migrate)"
        )


def ping(settings: Settings | None = None) -> None:
    with get_engine(settings).connect() as conn:
        conn.execute(text("SELECT 1"))
