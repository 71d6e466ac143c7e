"""What a worker does with a job id or a dataset id; the same code serves Celery and the embedded
worker. State lives in the database: a task may be delivered twice, and the second delivery finds
the job claimed, finished or gone and does nothing.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from app.blobstore import BlobStore, get_blobstore
from app.config import Settings, get_settings
from app.datasets import service as datasets
from app.datasets.indexing import public_message
from app.datasets.sources import open_source
from app.db import session_factory
from app.jobs import repository as jobs_repo
from app.jobs import service as jobs
from app.models import Dataset, Job, JobStatus, Weights
from app.transient import TRANSIENT
from dlcprune.core.cache import LRU
from dlcprune.core.errors import DatasetError
from dlcprune.core.formats import Reader
from worker.heartbeat import ExportHeartbeat, Heartbeat
from worker.scoring import input_cache
from worker.scoring.input_cache import InputCache

log = logging.getLogger("dlcprune.worker")

# Loaded backbones by (model, weights path, input kind, device): the two most recent stay in
# memory, so a worker alternating two models does not reload them for every job.
_backbones: LRU[tuple[str, str, str, str], Any] = LRU(2)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _backbone(model: str, weights_path: str | None, input_kind: str, settings: Settings) -> Any:
    """``model`` with the local weights (``hf`` weights are a model directory, unpacked), loaded
    lazily, once per process (``_backbones`` keeps the two most recent)."""
    key = (model, weights_path or "", input_kind, settings.device)
    return _backbones.get_or_make(
        key, lambda: _load_backbone(model, weights_path, input_kind, settings.device)
    )


def _load_backbone(model: str, weights_path: str | None, input_kind: str, device: str) -> Any:
    from worker.scoring.backbones import load_backbone
    from worker.scoring.dlc import resolve_device

    resolved = resolve_device(device)
    if model == "torchscript":
        assert weights_path is not None
        return load_backbone(weights_path, input_kind=input_kind, device=resolved)
    if model == "hf":
        assert weights_path is not None
        hf_kind = "causal_lm" if input_kind == "instruction" else "encoder"
        return load_backbone(weights_path, hf_kind=hf_kind, device=resolved)
    return load_backbone(model, weights_path, device=resolved)


_FAULT_EXIT_STAGE = os.environ.get("DLCPRUNE_FAULT_EXIT_AT_STAGE", "")


class _Reporter:
    """The engine's progress callback: writes progress and the heartbeat at most every
    ``interval`` seconds, and raises ``Cancelled`` once a cancel was requested."""

    def __init__(self, job_id: uuid.UUID, settings: Settings, num_samples: int) -> None:
        self.job_id = job_id
        self.settings = settings
        self.factory = session_factory(settings)
        self.interval = settings.heartbeat_seconds
        self.num_samples = num_samples
        self.started = time.monotonic()
        self.last = 0.0
        self.limit = settings.job_time_limit_seconds

    def __call__(self, p: Any) -> None:
        from dlcprune.core.errors import Cancelled

        if _FAULT_EXIT_STAGE and p.stage == _FAULT_EXIT_STAGE:
            # Testing hook (DLCPRUNE_FAULT_EXIT_AT_STAGE): die like an out-of-memory kill would.
            os._exit(137)
        now = time.monotonic()
        if self.limit and now - self.started > self.limit:
            raise TimeLimitExceeded(
                f"the job ran past its time limit of {self.limit:g} s "
                "(DLCPRUNE_JOB_TIME_LIMIT_SECONDS)"
            )
        if now - self.last < self.interval and p.stage != "done":
            return
        self.last = now
        total = self.num_samples * (1 + p.levels_total)
        fraction = p.fraction
        elapsed = now - self.started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.01 else None
        with self.factory() as session:
            cancel = jobs.report_progress(
                session,
                self.job_id,
                done=round(fraction * total),
                total=total,
                stage=p.stage,
                eta_seconds=round(eta, 1) if eta is not None else None,
            )
        if cancel:
            raise Cancelled()


class TransientError(Exception):
    """The job hit an error that a retry may not hit (database, broker or storage away); it was
    put back in the queue."""


class TimeLimitExceeded(Exception):
    """The job ran past ``DLCPRUNE_JOB_TIME_LIMIT_SECONDS``."""


def _release(job_id: uuid.UUID, settings: Settings) -> None:
    """Put a running job back in the queue (best effort: with the database away, its heartbeat
    goes stale and the reaper does it)."""
    try:
        with session_factory(settings)() as session:
            jobs.release(session, job_id)
    except Exception as exc:
        log.warning("job %s: could not requeue now (%s); the reaper will", job_id, exc)


def run_job(job_id: uuid.UUID | str, settings: Settings | None = None) -> str:
    """Run one scoring job to its end; returns the job's final status (or 'skipped')."""
    from dlcprune.core.errors import Cancelled, ModelError, ScoringError

    settings = settings or get_settings()
    job_id = uuid.UUID(str(job_id))
    blobs = get_blobstore(settings)
    factory = session_factory(settings)
    with factory() as session:
        job = jobs.claim(session, job_id, worker_name(), settings.stale_after)
        if job is None:
            return "skipped"
        dataset = session.get(Dataset, job.dataset_id)
        weights = session.get(Weights, job.weights_id) if job.weights_id else None
        hit = jobs_repo.score_set_by_key(session, job.tenant_id, job.cache_key)
        if hit is not None and not jobs.lacks_embeddings(hit):
            jobs.succeed_from_cache(session, job, hit)
            return JobStatus.succeeded
        if dataset is None:
            return "skipped"
        from worker import shards

        if shards.should_shard(settings, dataset, job.params):
            shards.start(session, job, dataset, settings)
            return "sharded"
        session.expunge_all()
    log.info("job %s: scoring dataset %s with %s", job_id, dataset.id, job.model)
    beat = Heartbeat(settings, job_id, hard_limit_s=settings.job_hard_time_limit_seconds)
    try:
        with beat:
            result = _score(job, dataset, weights, settings, blobs)
    except Cancelled:
        with factory() as session:
            jobs.mark_cancelled(session, job_id)
        log.info("job %s: cancelled", job_id)
        return JobStatus.cancelled
    except jobs.JobGone:
        log.info("job %s: deleted while running", job_id)
        return "skipped"
    except ScoringError as exc:
        message = str(exc)
        if isinstance(exc, ModelError) and weights is not None:
            message = (
                message.replace(str(exc.path or ""), weights.filename) if exc.path else message
            )
        elif exc.path:
            shown = dataset.filename if dataset.source == "upload" else (dataset.uri or "")
            message = public_message(exc, getattr(exc, "local_path", shown), shown)
        with factory() as session:
            jobs.mark_failed(session, job_id, exc.code, message)
        log.info("job %s: failed: %s", job_id, message)
        return JobStatus.failed
    except TimeLimitExceeded as exc:
        with factory() as session:
            jobs.mark_failed(session, job_id, "time_limit", str(exc))
        return JobStatus.failed
    except TRANSIENT as exc:
        log.warning("job %s: transient error, will retry: %s", job_id, exc)
        _release(job_id, settings)
        raise TransientError(str(exc)) from exc
    except Exception as exc:
        log.exception("job %s: unexpected error", job_id)
        with factory() as session:
            jobs.mark_failed(session, job_id, "internal_error", f"{type(exc).__name__}: {exc}")
        return JobStatus.failed
    scores, tokens, fractions, losses, timings, features = result
    losses_key = f"losses/{job_id}.npy" if losses is not None else None
    embeddings: jobs.KeptEmbeddings | None = None
    try:
        if losses is not None and losses_key is not None:
            buf = io.BytesIO()
            np.save(buf, losses, allow_pickle=False)
            blobs.put_bytes(losses_key, buf.getvalue())
        embeddings = _keep_embeddings(job_id, features, settings, blobs)
        with factory() as session:
            done = jobs.store_scores(
                session,
                job_id,
                scores=scores,
                tokens=tokens,
                mask_fractions=fractions,
                losses_key=losses_key,
                timings_=timings,
                embeddings=embeddings,
            )
            unused = jobs.unused_blobs(
                session, done, losses_key, embeddings.key if embeddings is not None else None
            )
    except jobs.JobGone:
        if losses_key is not None:
            blobs.delete(losses_key)
        if embeddings is not None and embeddings.key is not None:
            blobs.delete_prefix(embeddings.key)
        return "skipped"
    except TRANSIENT as exc:
        # Scored, but the result could not be stored: the retry scores again (results are
        # deterministic, and a score set is written once).
        log.warning("job %s: could not store scores, will retry: %s", job_id, exc)
        _release(job_id, settings)
        raise TransientError(str(exc)) from exc
    # What the score set does not reference (a job for the same scores stored first) goes.
    _delete_blobs(blobs, *unused)
    log.info("job %s: %s", job_id, done.status if done else "gone")
    return done.status if done is not None else "skipped"


def _delete_blobs(blobs: BlobStore, keys: list[str], prefixes: list[str]) -> None:
    for key in keys:
        blobs.delete(key)
    for prefix in prefixes:
        blobs.delete_prefix(prefix)


def _keep_embeddings(
    job_id: uuid.UUID, features: np.ndarray | None, settings: Settings, blobs: BlobStore
) -> Any:
    """Write the job's unmasked features (float16, PCA-reduced when the setting asks) to the
    blob store under ``embeddings/<job id>``; with no features, record that there are none."""
    from dlcprune.core import embeddings as emb

    if features is None:
        return jobs.KeptEmbeddings(key=None, dims=0, projected=False)
    stored, projection = emb.reduce(features, settings.embeddings_pca_dims or None)
    prefix = f"embeddings/{job_id}"
    blobs.put_bytes(f"{prefix}/{emb.FEATURES_FILE}", emb.to_npy(stored))
    if projection is not None:
        blobs.put_bytes(f"{prefix}/{emb.PROJECTION_FILE}", projection.to_bytes())
    return jobs.KeptEmbeddings(
        key=prefix, dims=int(stored.shape[1]), projected=projection is not None
    )


Scored = tuple[
    np.ndarray,
    np.ndarray | None,
    list[float] | None,
    np.ndarray | None,
    dict[str, float],
    np.ndarray | None,
]


def _score(
    job: Job, dataset: Dataset, weights: Weights | None, settings: Settings, blobs: BlobStore
) -> Scored:
    """Score the job's dataset. A ``DatasetError`` leaves with ``local_path`` set: the local
    path its message may name, to be shown as the dataset's name (``public_message``)."""
    local = dataset.uri or dataset.filename
    try:
        t0 = time.perf_counter()
        # A reference is looked at again here and its pin checked (source_changed).
        source, local = open_source(dataset, settings, blobs)
        cache = input_cache.using(input_cache_of(settings), datasets.content_identity(dataset))
        with source as ds, cache:
            return _score_open(job, ds, dataset, weights, settings, blobs, t0)
    except DatasetError as exc:
        if getattr(exc, "local_path", None) is None:
            exc.local_path = local  # type: ignore[attr-defined]
        raise


def input_cache_of(settings: Settings) -> InputCache | None:
    """The worker's cache of decoded inputs (``cache_dir/inputs``), or None when it is off."""
    if settings.input_cache_bytes <= 0 or settings.cache_dir is None:
        return None
    return InputCache(Path(settings.cache_dir) / "inputs", settings.input_cache_bytes)


def _score_open(
    job: Job,
    ds: Reader,
    dataset: Dataset,
    weights: Weights | None,
    settings: Settings,
    blobs: BlobStore,
    t0: float,
) -> Scored:
    from worker.scoring.dlc import DLCParams, score

    weights_path = str(blobs.local_path(weights.blob_key)) if weights is not None else None
    if weights is not None and job.model == "hf":
        from dlcprune.core.archives import unpack_model

        assert settings.cache_dir is not None and weights_path is not None
        weights_path = str(
            unpack_model(weights_path, Path(settings.cache_dir) / "models" / str(weights.id))
        )
    backbone = _backbone(job.model, weights_path, dataset.kind or "image", settings)
    load_s = time.perf_counter() - t0
    params = dict(job.params)
    params["batch_size"] = settings.batch_size
    reporter = _Reporter(job.id, settings, dataset.num_samples or 0)
    if job.method != "dlc":
        from worker.scoring.baselines import BaselineParams, score_baseline

        kept: dict[str, np.ndarray] = {}
        scores, info = score_baseline(
            ds,
            backbone,
            job.method,
            BaselineParams(**params),
            progress=reporter,
            features_out=kept,
        )
        return scores, None, None, None, {"load_model_s": load_s, **info}, kept.get("features")
    result = score(ds, backbone, DLCParams(**params), return_losses=True, progress=reporter)
    timings = {"load_model_s": load_s, **result.timings}
    assert result.losses is not None
    return (
        result.scores,
        result.tokens,
        result.mask_fractions.tolist(),
        result.losses,
        timings,
        result.features,
    )


def index_dataset(dataset_id: uuid.UUID | str, settings: Settings | None = None) -> str | None:
    """Index a dataset registered for background indexing; returns its status."""
    settings = settings or get_settings()
    with session_factory(settings)() as session:
        dataset = datasets.index_pending(
            uuid.UUID(str(dataset_id)), session, settings, get_blobstore(settings)
        )
        return dataset.status if dataset is not None else None


def run_export(export_id: uuid.UUID | str, settings: Settings | None = None) -> str:
    """Claim and write an export into its store (app.exports); returns its final status (its
    current one, or 'skipped', when there was nothing to claim). A transient error has put it
    back in the queue and raises ``TransientError``."""
    from app.exports import service as exports

    settings = settings or get_settings()
    export_id = uuid.UUID(str(export_id))
    factory = session_factory(settings)
    with factory() as session:
        row = exports.claim(session, export_id, worker_name(), settings.stale_after)
        if row is None:
            return exports.status_of(session, export_id)
        claimed = (row.worker, row.attempts)
    try:
        with ExportHeartbeat(settings, export_id):
            return exports.run(export_id, factory, settings, get_blobstore(settings), claimed)
    except TRANSIENT as exc:
        raise TransientError(str(exc)) from exc


def pending_exports(settings: Settings) -> list[uuid.UUID]:
    from app.exports import service as exports

    with session_factory(settings)() as session:
        return exports.pending(session)


def next_job(settings: Settings) -> uuid.UUID | None:
    with session_factory(settings)() as session:
        job = jobs_repo.next_queued(session)
        return job.id if job is not None else None


def pending_datasets(settings: Settings) -> list[uuid.UUID]:
    from app.datasets import repository as datasets_repo

    with session_factory(settings)() as session:
        return datasets_repo.pending_index(session)


__all__ = ["JobStatus", "index_dataset", "run_job"]
