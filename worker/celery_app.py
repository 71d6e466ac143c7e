"""The Celery application: thin tasks that take ids and leave state in the database.

Settings fit long GPU jobs: late acks and reject-on-worker-lost (a job whose worker dies is
redelivered), prefetch 1 (a worker holds no job it is not running), a visibility timeout above the
longest job (``DLCPRUNE_VISIBILITY_TIMEOUT_S``), json only. Run with the solo pool, one job per
process (and per GPU): ``dlcprune worker``.

Logs are JSON lines (``app.logs``; ``DLCPRUNE_LOG_FORMAT=text`` for text) instead of Celery's own
format, and every record written while a task runs carries its ``job_id`` (``shard_id`` for a
shard, ``dataset_id`` for indexing).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_ready, worker_shutdown

from app.config import get_settings
from app.logs import configure as configure_logging
from app.logs import log_context
from app.queue import INDEX_DATASET, RUN_JOB, RUN_SHARD, celery_config

log = logging.getLogger("dlcprune.worker")

celery = Celery("dlcprune")
celery.conf.update(celery_config(get_settings()))


def _retrying(task: Any, fn: Any, ident: str) -> Any:
    """Run ``fn(ident)``; a transient error (database, broker or storage away) retries the task
    with exponential backoff, at most ``DLCPRUNE_TRANSIENT_RETRIES`` times."""
    from worker.runner import TRANSIENT, TransientError

    settings = get_settings()
    try:
        return fn(ident)
    except (TransientError, *TRANSIENT) as exc:
        retries = task.request.retries
        if retries >= settings.transient_retries:
            log.error("%s %s: giving up after %d retries: %s", task.name, ident, retries, exc)
            _fail_quietly(ident, task.name, exc)
            return "failed"
        raise task.retry(exc=exc, countdown=min(60.0, 2.0**retries)) from exc


def _fail_quietly(ident: str, name: str, exc: BaseException) -> None:
    if name != RUN_JOB:
        return
    try:
        from app.db import session_factory
        from app.jobs import service as jobs

        with session_factory()() as session:
            jobs.mark_failed(session, uuid.UUID(ident), "transient_error", f"gave up: {exc}")
    except Exception:  # still down: the reaper will end it after its attempts
        log.warning("could not mark job %s failed", ident)


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Celery leaves logging to us when this signal has a receiver: JSON lines (or text)."""
    configure_logging(get_settings().log_level)


@celery.task(name=RUN_JOB, bind=True, max_retries=None)
def run_job_task(self: Any, job_id: str) -> str:
    from worker.runner import run_job

    with log_context(job_id=job_id):
        return str(_retrying(self, run_job, job_id))


@celery.task(name=RUN_SHARD, bind=True, max_retries=None)
def run_shard_task(self: Any, shard_id: str) -> str:
    from worker.runner import worker_name
    from worker.shards import run_shard

    with log_context(shard_id=shard_id):
        return str(_retrying(self, lambda i: run_shard(i, get_settings(), worker_name()), shard_id))


@celery.task(name=INDEX_DATASET, bind=True, max_retries=None)
def index_dataset_task(self: Any, dataset_id: str) -> str | None:
    from worker.runner import index_dataset

    with log_context(dataset_id=dataset_id):
        status = _retrying(self, index_dataset, dataset_id)
    return str(status) if status is not None else None


@worker_ready.connect
def _start_reaper(**_: Any) -> None:
    from worker.reaper import ReaperThread

    global _reaper
    _reaper = ReaperThread(get_settings())
    _reaper.start()
    log.info("reaper started (every %s s)", get_settings().reaper_seconds)


@worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    if _reaper is not None:
        _reaper.stop()


_reaper: Any = None


def main(extra_args: list[str] | None = None) -> None:
    """Start a worker process (solo pool: one job at a time in this process)."""
    import socket

    settings = get_settings()
    argv = [
        "worker",
        "--pool=solo",
        "--concurrency=1",
        f"--queues={settings.task_queue}",
        f"--loglevel={settings.log_level}",
        f"--hostname=dlcprune-{socket.gethostname()}-%i@%h",
        "--without-gossip",
        "--without-mingle",
        *(extra_args or []),
    ]
    celery.worker_main(argv)
