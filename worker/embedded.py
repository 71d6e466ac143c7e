"""The embedded worker: no broker, the database is the queue.

It runs the same task code as the Celery worker, in its own process (the API never imports
torch). At start, jobs left ``running`` by a previous run are queued again, so work that was queued
or running when the service stopped resumes. Then it loops: index datasets waiting for it, run the
oldest queued job, otherwise sleep ``DLCPRUNE_POLL_SECONDS``.
"""

from __future__ import annotations

import logging
import signal
import threading

from app.config import Settings, get_settings
from app.db import migrate
from worker import runner

log = logging.getLogger("dlcprune.worker")


def serve(settings: Settings | None = None, stop: threading.Event | None = None) -> None:
    settings = settings or get_settings()
    stop = stop or threading.Event()
    migrate(settings)
    resumed = runner.requeue_interrupted(settings)
    if resumed:
        log.info("resuming %d interrupted job(s)", len(resumed))
    log.info("embedded worker polling %s", settings.database_url.split("://", 1)[0])
    while not stop.is_set():
        did_work = False
        for dataset_id in runner.pending_datasets(settings):
            runner.index_dataset(dataset_id, settings)
            did_work = True
        job_id = runner.next_job(settings)
        if job_id is not None:
            runner.run_job(job_id, settings)
            did_work = True
        if not did_work:
            stop.wait(settings.poll_seconds)


def main() -> None:
    logging.basicConfig(level=get_settings().log_level, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("embedded worker stopping (signal %d)", signum)
        stop.set()
        # A job in progress is interrupted; it is queued again at the next start.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    serve(stop=stop)


if __name__ == "__main__":
    main()
