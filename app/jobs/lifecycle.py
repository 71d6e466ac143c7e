"""Deleting what jobs hang on: a dataset with queued or running jobs (refused, 409
``dataset_busy``, unless forced: then those jobs are cancelled with the reason and kept, so a
client polling one reads ``cancelled`` rather than 404), and jobs and selections themselves."""

from __future__ import annotations

import uuid

from sqlalchemy import delete as sa_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.blobstore import BlobStore
from app.errors import conflict, not_found
from app.models import Job, JobStatus, Selection, utcnow

ACTIVE = (JobStatus.queued, JobStatus.running)


def active_jobs(session: Session, dataset_id: uuid.UUID) -> list[Job]:
    return list(
        session.scalars(
            select(Job)
            .where(Job.dataset_id == dataset_id, Job.status.in_(ACTIVE))
            .with_for_update()
        )
    )


def release_active_jobs(session: Session, dataset_id: uuid.UUID, *, force: bool) -> None:
    """Before a dataset is deleted (in the caller's transaction): 409 while jobs run on it, or,
    forced, each is cancelled (``dataset_deleted``, the worker stops at its next progress
    report) and kept without its dataset."""
    from app.jobs.service import announce

    jobs = active_jobs(session, dataset_id)
    if not jobs:
        return
    if not force:
        raise conflict(
            "dataset_busy",
            f"dataset {dataset_id} has {len(jobs)} queued or running jobs: cancel them first, "
            "or delete with force=true (they are cancelled and say why)",
            details={"jobs": [str(j.id) for j in jobs]},
        )
    now = utcnow()
    for job in jobs:
        job.cancel_requested = True
        job.status = JobStatus.cancelled
        job.stage = "cancelled"
        job.finished_at = now
        job.error_code = "dataset_deleted"
        job.error_message = (
            f"cancelled: dataset {dataset_id} was deleted while the job was queued or running"
        )
        announce(session, job)
        job.dataset_id = None
    session.flush()


def delete_selection_rows(session: Session, blobs_after: list[str], where: object) -> None:
    """Delete the selections matching ``where``; their export folders go after the commit."""
    ids = list(session.scalars(select(Selection.id).where(where)))  # type: ignore[arg-type]
    session.execute(sa_delete(Selection).where(where))  # type: ignore[arg-type]
    blobs_after.extend(f"exports/{sid}" for sid in ids)


def delete_job(
    session: Session, blobs: BlobStore, tenant_id: uuid.UUID, job_id: uuid.UUID, *, force: bool
) -> None:
    """Delete a job with its selections and their exports (the score cache stays: other jobs
    share it). A queued or running job is refused (409 ``job_active``) unless forced; forced,
    its worker stops at its next progress report."""
    job = session.scalar(
        select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id).with_for_update()
    )
    if job is None:
        raise not_found("job", job_id)
    if job.status in ACTIVE and not force:
        raise conflict(
            "job_active",
            f"job {job.id} is {job.status}: cancel it first, or delete with force=true",
        )
    prefixes: list[str] = []
    delete_selection_rows(session, prefixes, Selection.job_id == job.id)
    session.delete(job)
    session.commit()
    for prefix in prefixes:
        blobs.delete_prefix(prefix)


def delete_selection(
    session: Session, blobs: BlobStore, tenant_id: uuid.UUID, selection_id: uuid.UUID
) -> None:
    row = session.scalar(
        select(Selection).where(Selection.id == selection_id, Selection.tenant_id == tenant_id)
    )
    if row is None:
        raise not_found("selection", selection_id)
    session.delete(row)
    session.commit()
    blobs.delete_prefix(f"exports/{selection_id}")
