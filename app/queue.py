"""Hand work to the workers, after the transaction that created it has committed.

With a broker (``DLCPRUNE_BROKER_URL``) tasks go to Celery by name, so the API never imports the
worker's code (or torch). Embedded, there is nothing to send: the embedded worker polls the
database for queued rows, which the committed transaction has already made visible.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from app.config import Settings, get_settings
from dlcprune.core.cache import LRU

log = logging.getLogger("dlcprune.queue")

RUN_JOB = "dlcprune.run_job"
RUN_SHARD = "dlcprune.run_shard"
INDEX_DATASET = "dlcprune.index_dataset"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the API (producer) and the workers (consumers)."""
    return {
        "broker_url": settings.broker_url,
        "task_default_queue": settings.task_queue,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "task_serializer": "json",
        "accept_content": ["json"],
    }


# Producer apps by their Celery configuration: one per broker, queue and timeout in use (a
# process normally has one; tests and tools that pass other settings get their own), each with
# its connection pool, closed when it leaves.
_producers: LRU[str, Any] = LRU(8, on_evict=lambda app: app.close())


def producer(settings: Settings | None = None) -> Any:
    """The Celery app that sends tasks with ``settings``' broker, queue and options (built once
    per distinct configuration)."""
    config = celery_config(settings or get_settings())

    def make() -> Any:
        from celery import Celery

        app = Celery("dlcprune-api")
        app.conf.update(config)
        return app

    return _producers.get_or_make(json.dumps(config, sort_keys=True, default=str), make)


def send(
    task: str, ident: uuid.UUID, settings: Settings | None = None, countdown: float | None = None
) -> bool:
    """Queue ``task`` for ``ident``. Returns False when the broker could not be reached; the row
    stays queued in the database and a later enqueue (or the embedded poller) picks it up."""
    settings = settings or get_settings()
    if settings.embedded_worker:
        return True
    try:
        producer(settings).send_task(
            task, args=[str(ident)], queue=settings.task_queue, countdown=countdown
        )
        return True
    except Exception as exc:  # broker down: the database row is the source of truth
        log.warning("could not enqueue %s %s: %s", task, ident, exc)
        return False


def enqueue_job(job_id: uuid.UUID) -> bool:
    return send(RUN_JOB, job_id)


def enqueue_index(dataset_id: uuid.UUID) -> bool:
    return send(INDEX_DATASET, dataset_id)


def broker_ping(settings: Settings | None = None, timeout: float = 2.0) -> None:
    settings = settings or get_settings()
    if settings.embedded_worker:
        return
    with producer(settings).connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
