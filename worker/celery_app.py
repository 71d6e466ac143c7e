"""The Celery application: thin tasks that take ids and leave state in the database.

Settings fit long GPU jobs: late acks and reject-on-worker-lost (a job whose worker dies is
redelivered), prefetch 1 (a worker holds no job it is not running), a visibility timeout above the
longest job (``DLCPRUNE_VISIBILITY_TIMEOUT_S``), json only. Run with the solo pool, one job per
process (and per GPU): ``dlcprune worker``.
"""

from __future__ import annotations

import logging

from celery import Celery

from app.config import get_settings
from app.queue import INDEX_DATASET, RUN_JOB, celery_config

log = logging.getLogger("dlcprune.worker")

celery = Celery("dlcprune")
celery.conf.update(celery_config(get_settings()))


@celery.task(name=RUN_JOB)
def run_job_task(job_id: str) -> str:
    from worker.runner import run_job

    return str(run_job(job_id))


@celery.task(name=INDEX_DATASET)
def index_dataset_task(dataset_id: str) -> str | None:
    from worker.runner import index_dataset

    status = index_dataset(dataset_id)
    return str(status) if status is not None else None


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
