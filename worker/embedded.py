"""The embedded worker: no broker, the database is the queue.

It runs the same task code as the Celery worker, in its own process (the API never imports
torch). Jobs left ``running`` by a worker that stopped beating (the service was stopped while
they ran) are queued again by the reaper (``worker.reaper``), so work that was queued or running
when the service stopped resumes when it starts. The loop: reap, index datasets waiting for it,
run the oldest queued job of the highest priority, the oldest queued evaluation and label issues,
otherwise sleep ``DLCPRUNE_POLL_SECONDS``. An export's error never stops the loop: it is logged,
and the export is failed by its own run or by the reaper.
Webhook deliveries are sent by a thread of this process (``app.webhooks.delivery``), so a long
job does not hold them back.

Started by ``dlcprune serve`` with ``--parent PID``: it stops when that process is gone, so a
killed service never leaves a worker behind. Its logs are JSON lines (``app.logs``), each record
of a job carrying the job's ``job_id``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
import uuid

from app.config import Settings, get_settings
from app.db import migrate
from app.logs import configure as configure_logging
from app.logs import log_context
from app.webhooks.delivery import DeliverySender
from worker import evaluate, reaper, runner

log = logging.getLogger("dlcprune.worker")


def serve(settings: Settings | None = None, stop: threading.Event | None = None) -> None:
    settings = settings or get_settings()
    stop = stop or threading.Event()
    migrate(settings)
    log.info("embedded worker polling %s", settings.database_url.split("://", 1)[0])
    sender = DeliverySender(settings) if settings.webhook_sender else None
    if sender is not None:
        sender.start()
    try:
        _loop(settings, stop)
    finally:
        if sender is not None:
            sender.stop()


def _loop(settings: Settings, stop: threading.Event) -> None:
    last_reap = -float("inf")
    while not stop.is_set():
        try:
            if time.monotonic() - last_reap >= settings.reaper_seconds:
                reaper.reap(settings)
                last_reap = time.monotonic()
            did_work = False
            for dataset_id in runner.pending_datasets(settings):
                with log_context(dataset_id=dataset_id):
                    runner.index_dataset(dataset_id, settings)
                did_work = True
            for export_id in runner.pending_exports(settings):
                with log_context(export_id=export_id):
                    _export(export_id, settings)
                did_work = True
            job_id = runner.next_job(settings)
            if job_id is not None:
                with log_context(job_id=job_id):
                    runner.run_job(job_id, settings)
                did_work = True
            evaluation_id = evaluate.next_evaluation(settings)
            if evaluation_id is not None:
                evaluate.run_evaluation(evaluation_id, settings)
                did_work = True
            score_set_id = evaluate.next_label_issues(settings)
            if score_set_id is not None:
                evaluate.run_label_issues(score_set_id, settings)
                did_work = True
        except (runner.TransientError, *runner.TRANSIENT) as exc:
            log.warning("embedded worker: %s; retrying", exc)
            did_work = False
        if not did_work:
            stop.wait(settings.poll_seconds)


def _export(export_id: uuid.UUID, settings: Settings) -> None:
    """Run one export; an error it did not end it with is logged and the loop goes on (the
    export was failed by ``app.exports.run``, or stays running until the reaper requeues it or
    fails it). A transient error is the loop's to retry."""
    try:
        runner.run_export(export_id, settings)
    except (runner.TransientError, *runner.TRANSIENT):
        raise
    except Exception:
        log.exception("export %s: unexpected error", export_id)


def _watch_parent(parent: int) -> None:
    """SIGTERM ourselves once the parent process is gone (we were re-parented)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            log.info("parent %d is gone; stopping", parent)
            os.kill(os.getpid(), signal.SIGTERM)
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker.embedded")
    parser.add_argument("--parent", type=int, default=None, help="stop when this pid is gone")
    args = parser.parse_args(argv)
    configure_logging(get_settings().log_level)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("embedded worker stopping (signal %d)", signum)
        stop.set()
        # A job in progress is interrupted here; its heartbeat stops and it is queued again.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.parent is not None:
        threading.Thread(target=_watch_parent, args=(args.parent,), daemon=True).start()
    serve(stop=stop)


if __name__ == "__main__":
    main()
