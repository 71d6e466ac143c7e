"""Sharded jobs: a dataset too large for one worker is scored by all of them.

1. ``start``: the job's worker splits the dataset into shards (``dlc.shard_bounds``) and queues
   one ``prototypes`` task per shard; the job stays ``running``.
2. Each shard computes its samples' per-group class sums (one unmasked pass) into a blob. The
   shard that finishes the phase reduces all sums, in group order, to the prototypes and queues
   one ``losses`` task per shard.
3. Each shard computes its samples' losses along the same deterministic mask path into a blob.
   The shard that finishes the phase concatenates them and writes the score set and the job's
   success in one transaction (``jobs.store_scores``).

"Finishes the phase" is decided under a lock on the job's row, so exactly one shard advances a
phase. A shard that fails is queued again (``DLCPRUNE_SHARD_ATTEMPTS`` attempts in all); a
shard whose worker died is taken over once its heartbeat is stale. The merged scores equal the
unsharded ones bit for bit (see ``worker.scoring.dlc``).
"""

from __future__ import annotations

import io
import logging
import os
import time
import uuid
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import claims, queue
from app.blobstore import get_blobstore
from app.config import Settings
from app.datasets import service as datasets
from app.datasets.sources import open_source
from app.db import session_factory
from app.jobs import service as jobs
from app.models import Dataset, Job, JobShard, JobStatus, ShardStatus, Weights, utcnow
from dlcprune.names import DEFAULT_PRIORITY
from worker.heartbeat import Heartbeat
from worker.scoring import input_cache

log = logging.getLogger("dlcprune.worker")

PROTOTYPES = "prototypes"
LOSSES = "losses"


def should_shard(settings: Settings, dataset: Dataset, params: dict[str, Any]) -> bool:
    return (
        not settings.embedded_worker
        and settings.shard_threshold > 0
        and (dataset.num_samples or 0) > settings.shard_threshold
        and dataset.kind in ("image", "vector")
        and not params.get("early_stop")
    )


def _passes(params: dict[str, Any]) -> int:
    return 1 + int(params.get("levels") or 0) * int(params.get("draws") or 1)


def start(session: Session, job: Job, dataset: Dataset, settings: Settings) -> None:
    """Create (or find) the prototype shards of ``job`` and queue those not done."""
    from worker.scoring.dlc import shard_bounds

    n = int(dataset.num_samples or 0)
    bounds = shard_bounds(n, settings.shard_size, settings.batch_size)
    existing = {
        s.index: s
        for s in session.scalars(
            select(JobShard).where(JobShard.job_id == job.id, JobShard.phase == PROTOTYPES)
        )
    }
    for index, (lo, hi) in enumerate(bounds):
        if index not in existing:
            session.add(JobShard(job_id=job.id, phase=PROTOTYPES, index=index, start=lo, stop=hi))
    # Progress units: each phase is one decoding pass plus its forward passes, per sample.
    job.progress_total = n * (2 + 1 + _passes(job.params))
    job.stage = f"shards: prototypes (0/{len(bounds)})"
    job.heartbeat_at = utcnow()
    session.commit()
    _enqueue_pending(session, job.id, PROTOTYPES)
    log.info("job %s: %d samples in %d shards", job.id, n, len(bounds))


def _enqueue_pending(session: Session, job_id: uuid.UUID, phase: str) -> None:
    priority = session.scalar(select(Job.priority).where(Job.id == job_id))
    ids = session.scalars(
        select(JobShard.id).where(
            JobShard.job_id == job_id,
            JobShard.phase == phase,
            JobShard.status == ShardStatus.queued,
        )
    ).all()
    for shard_id in ids:
        queue.send(queue.RUN_SHARD, shard_id, priority=priority or DEFAULT_PRIORITY)


def _claim(session: Session, shard_id: uuid.UUID, worker: str, settings: Settings) -> bool:
    """Take a shard (one conditional UPDATE, ``app.claims``), its last error cleared."""
    return claims.claim(session, JobShard, shard_id, worker, settings.stale_after, error=None)


class _ShardProgress:
    """Writes a shard's progress and heartbeats (shard and job) every ``heartbeat_seconds``;
    raises ``Cancelled`` when the job was cancelled, failed or deleted."""

    def __init__(self, shard: JobShard, settings: Settings, units_before: int) -> None:
        self.shard_id = shard.id
        self.job_id = shard.job_id
        self.n = shard.stop - shard.start
        self.units_before = units_before
        self.settings = settings
        self.last = 0.0

    def __call__(self, p: Any) -> None:
        from dlcprune.core.errors import Cancelled

        now = time.monotonic()
        if now - self.last < self.settings.heartbeat_seconds and p.stage != "done":
            return
        self.last = now
        done = self.units_before + round(p.fraction * self.n * (1 + p.levels_total))
        with session_factory(self.settings)() as session:
            session.execute(
                update(JobShard)
                .where(JobShard.id == self.shard_id)
                .values(progress_done=done, heartbeat_at=utcnow())
            )
            job = session.get(Job, self.job_id)
            if job is None or job.status != JobStatus.running or job.cancel_requested:
                session.commit()
                raise Cancelled()
            total_done = session.scalar(
                select(func.coalesce(func.sum(JobShard.progress_done), 0)).where(
                    JobShard.job_id == self.job_id
                )
            )
            job.progress_done = min(int(total_done or 0), job.progress_total)
            job.heartbeat_at = utcnow()
            session.commit()


def _fault_injected(shard: JobShard) -> bool:
    """A testing hook: ``DLCPRUNE_FAULT_SHARD_ONCE=<phase>:<index>`` fails that shard's first
    attempt, to show a failed shard is retried."""
    spec = os.environ.get("DLCPRUNE_FAULT_SHARD_ONCE", "")
    return bool(spec) and spec == f"{shard.phase}:{shard.index}" and shard.attempts == 1


def run_shard(shard_id: uuid.UUID | str, settings: Settings, worker: str) -> str:
    """Run one shard task; returns what happened (for logs and tests)."""
    from dlcprune.core.errors import Cancelled, ScoringError
    from dlcprune.core.params import DLCParams
    from worker.runner import _backbone, input_cache_of

    shard_id = uuid.UUID(str(shard_id))
    factory = session_factory(settings)
    blobs = get_blobstore(settings)
    with factory() as session:
        if not _claim(session, shard_id, worker, settings):
            return "skipped"
        shard = session.get(JobShard, shard_id)
        job = session.get(Job, shard.job_id) if shard is not None else None
        if shard is None or job is None or job.status != JobStatus.running:
            return "skipped"
        dataset = session.get(Dataset, job.dataset_id)
        weights = session.get(Weights, job.weights_id) if job.weights_id else None
        session.expunge_all()
    assert dataset is not None
    params = DLCParams(**{**job.params, "batch_size": settings.batch_size}).validate()
    n = shard.stop - shard.start
    units_before = n * 2 if shard.phase == LOSSES else 0
    progress = _ShardProgress(shard, settings, units_before)
    beat = Heartbeat(
        settings, job.id, shard_id=shard.id, hard_limit_s=settings.job_hard_time_limit_seconds
    )
    try:
        # The heartbeat covers fetching the data and loading the model too: a worker busy with
        # either for longer than ``stale_after`` must not look lost to the reaper.
        with beat:
            if _fault_injected(shard):
                raise RuntimeError(f"injected fault in shard {shard.phase}:{shard.index}")
            source, _ = open_source(dataset, settings, blobs)
            weights_path = str(blobs.local_path(weights.blob_key)) if weights is not None else None
            backbone = _backbone(job.model, weights_path, dataset.kind or "image", settings)
            cache = input_cache.using(input_cache_of(settings), datasets.content_identity(dataset))
            with source as ds, cache:
                if shard.phase == PROTOTYPES:
                    result = _prototype_phase(ds, backbone, params, shard, progress)
                else:
                    result = _loss_phase(ds, backbone, params, shard, progress, blobs)
    except Cancelled:
        with factory() as session:
            _set_shard(session, shard_id, ShardStatus.failed, error="cancelled")
            current = session.get(Job, job.id)
            if current is not None and current.cancel_requested:
                jobs.mark_cancelled(session, job.id)
        return "cancelled"
    except ScoringError as exc:
        with factory() as session:
            _set_shard(session, shard_id, ShardStatus.failed, error=str(exc))
            jobs.mark_failed(session, job.id, exc.code, f"shard {shard.index}: {exc}")
        return "failed"
    except Exception as exc:
        log.exception("shard %s:%d of job %s failed", shard.phase, shard.index, job.id)
        with factory() as session:
            attempts = session.scalar(select(JobShard.attempts).where(JobShard.id == shard_id))
            if (attempts or 0) < settings.shard_attempts:
                _set_shard(session, shard_id, ShardStatus.queued, error=str(exc))
                queue.send(queue.RUN_SHARD, shard_id, settings, countdown=1.0)
                return "retrying"
            _set_shard(session, shard_id, ShardStatus.failed, error=str(exc))
            jobs.mark_failed(
                session,
                job.id,
                "shard_failed",
                f"shard {shard.phase}:{shard.index} failed {attempts} times: {exc}",
            )
        return "failed"
    key = f"shards/{job.id}/{shard.phase}-{shard.index:05d}.npz"
    blobs.put_bytes(key, result)
    with factory() as session:
        _set_shard(session, shard_id, ShardStatus.done, result_key=key)
    _advance(job.id, shard.phase, settings)
    return "done"


def _set_shard(session: Session, shard_id: uuid.UUID, status: str, **values: Any) -> None:
    session.execute(update(JobShard).where(JobShard.id == shard_id).values(status=status, **values))
    session.commit()


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _prototype_phase(ds: Any, backbone: Any, params: Any, shard: JobShard, progress: Any) -> bytes:
    from worker.scoring.dlc import shard_prototype_sums

    ids, sums, counts = shard_prototype_sums(
        ds, backbone, params, shard.start, shard.stop, progress=progress
    )
    return _npz(ids=ids, sums=sums, counts=counts)


def _loss_phase(
    ds: Any, backbone: Any, params: Any, shard: JobShard, progress: Any, blobs: Any
) -> bytes:
    from worker.scoring.dlc import shard_losses

    prototypes = np.load(io.BytesIO(blobs.get_bytes(f"shards/{shard.job_id}/prototypes.npy")))
    losses, fractions = shard_losses(
        ds, backbone, params, prototypes, shard.start, shard.stop, progress=progress
    )
    return _npz(losses=losses, fractions=fractions)


def _advance(job_id: uuid.UUID, phase: str, settings: Settings) -> None:
    """If every shard of ``phase`` is done, move the job on, exactly once (under the job lock)."""
    from worker.scoring.dlc import reduce_prototypes

    blobs = get_blobstore(settings)
    with session_factory(settings)() as session:
        job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
        if job is None or job.status != JobStatus.running:
            session.commit()
            return
        shards = session.scalars(
            select(JobShard)
            .where(JobShard.job_id == job_id, JobShard.phase == phase)
            .order_by(JobShard.index)
        ).all()
        if not shards or any(s.status != ShardStatus.done for s in shards):
            session.commit()
            return
        if phase == PROTOTYPES:
            later = session.scalar(
                select(func.count()).where(JobShard.job_id == job_id, JobShard.phase == LOSSES)
            )
            if later:
                session.commit()
                return  # another shard advanced the phase already
            parts = [np.load(io.BytesIO(blobs.get_bytes(s.result_key))) for s in shards]
            prototypes = reduce_prototypes(
                np.concatenate([p["sums"] for p in parts]),
                np.concatenate([p["counts"] for p in parts]),
            )
            buf = io.BytesIO()
            np.save(buf, prototypes)
            blobs.put_bytes(f"shards/{job_id}/prototypes.npy", buf.getvalue())
            for s in shards:
                session.add(
                    JobShard(job_id=job_id, phase=LOSSES, index=s.index, start=s.start, stop=s.stop)
                )
            job.stage = f"shards: losses (0/{len(shards)})"
            session.commit()
            _enqueue_pending(session, job_id, LOSSES)
            log.info("job %s: prototypes reduced from %d shards", job_id, len(shards))
            return
        parts = [np.load(io.BytesIO(blobs.get_bytes(s.result_key))) for s in shards]
        losses = np.concatenate([p["losses"] for p in parts], axis=1)
        fractions = parts[0]["fractions"]
        session.commit()
    scores = losses.mean(axis=0, dtype=np.float64).astype(np.float32)
    losses_key = f"losses/{job_id}.npy"
    buf = io.BytesIO()
    np.save(buf, losses, allow_pickle=False)
    blobs.put_bytes(losses_key, buf.getvalue())
    with session_factory(settings)() as session:
        done = jobs.store_scores(
            session,
            job_id,
            scores=scores,
            mask_fractions=fractions.tolist(),
            losses_key=losses_key,
            timings_={"shards": float(len(parts))},
            # Features stay on the shards' workers: a sharded job keeps no embeddings.
            embeddings=jobs.KeptEmbeddings(key=None, dims=0, projected=False),
        )
        unused, _ = jobs.unused_blobs(session, done, losses_key, None)
    for key in unused:  # a job for the same scores stored its losses first
        blobs.delete(key)
    blobs.delete_prefix(f"shards/{job_id}")
    log.info("job %s: %d shards merged", job_id, len(parts))
