"""Job rules: creating (with the score cache and idempotency keys), cancelling, and the state
transitions the worker makes (claim, progress, succeed, fail, cancelled).

States: queued -> running -> succeeded | failed | cancelled; queued -> cancelled. The database row
is the truth; Celery only carries the job id.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import claims, idempotency, limits, queue
from app.config import get_settings
from app.datasets import service as datasets
from app.datasets.schemas import ErrorInfo
from app.errors import conflict, not_found, unprocessable
from app.jobs import repository
from app.jobs.schemas import BaselineParamsIn, DLCParamsIn, JobCreate, JobRead, ProgressRead
from app.models import (
    Dataset,
    DatasetStatus,
    Job,
    JobStatus,
    ScoreSet,
    Weights,
    as_utc,
    utcnow,
)
from app.webhooks import outbox
from dlcprune.core.errors import ParameterError
from dlcprune.core.params import (
    IMAGE_MODELS,
    KIND_DEFAULTS,
    REGISTRY_MODELS,
    STRATEGY,
    TEXT_MODELS,
    TRAINING_BASED,
    BaselineParams,
    DLCParams,
    params_of,
)
from dlcprune.names import DEFAULT_PRIORITY, DEFAULT_STRATEGY

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(
    dataset_identity: str, model: str, weights_sha256: str | None, method: str, identity: dict
) -> str:
    """Scores depend on the data's content (``datasets.content_identity``: its bytes, and the
    format and columns they are read with), the model and its weights, the method and the
    parameters that change scores; two jobs with the same key share one score set."""
    payload = {
        "dataset": dataset_identity,
        "model": model,
        "weights": weights_sha256,
        "method": method,
        "params": identity,
    }
    return hashlib.sha256(canonical(payload).encode()).hexdigest()


# Models named by their form rather than by the registry; each needs weights_id.
_WEIGHTED_FORMS = ("timm:", "torchvision:")
_WEIGHTED_NAMES = ("torchscript", "hf")


def _check_model(model: str, weights: Weights | None) -> None:
    if model in REGISTRY_MODELS:
        return
    known_form = model.startswith(_WEIGHTED_FORMS) or model in _WEIGHTED_NAMES
    if weights is None and not known_form:
        raise unprocessable(
            "unknown_model",
            f"unknown model {model!r}: the registry has {', '.join(REGISTRY_MODELS)}; other "
            "backbones are timm:NAME, torchvision:NAME, torchscript or hf, with weights_id",
        )
    if weights is None:
        raise unprocessable(
            "invalid_model",
            f"model {model!r} needs weights_id (upload the file with POST /v1/weights); "
            f"models that need none: {', '.join(REGISTRY_MODELS)}",
        )
    if model == "hf" and not weights.filename.lower().endswith(ARCHIVE_SUFFIXES):
        raise unprocessable(
            "invalid_model",
            "model 'hf' needs weights_id of a Hugging Face directory uploaded as an archive "
            f"({', '.join(ARCHIVE_SUFFIXES)})",
        )


def _params(body: JobCreate, kind: str) -> DLCParams | BaselineParams:
    """The method's parameters, validated, with the data kind's defaults filled in."""
    given = body.params.model_dump(exclude_unset=True)
    # The body's params parsed as whichever model fits; check them against the method's own.
    schema = DLCParamsIn if body.method == "dlc" else BaselineParamsIn
    try:
        checked = schema(**given)
    except ValidationError as exc:
        wrong = ", ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise unprocessable("invalid_parameter", f"params for {body.method}: {wrong}") from exc
    try:
        if body.method == "dlc":
            return DLCParams(**checked.model_dump()).validate().resolved(kind)
        values = checked.model_dump()
        if kind in ("text",) and values["max_length"] is None:
            values["max_length"] = KIND_DEFAULTS["text"]["max_length"]
        return BaselineParams(**values).validate()
    except ParameterError as exc:
        raise unprocessable("invalid_parameter", str(exc)) from exc


def _identity(params: DLCParams | BaselineParams, method: str, kind: str) -> dict:
    if isinstance(params, DLCParams):
        return params.identity(kind)
    return params.identity(method)


def create(
    session: Session,
    tenant_id: uuid.UUID,
    body: JobCreate,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Create a job (or replay the one an idempotency key made). Returns (job, replayed).

    When scores for the same content, model, method and parameters exist, the job is born
    ``succeeded`` with ``cached=True``. Otherwise it is queued, and sent to the workers only after
    the transaction commits.
    """
    return idempotency.run(
        session,
        tenant_id,
        idempotency_key,
        scope="POST /v1/jobs",
        fingerprint=body.model_dump(mode="json"),
        create=lambda: _create(session, tenant_id, body),
        load=lambda job_id: get(session, tenant_id, job_id),
    )


def _create(session: Session, tenant_id: uuid.UUID, body: JobCreate) -> tuple[uuid.UUID, Job]:
    dataset = datasets.get(session, tenant_id, body.dataset_id)
    limits.check_active_jobs(session, get_settings(), tenant_id)
    if dataset.status == DatasetStatus.indexing:
        raise conflict("dataset_not_ready", f"dataset {dataset.id} is still being indexed")
    if dataset.status == DatasetStatus.invalid:
        raise conflict(
            "dataset_invalid", f"dataset {dataset.id} is invalid: {dataset.error_message}"
        )
    weights = None
    if body.weights_id is not None:
        weights = session.scalar(
            select(Weights).where(Weights.id == body.weights_id, Weights.tenant_id == tenant_id)
        )
        if weights is None:
            raise not_found("weights", body.weights_id)
    _check_model(body.model, weights)
    kind = dataset.kind or "image"
    _check_fits(dataset, body.model)
    if body.method != "dlc" and kind == "instruction":
        raise unprocessable(
            "unsupported_dataset", "the baselines need labelled data; instructions have none"
        )
    if (
        body.method in TRAINING_BASED
        and body.model not in (*REGISTRY_MODELS, "hf")
        and not (body.model.startswith("timm:"))
    ):
        raise unprocessable(
            "invalid_model",
            f"{body.method} fine-tunes the backbone: it needs efficientnet_lite0, a timm "
            "architecture (timm:NAME) or a text encoder",
        )
    params = _params(body, kind)
    key = cache_key(
        datasets.content_identity(dataset),
        body.model,
        weights.sha256 if weights else None,
        body.method,
        _identity(params, body.method, kind),
    )
    job = Job(
        tenant_id=tenant_id,
        dataset_id=dataset.id,
        model=body.model,
        weights_id=weights.id if weights else None,
        weights_sha256=weights.sha256 if weights else None,
        method=body.method,
        # Execution details (the batch size) are the worker's business (DLCPRUNE_BATCH_SIZE).
        params={
            p.name: getattr(params, p.name) for p in params_of(type(params)) if not p.spec.execution
        },
        cache_key=key,
        priority=body.priority,
        tags=list(body.tags) if body.tags else None,
        external_id=body.external_id,
    )
    hit = repository.score_set_by_key(session, tenant_id, key)
    if hit is not None and lacks_embeddings(hit):
        hit = None
    if hit is not None:
        _mark_succeeded(job, hit, cached=True)
    session.add(job)
    if hit is not None:
        announce(session, job)
    session.commit()
    if job.status == JobStatus.queued:
        dispatch(session, job.id)
    return job.id, job


def dispatch(session: Session, job_id: uuid.UUID) -> bool:
    """Hand a committed job to the broker and note it (the outbox). A failed send leaves
    ``enqueued_at`` as it was: the reaper sends the job again."""
    priority = session.scalar(select(Job.priority).where(Job.id == job_id))
    if not queue.enqueue_job(job_id, priority or DEFAULT_PRIORITY):
        return False
    claims.sent(session, Job, job_id)
    return True


def _check_fits(dataset: Dataset, model: str) -> None:
    """The model must take the dataset's kind of data; prototype losses need classes."""
    kind = dataset.kind
    if kind in ("image", "vector", "text") and len(dataset.classes or {}) < 2:
        raise unprocessable(
            "unlabelled_dataset",
            f"DLC on {kind} data compares class prototypes: it needs at least two classes",
        )
    if kind == "instruction":
        if model != "hf":
            raise unprocessable(
                "unsupported_dataset",
                "instruction data needs a causal language model: model 'hf' with weights_id of "
                "a Hugging Face directory archive",
            )
    elif kind == "text":
        if model not in TEXT_MODELS and model != "hf":
            raise unprocessable(
                "unsupported_dataset",
                f"text data needs a text encoder: {', '.join(TEXT_MODELS)}, or 'hf' with "
                "weights_id",
            )
    elif model in TEXT_MODELS or model == "hf":
        raise unprocessable("unsupported_dataset", f"{model} takes text, not {kind} data")
    elif kind == "vector" and model in IMAGE_MODELS:
        raise unprocessable(
            "unsupported_dataset",
            f"{model} takes images; vector data needs a TorchScript model (weights_id)",
        )


def announce(session: Session, job: Job) -> None:
    """The ``job.<status>`` webhook event with the job as the API shows it, in the caller's
    transaction (``app.webhooks.outbox``)."""
    session.flush()
    read = to_read(job, get_settings().base_url)
    outbox.emit(session, job.tenant_id, f"job.{job.status}", read.model_dump(mode="json"))


def succeed_from_cache(session: Session, job: Job, score_set: ScoreSet) -> None:
    """A queued job whose scores another job stored meanwhile: succeeded, from the cache."""
    _mark_succeeded(job, score_set, cached=True)
    announce(session, job)
    session.commit()


def _mark_succeeded(job: Job, score_set: ScoreSet, *, cached: bool) -> None:
    now = utcnow()
    job.status = JobStatus.succeeded
    job.cached = cached
    job.score_set_id = score_set.id
    job.unscored = score_set.unscored or 0
    job.stage = "done"
    job.progress_total = job.progress_total or score_set.num_samples
    job.progress_done = job.progress_total
    job.eta_seconds = 0.0
    job.finished_at = now
    if cached:
        job.started_at = now


def get(session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    job = repository.get(session, tenant_id, job_id)
    if job is None:
        raise not_found("job", job_id)
    return job


def cancel(session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    """Queued jobs are cancelled at once; running ones stop at their next progress report."""
    job = session.scalar(
        select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id).with_for_update()
    )
    if job is None:
        raise not_found("job", job_id)
    if JobStatus(job.status).finished:
        raise conflict("job_finished", f"job {job.id} has already {job.status}")
    job.cancel_requested = True
    if job.status == JobStatus.queued:
        job.status = JobStatus.cancelled
        job.stage = "cancelled"
        job.finished_at = utcnow()
        announce(session, job)
    session.commit()
    return job


def to_read(job: Job, base_url: str) -> JobRead:
    total = max(job.progress_total, 0)
    done = min(job.progress_done, total) if total else 0
    fraction = 1.0 if job.status == JobStatus.succeeded else (done / total if total else 0.0)
    error = None
    if job.error_code:
        error = ErrorInfo(code=job.error_code, message=job.error_message or "")
    url = f"{base_url}/v1/jobs/{job.id}"
    return JobRead(
        id=job.id,
        dataset_id=job.dataset_id,
        model=job.model,
        weights_id=job.weights_id,
        tags=list(job.tags or []),
        external_id=job.external_id,
        method=job.method,
        params=job.params,
        status=job.status,
        priority=job.priority,
        cached=job.cached,
        recommended_strategy=STRATEGY.get(job.method, DEFAULT_STRATEGY),
        unscored=job.unscored or 0,
        cancel_requested=job.cancel_requested,
        progress=ProgressRead(
            done=done,
            total=total,
            fraction=round(fraction, 6),
            stage=job.stage,
            eta_seconds=job.eta_seconds,
        ),
        error=error,
        attempts=job.attempts,
        created_at=as_utc(job.created_at),
        started_at=as_utc(job.started_at),
        finished_at=as_utc(job.finished_at),
        timings=timings(job),
        url=url,
        scores_url=f"{url}/scores",
        selections_url=f"{url}/selections",
    )


def timings(job: Job) -> dict[str, float]:
    out: dict[str, float] = {}
    created, started, finished = (
        as_utc(job.created_at),
        as_utc(job.started_at),
        as_utc(job.finished_at),
    )
    if created and started:
        out["queued_s"] = round((started - created).total_seconds(), 3)
    if started and finished:
        out["run_s"] = round((finished - started).total_seconds(), 3)
    for key, value in (job.timings or {}).items():
        if isinstance(value, (int, float)):
            out[key] = round(float(value), 3)
    return out


# Worker-side transitions --------------------------------------------------------------------


def claim(session: Session, job_id: uuid.UUID, worker: str, stale_after: timedelta) -> Job | None:
    """Take a job for running. Returns None when there is nothing to do (finished, cancelled,
    gone, or running elsewhere with a fresh heartbeat). Idempotent under redelivery.

    The claim is one conditional UPDATE, so two workers (or two deliveries) racing for the same
    job cannot both win, on PostgreSQL and on SQLite alike.
    """
    taken = claims.claim(
        session, Job, job_id, worker, stale_after,
        stage="starting", error_code=None, error_message=None,
    )  # fmt: skip
    job = session.get(Job, job_id, populate_existing=True)
    if taken:
        return job
    if job is not None and job.cancel_requested and not JobStatus(job.status).finished:
        mark_cancelled(session, job_id)
    return None


class JobGone(Exception):
    """The job's row was deleted (its dataset was deleted) while it ran."""


def report_progress(
    session: Session,
    job_id: uuid.UUID,
    *,
    done: int,
    total: int,
    stage: str,
    eta_seconds: float | None,
) -> bool:
    """Store progress and the heartbeat; returns True when a cancel was requested."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobGone(str(job_id))
    job.progress_done = int(done)
    job.progress_total = int(total)
    job.stage = stage[:64]
    job.eta_seconds = eta_seconds
    job.heartbeat_at = utcnow()
    cancel = bool(job.cancel_requested)
    session.commit()
    return cancel


def release(session: Session, job_id: uuid.UUID) -> None:
    """A running job goes back to the queue (its worker hit a transient error)."""
    claims.release(session, Job, job_id, stage="queued (retrying)")


def beat(session: Session, job_id: uuid.UUID) -> None:
    """Refresh a running job's heartbeat (one UPDATE, no read)."""
    claims.beat(session, Job, job_id)


def store_scores(
    session: Session,
    job_id: uuid.UUID,
    *,
    scores: np.ndarray,
    tokens: np.ndarray | None = None,
    mask_fractions: list[float] | None,
    losses_key: str | None,
    timings_: dict[str, float],
    embeddings: KeptEmbeddings | None = None,
) -> Job | None:
    """Write the score set and mark the job succeeded, in one transaction. A score set with the
    same key (another job, or an earlier delivery of this one) is reused, never duplicated; one
    stored before embeddings were kept takes this job's."""
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None:
        raise JobGone(str(job_id))
    if job.status != JobStatus.running:
        return job
    dataset = session.get(Dataset, job.dataset_id)
    if dataset is None:
        raise JobGone(str(job_id))
    score_set = repository.score_set_by_key(session, job.tenant_id, job.cache_key)
    if score_set is None:
        score_set = ScoreSet(
            tenant_id=job.tenant_id,
            cache_key=job.cache_key,
            dataset_id=job.dataset_id,
            method=job.method,
            model=job.model,
            params=job.params,
            num_samples=int(scores.shape[0]),
            scores=np.ascontiguousarray(scores, dtype="<f4").tobytes(),
            tokens=np.ascontiguousarray(tokens, dtype="<i4").tobytes()
            if tokens is not None
            else None,
            unscored=int(np.isnan(scores).sum()),
            losses_key=losses_key,
            mask_fractions={"levels": mask_fractions} if mask_fractions is not None else None,
        )
        session.add(score_set)
    if embeddings is not None and score_set.embeddings_dims is None:
        score_set.embeddings_key = embeddings.key
        score_set.embeddings_dims = embeddings.dims
        score_set.embeddings_projected = embeddings.projected
    session.flush()
    job.timings = timings_
    _mark_succeeded(job, score_set, cached=False)
    announce(session, job)
    session.commit()
    return job


@dataclass(frozen=True)
class KeptEmbeddings:
    """Where a job's embeddings went: a blob prefix (None: the job had no features), the stored
    width (0 with no features) and whether PCA reduced them."""

    key: str | None
    dims: int
    projected: bool


def unused_blobs(
    session: Session, job: Job | None, losses_key: str | None, embeddings_key: str | None
) -> tuple[list[str], list[str]]:
    """After ``store_scores``: what a run wrote that the job's score set does not reference,
    as (keys, prefixes) to delete. Another job for the same scores (running at the same time)
    or an earlier delivery stored its own first, or the job ended without this run's result
    (cancelled, gone)."""
    score_set = (
        session.get(ScoreSet, job.score_set_id)
        if job is not None and job.score_set_id is not None
        else None
    )
    kept = {score_set.losses_key, score_set.embeddings_key} if score_set is not None else set()
    keys = [losses_key] if losses_key is not None and losses_key not in kept else []
    prefixes = [embeddings_key] if embeddings_key is not None and embeddings_key not in kept else []
    return keys, prefixes


def lacks_embeddings(score_set: ScoreSet) -> bool:
    """Scores stored before embeddings were kept: a new job for them scores again (so the
    embeddings come with it) instead of taking them from the cache."""
    return score_set.embeddings_dims is None


def mark_failed(session: Session, job_id: uuid.UUID, code: str, message: str) -> None:
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None or JobStatus(job.status).finished:
        return
    job.status = JobStatus.failed
    job.error_code = code[:64]
    job.error_message = message[:4000]
    job.stage = "failed"
    job.finished_at = utcnow()
    announce(session, job)
    session.commit()


def mark_cancelled(session: Session, job_id: uuid.UUID) -> None:
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None or JobStatus(job.status).finished:
        return
    job.status = JobStatus.cancelled
    job.stage = "cancelled"
    job.finished_at = utcnow()
    announce(session, job)
    session.commit()
