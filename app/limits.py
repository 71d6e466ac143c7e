"""Per-tenant limits, answered ``429`` with ``Retry-After`` (0 in a setting: no limit).

- ``DLCPRUNE_TENANT_MAX_ACTIVE_JOBS``: work queued or running at once (``too_many_jobs``):
  scoring jobs, evaluations and exports into object stores count together, and each refuses a
  new one past the limit; on PostgreSQL the count and the new row's insert are serialised per
  tenant (a transaction-level advisory lock), so simultaneous posts cannot pass the limit
  together (on the embedded SQLite default, a single process, the check is not serialised);
- ``DLCPRUNE_TENANT_MAX_STORED_BYTES``: bytes of uploaded datasets and weights kept
  (``storage_limit``; deleting datasets or weights frees room);
- ``DLCPRUNE_RATE_LIMIT_PER_S`` and ``DLCPRUNE_RATE_LIMIT_BURST``: requests per second, a token
  bucket per tenant in each API process (``rate_limited``).
"""

from __future__ import annotations

import math
import threading
import time
import uuid

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import too_many
from app.models import Dataset, Evaluation, Job, JobStatus, StoreExport, Weights

# The first key of the advisory locks taken per tenant while a job is created.
_ACTIVE_JOBS_LOCK = 727276

# What counts against DLCPRUNE_TENANT_MAX_ACTIVE_JOBS, by the name its count is given.
_ACTIVE_WORK = ((Job, "jobs"), (Evaluation, "evaluations"), (StoreExport, "exports"))


def active_work(session: Session, tenant_id: uuid.UUID) -> dict[str, int]:
    """The tenant's queued or running scoring jobs, evaluations and exports (``jobs``,
    ``evaluations``, ``exports``)."""
    counts = {}
    for model, name in _ACTIVE_WORK:
        counts[name] = int(
            session.scalar(
                select(func.count())
                .select_from(model)
                .where(
                    model.tenant_id == tenant_id,
                    model.status.in_((JobStatus.queued, JobStatus.running)),
                )
            )
            or 0
        )
    return counts


def check_active_jobs(session: Session, settings: Settings, tenant_id: uuid.UUID) -> None:
    """Refuse new work (a scoring job, an evaluation, an export) past the tenant's limit. Call it
    in the transaction that inserts the row: on PostgreSQL it takes the tenant's advisory lock
    until that transaction ends."""
    limit = settings.tenant_max_active_jobs
    if not limit:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:k, hashtext(:t))"),
            {"k": _ACTIVE_JOBS_LOCK, "t": str(tenant_id)},
        )
    counts = active_work(session, tenant_id)
    active = sum(counts.values())
    if active >= limit:
        told = ", ".join(
            f"{n} {'scoring jobs' if name == 'jobs' else name}" for name, n in counts.items()
        )
        raise too_many(
            "too_many_jobs",
            f"the tenant has {active} queued or running ({told}): "
            f"DLCPRUNE_TENANT_MAX_ACTIVE_JOBS allows {limit} at once; retry when one ends",
            settings.retry_after_s * 5,
            details={
                "setting": "DLCPRUNE_TENANT_MAX_ACTIVE_JOBS",
                "limit": limit,
                "active": counts,
            },
        )


def stored_bytes(session: Session, tenant_id: uuid.UUID) -> int:
    """Bytes of the tenant's uploaded datasets and weights files."""
    datasets = session.scalar(
        select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(
            Dataset.tenant_id == tenant_id, Dataset.source == "upload"
        )
    )
    weights = session.scalar(
        select(func.coalesce(func.sum(Weights.size_bytes), 0)).where(Weights.tenant_id == tenant_id)
    )
    return int(datasets or 0) + int(weights or 0)


def check_storage(
    session: Session, settings: Settings, tenant_id: uuid.UUID, incoming: int
) -> None:
    limit = settings.tenant_max_stored_bytes
    if not limit:
        return
    kept = stored_bytes(session, tenant_id)
    if kept + incoming > limit:
        raise too_many(
            "storage_limit",
            f"the tenant stores {kept} bytes; {incoming} more would pass its limit of {limit} "
            "bytes: delete datasets or weights first",
            60,
        )


class RateLimiter:
    """Token buckets per tenant: ``burst`` requests at once, refilled at ``per_s`` a second."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[uuid.UUID, tuple[float, float]] = {}

    def take(self, tenant_id: uuid.UUID, per_s: float, burst: int) -> float:
        """0 when the request may go; else the seconds until a token is there."""
        now = time.monotonic()
        capacity = float(max(burst, 1))
        with self._lock:
            tokens, then = self._buckets.get(tenant_id, (capacity, now))
            tokens = min(capacity, tokens + (now - then) * per_s)
            if tokens >= 1.0:
                self._buckets[tenant_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[tenant_id] = (tokens, now)
            return (1.0 - tokens) / per_s


_LIMITER = RateLimiter()


def check_rate(settings: Settings, tenant_id: uuid.UUID) -> None:
    if settings.rate_limit_per_s <= 0:
        return
    burst = settings.rate_limit_burst or max(1, math.ceil(settings.rate_limit_per_s))
    wait = _LIMITER.take(tenant_id, settings.rate_limit_per_s, burst)
    if wait > 0:
        raise too_many(
            "rate_limited",
            f"more than {settings.rate_limit_per_s:g} requests a second for this tenant",
            math.ceil(wait),
        )
