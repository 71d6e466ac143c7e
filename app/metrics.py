"""Prometheus metrics, served at ``GET /metrics`` (text format, no auth, not in the OpenAPI spec).

Two kinds:

- Read from the database at scrape time by ``DatabaseCollector``, so they are right whichever
  process (API, Celery worker, embedded worker) changed the rows, and the same from every API
  replica: jobs and datasets by state, the duration of finished jobs as a histogram by final state,
  the samples scored (a counter), the queue depth (queued jobs in the database, and the broker's
  task lists via Redis ``LLEN`` when a Redis broker is configured: in all, and per kind of work's
  queue in ``dlcprune_broker_queue_depth``), and the Celery workers (``worker.presence`` rows:
  live workers by kind, busy or not, their GPU memory). Each is one aggregate SQL query; a
  database or broker that is down only sets ``dlcprune_database_up`` / ``dlcprune_broker_up`` to
  0, the scrape still answers.
- Observed in the API process: HTTP requests by method, route template and status, their
  latency, and the time to create a selection.

``dlcprune_samples_scored_total`` counts forward passes over samples: for every succeeded job that
was not answered from the cache, its samples times its passes (the unmasked pass plus one per mask
level and draw), so ``rate()`` of it is the scoring throughput in samples per second. It is a sum
over the stored jobs: deleting a dataset (with its jobs) lowers it, which Prometheus reads as a
counter reset.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import session_factory
from app.models import (
    Dataset,
    DatasetStatus,
    Evaluation,
    Job,
    JobShard,
    JobStatus,
    ScoreSet,
    ShardStatus,
    StoreExport,
    WorkerPresence,
    utcnow,
)
from app.queue import priority_lists
from dlcprune.names import GPU_WORK, WORK_KINDS, WORKER_KINDS

log = logging.getLogger("dlcprune.metrics")

# Upper bounds of the job duration buckets, in seconds: from a cached-model few seconds to a day.
JOB_DURATION_BUCKETS = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SELECTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

FINISHED_STATES = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)
BROKER_TIMEOUT_S = 0.5
# A worker whose presence row is older than this is not counted (it refreshes every 5 s).
WORKER_STALE_S = 30.0


def _duration_seconds(dialect: str) -> Any:
    """SQL for ``finished_at - started_at`` in seconds on this database."""
    if dialect == "sqlite":
        return (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0
    return func.extract("epoch", Job.finished_at - Job.started_at)


def _passes() -> Any:
    """SQL for a job's forward passes over its samples (as ``worker.shards`` counts them)."""
    levels = func.coalesce(Job.params["levels"].as_integer(), 0)
    draws = func.coalesce(Job.params["draws"].as_integer(), 1)
    return 1 + levels * draws


class DatabaseCollector:
    """Metrics computed from the database (and the broker) each time Prometheus scrapes."""

    def __init__(self, settings_fn: Any = None) -> None:
        self.settings_fn = settings_fn or get_settings
        self._redis: dict[str, Any] = {}
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        """The families this collector answers (without touching the database)."""
        return [
            GaugeMetricFamily("dlcprune_database_up", ""),
            GaugeMetricFamily("dlcprune_jobs", ""),
            GaugeMetricFamily("dlcprune_datasets", ""),
            HistogramMetricFamily("dlcprune_job_duration_seconds", ""),
            CounterMetricFamily("dlcprune_samples_scored", ""),
            GaugeMetricFamily("dlcprune_backlog", ""),
            GaugeMetricFamily("dlcprune_workers", ""),
            GaugeMetricFamily("dlcprune_worker_busy", ""),
            GaugeMetricFamily("dlcprune_worker_gpu_memory_bytes", ""),
            GaugeMetricFamily("dlcprune_broker_queue_depth", ""),
            GaugeMetricFamily("dlcprune_queue_depth", ""),
            GaugeMetricFamily("dlcprune_broker_up", ""),
            GaugeMetricFamily("dlcprune_scrape_duration_seconds", ""),
        ]

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        settings = self.settings_fn()
        up = GaugeMetricFamily(
            "dlcprune_database_up", "1 when the last scrape could read the database, else 0"
        )
        queue = GaugeMetricFamily(
            "dlcprune_queue_depth",
            "work waiting: queued jobs in the database, and task messages in the broker's queue",
            labels=["source"],
        )
        try:
            with session_factory(settings)() as session:
                families = list(self._from_database(session, queue))
            up.add_metric([], 1)
        except Exception as exc:
            log.warning("metrics: database unavailable: %s", exc)
            families = []
            up.add_metric([], 0)
        yield up
        yield from families
        if not settings.embedded_worker:
            broker_up = GaugeMetricFamily(
                "dlcprune_broker_up",
                "1 when the broker's queue length could be read, else 0 (Redis brokers only)",
            )
            lengths = self._broker_queue_lengths(settings)
            broker_up.add_metric([], 0 if lengths is None else 1)
            if lengths is not None:
                queue.add_metric(["broker"], sum(lengths.values()))
                per_queue = GaugeMetricFamily(
                    "dlcprune_broker_queue_depth",
                    "task messages waiting in each kind of work's queue (all priorities)",
                    labels=["kind", "queue"],
                )
                for kind, length in lengths.items():
                    per_queue.add_metric([kind, settings.queue_name(kind)], length)
                yield per_queue
            yield broker_up
        yield queue
        took = GaugeMetricFamily(
            "dlcprune_scrape_duration_seconds", "time this process took to compute the metrics"
        )
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _from_database(self, session: Session, queue: GaugeMetricFamily) -> Iterator[Metric]:
        dialect = session.get_bind().dialect.name

        # Jobs and datasets by state (all tenants): one GROUP BY each.
        by_state = dict.fromkeys((s.value for s in JobStatus), 0)
        for status, count in session.execute(select(Job.status, func.count()).group_by(Job.status)):
            by_state[str(status)] = int(count)
        jobs = GaugeMetricFamily("dlcprune_jobs", "jobs by state, all tenants", labels=["state"])
        for state, count in by_state.items():
            jobs.add_metric([state], count)
        yield jobs
        queue.add_metric(["database"], by_state.get(JobStatus.queued.value, 0))

        datasets_by_state = dict.fromkeys((s.value for s in DatasetStatus), 0)
        for status, count in session.execute(
            select(Dataset.status, func.count()).group_by(Dataset.status)
        ):
            datasets_by_state[str(status)] = int(count)
        datasets = GaugeMetricFamily(
            "dlcprune_datasets", "datasets by state, all tenants", labels=["state"]
        )
        for state, count in datasets_by_state.items():
            datasets.add_metric([state], count)
        yield datasets

        # Durations of the jobs that ran (not answered from the cache), bucketed in SQL.
        seconds = _duration_seconds(dialect)
        columns = [
            Job.status,
            func.count(),
            func.coalesce(func.sum(seconds), 0.0),
            *(func.sum(case((seconds <= bound, 1), else_=0)) for bound in JOB_DURATION_BUCKETS),
        ]
        rows = session.execute(
            select(*columns)
            .where(
                Job.status.in_([s.value for s in FINISHED_STATES]),
                Job.cached.is_(False),
                Job.started_at.is_not(None),
                Job.finished_at.is_not(None),
            )
            .group_by(Job.status)
        ).all()
        found = {str(row[0]): row for row in rows}
        histogram = HistogramMetricFamily(
            "dlcprune_job_duration_seconds",
            "seconds from started_at to finished_at of finished jobs that ran, by final state",
            labels=["state"],
        )
        for state in FINISHED_STATES:
            row = found.get(state.value)
            count = int(row[1]) if row else 0
            total = float(row[2] or 0.0) if row else 0.0
            cumulative = [int(v or 0) for v in row[3:]] if row else [0] * len(JOB_DURATION_BUCKETS)
            buckets = [
                (_le(bound), value)
                for bound, value in zip(JOB_DURATION_BUCKETS, cumulative, strict=True)
            ]
            buckets.append(("+Inf", count))
            histogram.add_metric([state.value], buckets, sum_value=total)
        yield histogram

        scored = session.scalar(
            select(func.coalesce(func.sum(ScoreSet.num_samples * _passes()), 0))
            .select_from(Job)
            .join(ScoreSet, Job.score_set_id == ScoreSet.id)
            .where(Job.status == JobStatus.succeeded, Job.cached.is_(False))
        )
        samples = CounterMetricFamily(
            "dlcprune_samples_scored",
            "samples times forward passes of every succeeded job that was not answered from the "
            "cache (rate() gives samples per second)",
        )
        samples.add_metric([], int(scored or 0))
        yield samples
        pending = GaugeMetricFamily(
            "dlcprune_backlog",
            "work queued or running, per kind of work: what that kind's workers are busy with or "
            "will be (autoscaling's measure, also at /metrics/backlog)",
            labels=["kind"],
        )
        for kind, count in backlog(session).items():
            pending.add_metric([kind], count)
        yield pending
        yield from _worker_families(session)

    def _broker_queue_lengths(self, settings: Settings) -> dict[str, int] | None:
        """Messages waiting per kind of work on a Redis broker (``LLEN`` of each of its queue's
        priority lists, summed); None when they cannot be read."""
        url = settings.broker_url
        if not url.startswith(("redis://", "rediss://", "unix://")):
            return None
        try:
            import redis

            with self._lock:
                client = self._redis.get(url)
                if client is None:
                    client = redis.Redis.from_url(
                        url,
                        socket_connect_timeout=BROKER_TIMEOUT_S,
                        socket_timeout=BROKER_TIMEOUT_S,
                        retry_on_timeout=False,
                    )
                    self._redis[url] = client
            pipe = client.pipeline(transaction=False)
            for kind in WORK_KINDS:
                for name in priority_lists(settings.queue_name(kind)):
                    pipe.llen(name)
            counts = iter(pipe.execute())
            steps = len(priority_lists(""))
            return {kind: sum(int(next(counts)) for _ in range(steps)) for kind in WORK_KINDS}
        except Exception as exc:
            log.debug("metrics: broker unavailable: %s", exc)
            return None


def backlog(session: Session) -> dict[str, int]:
    """Work queued or running per kind of work (``dlcprune.names.WORK_KINDS``), from the
    database, and ``gpu``: the scoring kinds together. Running work counts: a queue's length
    drops as soon as a worker takes a task, but the worker stays busy for hours, so autoscaling
    on the queue's length alone would stop a running job."""
    active = (JobStatus.queued.value, JobStatus.running.value)
    counts = dict.fromkeys(WORK_KINDS, 0)
    counts["score"] = session.scalar(select(func.count()).where(Job.status.in_(active))) or 0
    counts["shards"] = (
        session.scalar(
            select(func.count()).where(
                JobShard.status.in_((ShardStatus.queued.value, ShardStatus.running.value))
            )
        )
        or 0
    )
    counts["index"] = (
        session.scalar(select(func.count()).where(Dataset.status == DatasetStatus.indexing)) or 0
    )
    for kind, model in (("evaluate", Evaluation), ("export", StoreExport)):
        counts[kind] = session.scalar(select(func.count()).where(model.status.in_(active))) or 0
    return {**counts, "gpu": sum(counts[kind] for kind in GPU_WORK)}


def _worker_families(session: Session) -> Iterator[Metric]:
    """The live Celery workers (``worker.presence`` rows refreshed within ``WORKER_STALE_S``):
    how many of each kind, which are busy, their GPU memory."""
    cutoff = utcnow() - timedelta(seconds=WORKER_STALE_S)
    rows = session.scalars(select(WorkerPresence).where(WorkerPresence.seen_at >= cutoff)).all()
    count = GaugeMetricFamily("dlcprune_workers", "live workers by kind", labels=["kind"])
    busy = GaugeMetricFamily(
        "dlcprune_worker_busy", "1 while the worker runs a task, else 0", labels=["worker", "kind"]
    )
    memory = GaugeMetricFamily(
        "dlcprune_worker_gpu_memory_bytes",
        "GPU memory of a GPU worker's device: used (by every process on it) and total",
        labels=["worker", "kind", "memory"],
    )
    kinds = dict.fromkeys(WORKER_KINDS, 0)
    for row in rows:
        kinds[row.kind] = kinds.get(row.kind, 0) + 1
        busy.add_metric([row.name, row.kind], 1 if row.busy else 0)
        if row.gpu_memory_total_bytes is not None:
            memory.add_metric([row.name, row.kind, "used"], row.gpu_memory_used_bytes or 0)
            memory.add_metric([row.name, row.kind, "total"], row.gpu_memory_total_bytes)
    for kind, n in kinds.items():
        count.add_metric([kind], n)
    yield count
    yield busy
    yield memory


def _le(bound: float) -> str:
    return str(float(bound))


def _make_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


REGISTRY = _make_registry()
DATABASE = DatabaseCollector()
REGISTRY.register(DATABASE)

HTTP_REQUESTS = Counter(
    "dlcprune_http_requests",
    "HTTP requests answered by this API process, by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "dlcprune_http_request_duration_seconds",
    "time to answer an HTTP request (the whole body sent), by method and route template",
    ["method", "route"],
    buckets=HTTP_BUCKETS,
    registry=REGISTRY,
)
SELECTION_LATENCY = Histogram(
    "dlcprune_selection_create_seconds",
    "time to compute and store a selection in this API process",
    buckets=SELECTION_BUCKETS,
    registry=REGISTRY,
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one HTTP request and its latency."""
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


def render() -> tuple[bytes, str]:
    """The exposition (Prometheus text format) and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


__all__ = [
    "DATABASE",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "REGISTRY",
    "SELECTION_LATENCY",
    "DatabaseCollector",
    "backlog",
    "observe_request",
    "render",
]
