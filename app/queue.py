"""Hand work to the workers, after the transaction that created it has committed.

With a broker (``DLCPRUNE_BROKER_URL``) tasks go to Celery by name, so the API never imports the
worker's code (or torch). Embedded, there is nothing to send: the embedded worker polls the
database for queued rows, which the committed transaction has already made visible.

Routing: each task is a kind of work (``TASK_KINDS``), and each kind has a queue of its own
(``Settings.queue_name``: ``DLCPRUNE_QUEUE_<KIND>``), so a 12-hour scoring job on the GPU
workers' queue never delays an indexing task on the CPU workers'. A new task is one line in
``TASK_KINDS``. Within a queue, a task's priority (``dlcprune.names.PRIORITIES``) decides which
is taken first: on Redis every queue is one list per priority (``<queue>``, ``<queue>:1``,
``<queue>:2``, high to low), and a worker pops the lists in that order.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from app.config import Settings, get_settings
from dlcprune.core.cache import LRU
from dlcprune.names import DEFAULT_PRIORITY, PRIORITIES, WORK_KINDS

log = logging.getLogger("dlcprune.queue")

RUN_JOB = "dlcprune.run_job"
RUN_SHARD = "dlcprune.run_shard"
INDEX_DATASET = "dlcprune.index_dataset"
RUN_EXPORT = "dlcprune.run_export"
RUN_EVALUATION = "dlcprune.run_evaluation"
RUN_LABEL_ISSUES = "dlcprune.run_label_issues"

# The kind of work (dlcprune.names.WORK_KINDS) of each task: it goes to that kind's queue.
TASK_KINDS: dict[str, str] = {
    INDEX_DATASET: "index",
    RUN_JOB: "score",
    RUN_SHARD: "shards",
    RUN_EXPORT: "export",
    RUN_EVALUATION: "evaluate",
    RUN_LABEL_ISSUES: "evaluate",
}

# Redis lists per queue, one per priority: the transport's priority numbers (0 is taken first)
# and the separator between a queue's name and its priority.
PRIORITY_STEPS: dict[str, int] = {name: step for step, name in enumerate(PRIORITIES)}
PRIORITY_SEP = ":"


def queue_for(task: str, settings: Settings) -> str:
    """The queue ``task`` is sent to."""
    return settings.queue_name(TASK_KINDS[task])


def worker_queues(kinds: tuple[str, ...], settings: Settings) -> list[str]:
    """The queues a worker taking ``kinds`` of work consumes (``dlcprune worker --kind``)."""
    unknown = [k for k in kinds if k not in WORK_KINDS]
    if unknown:
        raise ValueError(f"unknown kinds of work {unknown}; known: {', '.join(WORK_KINDS)}")
    return [settings.queue_name(kind) for kind in kinds]


def priority_lists(queue: str) -> list[str]:
    """The Redis lists holding ``queue``'s messages, highest priority first."""
    return [f"{queue}{PRIORITY_SEP}{step}" if step else queue for step in PRIORITY_STEPS.values()]


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the API (producer) and the workers (consumers)."""
    return {
        "broker_url": settings.broker_url,
        "task_default_queue": settings.task_queue,
        "task_default_priority": PRIORITY_STEPS[DEFAULT_PRIORITY],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_s,
            "priority_steps": sorted(PRIORITY_STEPS.values()),
            "sep": PRIORITY_SEP,
            "queue_order_strategy": "priority",
        },
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
    task: str,
    ident: uuid.UUID,
    settings: Settings | None = None,
    countdown: float | None = None,
    priority: str = DEFAULT_PRIORITY,
) -> bool:
    """Queue ``task`` for ``ident`` on its kind's queue, at ``priority``. Returns False when the
    broker could not be reached; the row stays queued in the database and a later enqueue (or
    the embedded poller) picks it up."""
    settings = settings or get_settings()
    if settings.embedded_worker:
        return True
    try:
        producer(settings).send_task(
            task,
            args=[str(ident)],
            queue=queue_for(task, settings),
            countdown=countdown,
            priority=PRIORITY_STEPS[priority],
        )
        return True
    except Exception as exc:  # broker down: the database row is the source of truth
        log.warning("could not enqueue %s %s: %s", task, ident, exc)
        return False


def enqueue_job(job_id: uuid.UUID, priority: str = DEFAULT_PRIORITY) -> bool:
    return send(RUN_JOB, job_id, priority=priority)


def enqueue_evaluation(evaluation_id: uuid.UUID) -> bool:
    return send(RUN_EVALUATION, evaluation_id)


def enqueue_label_issues(score_set_id: uuid.UUID) -> bool:
    return send(RUN_LABEL_ISSUES, score_set_id)


def enqueue_index(dataset_id: uuid.UUID) -> bool:
    return send(INDEX_DATASET, dataset_id)


def enqueue_export(export_id: uuid.UUID) -> bool:
    return send(RUN_EXPORT, export_id)


def broker_ping(settings: Settings | None = None, timeout: float = 2.0) -> None:
    settings = settings or get_settings()
    if settings.embedded_worker:
        return
    with producer(settings).connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
