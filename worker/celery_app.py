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
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_ready,
    worker_shutdown,
)

from app.config import get_settings
from app.logs import configure as configure_logging
from app.logs import log_context
from app.queue import (
    INDEX_DATASET,
    RUN_EVALUATION,
    RUN_EXPORT,
    RUN_JOB,
    RUN_LABEL_ISSUES,
    RUN_SHARD,
    celery_config,
    worker_queues,
)
from dlcprune.names import CPU_WORK, GPU_WORK, WORK_KINDS

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
    if name not in (RUN_JOB, RUN_EXPORT):
        return
    try:
        from app.db import session_factory
        from app.exports import service as exports
        from app.jobs import service as jobs

        fail = jobs.mark_failed if name == RUN_JOB else exports.fail
        with session_factory()() as session:
            fail(session, uuid.UUID(ident), "transient_error", f"gave up: {exc}")
    except Exception:  # still down: the reaper will end it after its attempts
        log.warning("could not mark %s %s failed", name, ident)


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


@celery.task(name=RUN_EVALUATION, bind=True, max_retries=None)
def run_evaluation_task(self: Any, evaluation_id: str) -> str:
    from worker.evaluate import run_evaluation

    return str(_retrying(self, run_evaluation, evaluation_id))


@celery.task(name=RUN_LABEL_ISSUES, bind=True, max_retries=None)
def run_label_issues_task(self: Any, score_set_id: str) -> str:
    from worker.evaluate import run_label_issues

    return str(_retrying(self, run_label_issues, score_set_id))


@celery.task(name=INDEX_DATASET, bind=True, max_retries=None)
def index_dataset_task(self: Any, dataset_id: str) -> str | None:
    from worker.runner import index_dataset

    with log_context(dataset_id=dataset_id):
        status = _retrying(self, index_dataset, dataset_id)
    return str(status) if status is not None else None


@celery.task(name=RUN_EXPORT, bind=True, max_retries=None)
def run_export_task(self: Any, export_id: str) -> str:
    from worker.runner import run_export

    with log_context(export_id=export_id):
        return str(_retrying(self, run_export, export_id))


# What this process takes (set by ``main``): its kind (gpu, cpu, all) and kinds of work.
KIND_WORK = {"gpu": GPU_WORK, "cpu": CPU_WORK, "all": WORK_KINDS}
_role: dict[str, Any] = {"kind": "all", "work": WORK_KINDS}
_threads: list[Any] = []
_presence: Any = None


@worker_ready.connect
def _start_threads(sender: Any = None, **_: Any) -> None:
    """The reaper in every worker; the webhook sender where CPU work is taken; the presence
    row (busy, GPU memory) in every worker."""
    from app.webhooks.delivery import DeliverySender
    from worker.presence import Presence
    from worker.reaper import ReaperThread
    from worker.runner import worker_name

    global _presence
    settings = get_settings()
    _threads.append(ReaperThread(settings))
    if settings.webhook_sender and any(kind in CPU_WORK for kind in _role["work"]):
        _threads.append(DeliverySender(settings))
    _presence = Presence(
        settings,
        getattr(sender, "hostname", None) or worker_name(),
        _role["kind"],
        worker_queues(tuple(_role["work"]), settings),
        gpu=any(kind in GPU_WORK for kind in _role["work"]),
    )
    _threads.append(_presence)
    for thread in _threads:
        thread.start()
    log.info(
        "%s worker ready: %s",
        _role["kind"],
        ", ".join(type(t).__name__ for t in _threads),
    )


@worker_shutdown.connect
def _stop_threads(**_: Any) -> None:
    for thread in _threads:
        thread.stop()


@task_prerun.connect
def _busy(task: Any = None, **_: Any) -> None:
    if _presence is not None:
        _presence.busy(getattr(task, "name", "?"))


@task_postrun.connect
def _idle(**_: Any) -> None:
    if _presence is not None:
        _presence.idle()


def main(
    kind: str = "all", work: tuple[str, ...] | None = None, extra_args: list[str] | None = None
) -> None:
    """Start a worker process (solo pool: one job at a time in this process) that consumes the
    queues of ``work`` (default: the kinds of work of ``kind``: gpu, cpu or all)."""
    import socket

    settings = get_settings()
    chosen = tuple(work) if work else KIND_WORK[kind]
    queues = worker_queues(chosen, settings)
    _role.update(kind=kind, work=chosen)
    argv = [
        "worker",
        "--pool=solo",
        "--concurrency=1",
        f"--queues={','.join(queues)}",
        f"--loglevel={settings.log_level}",
        f"--hostname=dlcprune-{kind}-{socket.gethostname()}-%i@%h",
        "--without-gossip",
        "--without-mingle",
        *(extra_args or []),
    ]
    celery.worker_main(argv)
