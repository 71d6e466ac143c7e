"""A worker's presence: a row in ``workers`` that the worker refreshes every few seconds with
what it consumes, whether a task is running, and its GPU's memory (GPU workers). ``/metrics``
reads the rows (``app.metrics``), so every API replica shows every worker, and a worker that
stopped refreshing drops out of the metrics once its row is stale; the reaper deletes rows
unseen for an hour.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import delete, update

from app.config import Settings
from app.db import session_factory
from app.models import WorkerPresence, utcnow

log = logging.getLogger("dlcprune.worker")


def gpu_memory() -> tuple[int, int] | None:
    """(bytes used, bytes in all) on this process's GPU, or None without one."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info()
        return int(total - free), int(total)
    except Exception as exc:  # no driver, a broken device: no GPU figures
        log.debug("no GPU memory figures: %s", exc)
        return None


class Presence(threading.Thread):
    """Refreshes this worker's row every ``interval`` seconds until stopped; ``busy(task)``
    and ``idle()`` are called around each task (Celery's task signals)."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        kind: str,
        queues: list[str],
        interval: float = 5.0,
        gpu: bool = False,
    ) -> None:
        super().__init__(name="dlcprune-presence", daemon=True)
        self.settings = settings
        self.worker = name
        self.kind = kind
        self.queues = queues
        self.interval = interval
        self.gpu = gpu
        self.task: str | None = None
        self.halt = threading.Event()

    def busy(self, task: str) -> None:
        self.task = task
        self._write()

    def idle(self) -> None:
        self.task = None
        self._write()

    def _values(self) -> dict[str, Any]:
        used_total = gpu_memory() if self.gpu else None
        return {
            "kind": self.kind,
            "queues": {"queues": self.queues},
            "busy": self.task is not None,
            "task": self.task,
            "gpu_memory_used_bytes": used_total[0] if used_total else None,
            "gpu_memory_total_bytes": used_total[1] if used_total else None,
            "seen_at": utcnow(),
        }

    def _write(self) -> None:
        try:
            with session_factory(self.settings)() as session:
                values = self._values()
                found = session.execute(
                    update(WorkerPresence)
                    .where(WorkerPresence.name == self.worker)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                ).rowcount
                if not found:
                    session.add(WorkerPresence(name=self.worker, started_at=utcnow(), **values))
                session.commit()
        except Exception as exc:  # the database away: the next refresh tries again
            log.warning("could not record this worker's presence: %s", exc)

    def run(self) -> None:
        while not self.halt.is_set():
            self._write()
            self.halt.wait(self.interval)

    def stop(self) -> None:
        """Stop refreshing and remove the row (a clean shutdown)."""
        self.halt.set()
        try:
            with session_factory(self.settings)() as session:
                session.execute(delete(WorkerPresence).where(WorkerPresence.name == self.worker))
                session.commit()
        except Exception as exc:
            log.warning("could not remove this worker's presence: %s", exc)
