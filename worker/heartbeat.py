"""The one heartbeat of running work: a thread that shows the job (and its shard) is alive.

A job busy loading a model or inside one long batch does not report progress, yet must not look
lost to the reaper; so while a job or a shard runs, a thread of its own writes its heartbeat every
``heartbeat_seconds``. The thread carries the job's log context: the context variables of the code
that started it (a Celery task's ``job_id`` or ``shard_id``) and the ids it beats for, so its log
lines say which job they are about.

Time limits:

- ``hard_limit_s`` (a parameter; jobs and shards pass ``job_hard_time_limit_seconds``): past it (a
  batch that never ends) the heartbeat ends the whole process with exit status 70; the beats stop,
  and the reaper hands the work to another worker. 0: no limit. It counts from ``__enter__``: for
  a job, its run in this worker; for a shard, the shard's.
- the soft limit (``job_time_limit_seconds``) is not the heartbeat's: it fails the job at its next
  progress report, in the job's own thread (``worker.runner``), where an exception can be raised.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
import uuid

from sqlalchemy import update

from app.config import Settings
from app.db import session_factory
from app.jobs import service as jobs
from app.logs import log_context
from app.models import JobShard, utcnow

log = logging.getLogger("dlcprune.worker")

# The exit status of a process ended by the hard time limit (EX_SOFTWARE).
HARD_LIMIT_EXIT = 70


class Heartbeat:
    """A context manager: beats for ``job_id`` (and ``shard_id``, when a shard runs) every
    ``interval`` seconds (default ``settings.heartbeat_seconds``) from a daemon thread, from
    ``__enter__`` until ``__exit__``. A failed beat (the database briefly away) is logged and
    retried at the next one."""

    def __init__(
        self,
        settings: Settings,
        job_id: uuid.UUID,
        *,
        shard_id: uuid.UUID | None = None,
        hard_limit_s: float = 0.0,
        interval: float | None = None,
    ) -> None:
        self.settings = settings
        self.job_id = job_id
        self.shard_id = shard_id
        self.hard_limit_s = hard_limit_s
        self.interval = settings.heartbeat_seconds if interval is None else interval
        self.stop = threading.Event()
        self.started = time.monotonic()
        # A copy of this context: the log fields bound by the task travel into the thread.
        self.thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._run,),
            name=f"heartbeat-{shard_id or job_id}",
            daemon=True,
        )

    # The log fields of the beating thread's records.
    @property
    def context(self) -> dict[str, object]:
        return {"job_id": self.job_id, "shard_id": self.shard_id}

    @property
    def what(self) -> str:
        return (
            f"shard {self.shard_id} of job {self.job_id}" if self.shard_id else f"job {self.job_id}"
        )

    def beat(self) -> None:
        """One beat: the shard's heartbeat (if any) and the job's, in one transaction."""
        with session_factory(self.settings)() as session:
            if self.shard_id is not None:
                session.execute(
                    update(JobShard)
                    .where(JobShard.id == self.shard_id)
                    .values(heartbeat_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
            jobs.beat(session, self.job_id)  # commits

    def _past_hard_limit(self) -> bool:
        return bool(self.hard_limit_s) and time.monotonic() - self.started > self.hard_limit_s

    def _run(self) -> None:
        with log_context(**self.context):
            while not self.stop.wait(self.interval):
                if self._past_hard_limit():
                    log.critical(
                        "%s: past the hard time limit (%s s); exiting", self.what, self.hard_limit_s
                    )
                    logging.shutdown()
                    os._exit(HARD_LIMIT_EXIT)
                try:
                    self.beat()
                except Exception as exc:  # the database may be briefly away; the next beat retries
                    log.warning("%s: heartbeat failed: %s", self.what, exc)

    def __enter__(self) -> Heartbeat:
        self.started = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


class ExportHeartbeat(Heartbeat):
    """The heartbeat of a store export (``app.exports``): building an archive or putting a large
    object reports no progress for a while, and must not look lost to the reaper."""

    def __init__(self, settings: Settings, export_id: uuid.UUID) -> None:
        super().__init__(settings, export_id)

    @property
    def context(self) -> dict[str, object]:
        return {"export_id": self.job_id}

    @property
    def what(self) -> str:
        return f"export {self.job_id}"

    def beat(self) -> None:
        from app.exports import service as exports

        with session_factory(self.settings)() as session:
            exports.beat(session, self.job_id)
