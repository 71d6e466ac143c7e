"""``dlcprune serve``, ``worker``, ``migrate`` and ``keys``: running the service.

``serve --no-embedded-worker`` imports nothing of ``worker`` (the API image has no worker/
directory); with the embedded worker, that worker is a process of its own.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from dlcprune.cli.common import CLIError


def serve(
    host: Annotated[
        str | None, typer.Option(help="default DLCPRUNE_HOST or 127.0.0.1", show_default=False)
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="default DLCPRUNE_PORT or 8000", show_default=False)
    ] = None,
    no_embedded_worker: Annotated[
        bool,
        typer.Option(
            "--no-embedded-worker",
            help="do not start the embedded worker (Celery workers do the work)",
        ),
    ] = False,
) -> None:
    """Run the HTTP service (and the embedded worker)."""
    import signal
    import subprocess

    import uvicorn

    from app.config import get_settings
    from app.db import migrate

    if host:
        os.environ["DLCPRUNE_HOST"] = host
    if port:
        os.environ["DLCPRUNE_PORT"] = str(port)
    settings = get_settings()
    if settings.migrate_on_start:
        migrate(settings)
    child = None
    if settings.embedded_worker and not no_embedded_worker:
        # A process of its own: the API never imports torch, the worker does. It watches this
        # process and stops when it is gone, whatever way this one ends.
        child = subprocess.Popen(
            [sys.executable, "-m", "worker.embedded", "--parent", str(os.getpid())]
        )

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    # uvicorn handles SIGTERM/SIGINT itself, then restores these handlers and re-raises the
    # signal: ending in SystemExit lets the finally below stop the worker first.
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    try:
        uvicorn.run(
            "app.main:app",
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            proxy_headers=True,
            timeout_keep_alive=settings.keep_alive_s,
        )
    finally:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


def worker(
    kind: Annotated[
        str,
        typer.Option(
            help="gpu: the scoring queues (score, shards); cpu: the rest (index, export, "
            "evaluate; and it sends the webhooks); all: every queue"
        ),
    ] = "all",
    work: Annotated[
        str | None,
        typer.Option(
            help="consume these kinds of work instead, comma-separated (e.g. index,export)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a Celery worker (solo pool, one job at a time) on its kind's queues."""
    from dlcprune.names import WORK_KINDS, WORKER_KINDS

    if kind not in WORKER_KINDS:
        raise CLIError(f"--kind must be one of {', '.join(WORKER_KINDS)}, not {kind!r}")
    chosen = tuple(k.strip() for k in work.split(",") if k.strip()) if work else None
    unknown = [k for k in chosen or () if k not in WORK_KINDS]
    if unknown:
        raise CLIError(f"--work: unknown kinds {unknown}; known: {', '.join(WORK_KINDS)}")
    from worker.celery_app import main as worker_main

    worker_main(kind, chosen)


def migrate() -> None:
    """Apply the database migrations and exit."""
    from app.db import migrate as run_migrations

    run_migrations()
    print("database migrated", file=sys.stderr)


keys = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@keys.command("create")
def create_key(
    tenant: Annotated[str, typer.Option(help="the tenant the key acts for")],
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="read, write or admin (repeat it; default read and write); admin manages the "
            "tenant's keys over the API (/v1/keys)"
        ),
    ] = None,
) -> None:
    """Create a key for a tenant (printed once)."""
    from app.auth import DEFAULT_SCOPES, scopes_text
    from app.auth import create_key as make
    from app.db import migrate as run_migrations
    from app.db import session_scope

    scopes = tuple(scope or DEFAULT_SCOPES)
    try:
        scopes_text(scopes)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    run_migrations()
    with session_scope() as session:
        key, row = make(session, tenant, name, scopes)
        print(key)
        print(
            f"created key {row.prefix} for tenant {tenant!r} (scopes: {row.scopes})",
            file=sys.stderr,
        )


@keys.command("revoke")
def revoke_key(
    prefix: Annotated[str, typer.Argument(help="the key's prefix", metavar="PREFIX")],
) -> None:
    """Revoke keys by their prefix."""
    from app.auth import revoke_key as revoke
    from app.db import migrate as run_migrations
    from app.db import session_scope

    run_migrations()
    with session_scope() as session:
        n = revoke(session, prefix)
        if n == 0:
            raise CLIError(f"no active key with prefix {prefix!r}")
        print(f"revoked {n} key(s)", file=sys.stderr)


@keys.command("list")
def list_keys() -> None:
    """List keys (prefixes only)."""
    from app.auth import list_keys as listed
    from app.db import migrate as run_migrations
    from app.db import session_scope

    run_migrations()
    with session_scope() as session:
        for tenant, prefix, name, created, revoked in listed(session):
            state = f"revoked {revoked:%Y-%m-%d}" if revoked else "active"
            print(f"{prefix}\t{tenant}\t{name}\t{created:%Y-%m-%d}\t{state}")
