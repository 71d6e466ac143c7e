"""A typed Python client for the dlcprune REST API (httpx; ``Client`` synchronous,
``AsyncClient`` the same calls awaitable).

    from dlcprune.client import Client

    with Client("http://127.0.0.1:8000", api_key=None) as dlc:
        ds = dlc.upload("digits.zip")
        job = dlc.start_job(ds.id, params={"image_size": 64, "levels": 10})
        job = dlc.wait(job.id, progress=lambda fraction, job: print(f"{fraction:.0%}"))
        sel = dlc.select(job.id, keep=0.3)
        kept = [item.sample_id for item in dlc.items(sel.id)]
        path = dlc.download(sel.id, "out/")  # out/digits-<id8>.zip, the server's file name

Calls that are safe to repeat (reads, deletes, and POSTs with an ``Idempotency-Key``: every
``start_job`` sends one) are retried with backoff when the service did not answer or answered
429/502/503/504 (``retries``, ``backoff``: see ``_http``). Webhook receivers check deliveries with
``verify_webhook`` (``webhooks``).

Every error the API answers raises ``DlcpruneError`` with the HTTP status and the API's error
``code`` and ``message`` (``not_found``, ``job_not_ready``, ``validation_error``, ...); a service
that cannot be reached raises it with ``status=None`` and code ``connection_error`` or
``timeout``. ``wait`` raises ``JobFailed`` (a ``DlcpruneError`` carrying the job) when the job
fails or is cancelled, and ``WaitTimeout`` past its timeout.

Files go both ways as streams: ``upload`` sends the file from disk in chunks (multipart, never
read whole into memory) and ``download``, ``scores_csv`` and ``items`` read the answer
incrementally.

The package needs httpx and tenacity alone (``pip install dlcprune``): ``errors``
(``DlcpruneError`` and its kinds), ``models`` (the returned dataclasses), ``_http`` (transport,
paging, streamed downloads, retries), ``webhooks`` (endpoints, deliveries, ``verify_webhook``),
``_async`` (``AsyncClient``) and this module's ``Client``, the API's calls. Names shared with the
service (strategies, export formats, defaults) come from ``dlcprune.names``.
"""

from __future__ import annotations

import csv
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from dlcprune.client._http import (
    DEFAULT_TIMEOUT,
    VERSION,
    Http,
    _lines,
    _write_stream,
    filename_from,
)
from dlcprune.client.errors import DlcpruneError, JobFailed, WaitTimeout
from dlcprune.client.models import (
    FINISHED,
    Dataset,
    ErrorInfo,
    Item,
    Job,
    Preview,
    Progress,
    Score,
    Selection,
    Weights,
)
from dlcprune.client.webhooks import (
    Attempt,
    Delivery,
    Webhook,
    WebhookEvent,
    WebhookInvalid,
    verify_webhook,
)
from dlcprune.names import (
    DEFAULT_EXPORT_FORMAT,
    DEFAULT_METHOD,
    DEFAULT_MODEL,
    DEFAULT_PRIORITY,
    DEFAULT_STRATEGY,
    EXPORT_FORMATS,
    STRATEGIES,
    WEBHOOK_EVENTS,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "EXPORT_FORMATS",
    "FINISHED",
    "STRATEGIES",
    "VERSION",
    "WEBHOOK_EVENTS",
    "AsyncClient",
    "Attempt",
    "Client",
    "Dataset",
    "Delivery",
    "DlcpruneError",
    "ErrorInfo",
    "Item",
    "Job",
    "JobFailed",
    "Preview",
    "Progress",
    "Score",
    "Selection",
    "WaitTimeout",
    "Webhook",
    "WebhookEvent",
    "WebhookInvalid",
    "Weights",
    "filename_from",
    "verify_webhook",
]

_MAX_OUTAGES = 30  # consecutive failed polls ``wait`` sits out without a timeout of its own

Id = str | uuid.UUID
ProgressCallback = Callable[[float, Job], object]


class Client(Http):
    """A dlcprune service at ``base_url`` (``http://127.0.0.1:8000``), with an optional API key
    (sent as ``Authorization: Bearer``). ``timeout`` (seconds, or an ``httpx.Timeout``) bounds each
    network operation, not a whole transfer. ``http`` takes an ``httpx.Client`` of your own
    (proxies, TLS settings, a test transport); it is then not closed by ``close``."""

    # Health --------------------------------------------------------------------------------------

    def ready(self) -> dict[str, Any]:
        """``/readyz``: database, broker and blob store checks (raises when one is down)."""
        return dict(self._json("GET", "/readyz"))

    # Datasets ----------------------------------------------------------------------------------

    def upload(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        copy: bool = False,
        idempotency_key: str | None = None,
    ) -> Dataset:
        """Upload a dataset file (zip, tar, tar.gz, npz, jsonl), streamed from disk. Answers once
        it is validated (``ready``), or at once for large files (``indexing``: see
        ``wait_dataset``). Invalid data raises ``DlcpruneError`` (422, with the reason). When the
        tenant already has a dataset with these bytes, that one is answered, unless ``copy``."""
        source = Path(path)
        data = {"name": name} if name else None
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        url = "/v1/datasets?copy=true" if copy else "/v1/datasets"
        with source.open("rb") as fh:
            files = {"file": (source.name, fh, "application/octet-stream")}
            body = self._json("POST", url, files=files, data=data, headers=headers)
        return Dataset.from_json(body)

    def register(
        self, uri: str, name: str | None = None, *, idempotency_key: str | None = None
    ) -> Dataset:
        """Register data the service can read already (``file://`` below its configured roots,
        or an enabled fsspec URL such as ``s3://``)."""
        body: dict[str, Any] = {"uri": uri}
        if name:
            body["name"] = name
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Dataset.from_json(
            self._json("POST", "/v1/datasets/references", json=body, headers=headers)
        )

    def datasets(self, status: str | None = None) -> list[Dataset]:
        """Every dataset of this key's tenant (all pages), newest first."""
        params = {"status": status} if status else {}
        return [Dataset.from_json(d) for d in self._pages("/v1/datasets", params, 1000)]

    def dataset(self, dataset_id: Id) -> Dataset:
        return Dataset.from_json(self._json("GET", f"/v1/datasets/{dataset_id}"))

    def delete_dataset(self, dataset_id: Id) -> None:
        """Delete a dataset with its jobs, scores, selections and exports."""
        self._send("DELETE", f"/v1/datasets/{dataset_id}")

    def wait_dataset(
        self, dataset_id: Id, poll: float = 1.0, timeout: float | None = None
    ) -> Dataset:
        """Poll a dataset until it is no longer ``indexing``; raises for ``invalid``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ds = self.dataset(dataset_id)
            if ds.status == "invalid":
                err = ds.error or ErrorInfo("dataset_invalid", f"dataset {ds.id} is invalid")
                raise DlcpruneError(None, err.code, err.message)
            if ds.status != "indexing":
                return ds
            if deadline is not None and time.monotonic() >= deadline:
                raise DlcpruneError(None, "timeout", f"dataset {ds.id} still indexing")
            time.sleep(poll)

    # Weights -----------------------------------------------------------------------------------

    def upload_weights(self, path: str | os.PathLike[str]) -> Weights:
        """Upload a weights file (.pth, .pt, .safetensors, TorchScript) or a Hugging Face model
        directory packed as .zip/.tar(.gz), streamed from disk."""
        source = Path(path)
        with source.open("rb") as fh:
            files = {"file": (source.name, fh, "application/octet-stream")}
            return Weights.from_json(self._json("POST", "/v1/weights", files=files))

    def weights(self, weights_id: Id) -> Weights:
        return Weights.from_json(self._json("GET", f"/v1/weights/{weights_id}"))

    # Jobs --------------------------------------------------------------------------------------

    def start_job(
        self,
        dataset_id: Id,
        model: str = DEFAULT_MODEL,
        params: Mapping[str, Any] | None = None,
        weights_id: Id | None = None,
        idempotency_key: str | None = None,
        method: str = DEFAULT_METHOD,
        priority: str = DEFAULT_PRIORITY,
    ) -> Job:
        """Start scoring a dataset (answered at once; ``wait`` for it). Scores computed before
        for the same content, model and parameters answer ``succeeded`` with ``cached=True``.
        The same ``idempotency_key`` with the same body returns the same job; without one, a
        new key is sent, so a retry after a lost answer does not start a second job.
        ``priority`` (high, normal, low) orders the queued jobs."""
        body: dict[str, Any] = {
            "dataset_id": str(dataset_id),
            "model": model,
            "method": method,
            "params": dict(params or {}),
        }
        if priority != DEFAULT_PRIORITY:
            body["priority"] = priority
        if weights_id is not None:
            body["weights_id"] = str(weights_id)
        headers = {"Idempotency-Key": idempotency_key or f"client-{uuid.uuid4()}"}
        return Job.from_json(self._json("POST", "/v1/jobs", json=body, headers=headers))

    def job(self, job_id: Id) -> Job:
        return Job.from_json(self._json("GET", f"/v1/jobs/{job_id}"))

    def _poll(self, job_id: Id, last: tuple[str, Job] | None) -> tuple[str, Job]:
        """The job, asked with the ETag of ``last``: a 304 (unchanged) reuses it."""
        headers = {"If-None-Match": last[0]} if last else None
        resp = self._send("GET", f"/v1/jobs/{job_id}", headers=headers)
        if resp.status_code == 304 and last is not None:
            return last
        return resp.headers.get("etag", ""), Job.from_json(resp.json())

    def jobs(
        self,
        status: str | None = None,
        dataset_id: Id | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Jobs of this tenant, newest first (all pages, or the first ``limit``)."""
        params: dict[str, Any] = {}
        if status:
            params["status"] = status
        if dataset_id:
            params["dataset_id"] = str(dataset_id)
        page = min(limit, 1000) if limit else 1000
        out: list[Job] = []
        for data in self._pages("/v1/jobs", params, page):
            out.append(Job.from_json(data))
            if limit is not None and len(out) >= limit:
                break
        return out

    def cancel(self, job_id: Id) -> Job:
        """Cancel a queued job at once, or a running one at its next progress report (409
        ``job_finished`` once it has ended)."""
        return Job.from_json(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def wait(
        self,
        job_id: Id,
        poll: float = 1.0,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Job:
        """Poll a job until it ends; returns it when it succeeded.

        ``progress(fraction, job)`` is called when the job moves (and once at the end), with
        the fraction of work done, never decreasing (a job retried after a lost worker starts
        over; the callback holds its highest value until it passes it). Raises ``JobFailed`` if
        the job fails or is cancelled, ``WaitTimeout`` after ``timeout`` seconds. Brief outages
        (connection errors, 502/503/504) are waited out.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        best = -1.0
        seen: tuple[float, str] | None = None
        outages = 0
        job: Job | None = None
        tagged: tuple[str, Job] | None = None
        while True:
            try:
                tagged = self._poll(job_id, tagged)
                job = tagged[1]
                outages = 0
            except DlcpruneError as exc:
                outages += 1
                transient = exc.status in (None, 502, 503, 504)
                if not transient or (deadline is None and outages > _MAX_OUTAGES):
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            else:
                state = (job.progress.fraction, job.progress.stage)
                if progress is not None and (state != seen or job.finished):
                    best = max(best, job.progress.fraction)
                    progress(best, job)
                    seen = state
                if job.finished:
                    if job.status != "succeeded":
                        raise JobFailed(job)
                    return job
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(job, timeout or 0.0)
            pause = poll if deadline is None else min(poll, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)

    # Scores ------------------------------------------------------------------------------------

    def iter_scores(self, job_id: Id, page_size: int = 10000) -> Iterator[Score]:
        """A succeeded job's scores in dataset order, page by page."""
        for data in self._pages(f"/v1/jobs/{job_id}/scores", {}, page_size):
            yield Score.from_json(data)

    def scores(self, job_id: Id) -> list[Score]:
        """Every sample's score (all pages). 409 ``job_not_ready`` until the job succeeded."""
        return list(self.iter_scores(job_id))

    def scores_csv(self, job_id: Id, dest: str | os.PathLike[str]) -> Path:
        """Stream the scores as CSV (``sample_id,label,score``) into the file ``dest``."""
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._stream("GET", f"/v1/jobs/{job_id}/scores", params={"format": "csv"}) as resp:
            _write_stream(resp, target)
        return target

    # Selections --------------------------------------------------------------------------------

    def _selection_body(
        self,
        keep: float,
        strategy: str,
        split: float | None,
        seed: int,
        hard_cutoff: float | None,
    ) -> dict[str, Any]:
        # A whole number above 1 is a count, anything else a ratio (as the service's alias).
        if isinstance(keep, bool):
            raise TypeError("keep must be a ratio in (0, 1] or a count, not a bool")
        if keep > 1 and float(keep).is_integer():
            body: dict[str, Any] = {"keep_count": int(keep)}
        else:
            body = {"keep_ratio": float(keep)}
        body.update(strategy=strategy, seed=seed)
        if split is not None:  # else the service's default (docs/quality.md)
            body["split"] = split
        if hard_cutoff is not None:  # else the service's default
            body["hard_cutoff"] = hard_cutoff
        return body

    def select(
        self,
        job_id: Id,
        keep: float,
        strategy: str = DEFAULT_STRATEGY,
        split: float | None = None,
        seed: int = 0,
        hard_cutoff: float | None = None,
    ) -> Selection:
        """Store a subset of a succeeded job's samples: ``keep`` is a ratio in (0, 1] or a
        count; strategies flexrand, easy, hard, random, stratified, ccs (coverage-centric).
        ``split`` is FlexRand's easy share, ``hard_cutoff`` the share of the hardest samples ccs
        drops; None leaves either to the service's default."""
        body = self._selection_body(keep, strategy, split, seed, hard_cutoff)
        return Selection.from_json(self._json("POST", f"/v1/jobs/{job_id}/selections", json=body))

    def preview(
        self,
        job_id: Id,
        keep: float,
        strategy: str = DEFAULT_STRATEGY,
        split: float | None = None,
        seed: int = 0,
        bins: int = 30,
        hard_cutoff: float | None = None,
    ) -> Preview:
        """What ``select`` would keep, with how far it moves the score and class distributions
        (Kolmogorov-Smirnov D, total variation); stores nothing."""
        body = self._selection_body(keep, strategy, split, seed, hard_cutoff)
        data = self._json(
            "POST", f"/v1/jobs/{job_id}/selections/preview", json=body, params={"bins": bins}
        )
        return Preview.from_json(data)

    def selection(self, selection_id: Id) -> Selection:
        return Selection.from_json(self._json("GET", f"/v1/selections/{selection_id}"))

    def selections(self, job_id: Id) -> list[Selection]:
        """A job's selections, newest first (all pages)."""
        path = f"/v1/jobs/{job_id}/selections"
        return [Selection.from_json(s) for s in self._pages(path, {}, 1000)]

    def iter_items(self, selection_id: Id) -> Iterator[Item]:
        """The kept samples in dataset order, read from the streamed CSV as it arrives."""
        path = f"/v1/selections/{selection_id}/items"
        with self._stream("GET", path, params={"format": "csv"}) as resp:
            rows = csv.reader(_lines(resp.iter_text()))
            header = next(rows, None)
            if header is None:
                return
            for row in rows:
                if row:
                    yield Item(sample_id=row[0], label=row[1] if len(row) > 1 and row[1] else None)

    def items(self, selection_id: Id) -> list[Item]:
        """Every kept sample of a selection (streamed CSV)."""
        return list(self.iter_items(selection_id))

    def download(
        self,
        selection_id: Id,
        dest_dir: str | os.PathLike[str],
        format: str = DEFAULT_EXPORT_FORMAT,
        provenance: bool = False,
    ) -> Path:
        """Stream an export into ``dest_dir`` under the server's file name and return its path.

        ``format``: ``original`` (the pruned dataset in its own format), ``manifest-csv``,
        ``manifest-jsonl``, ``parquet`` or ``bundle`` (original + manifest + provenance.json).
        ``provenance=True`` adds provenance.json to original-format zips.
        """
        params: dict[str, Any] = {"format": format}
        if provenance:
            params["provenance"] = "true"
        path = f"/v1/selections/{selection_id}/export"
        with self._stream("GET", path, params=params) as resp:
            return self._save(resp, dest_dir, f"selection-{selection_id}-{format}")

    # What the data and the scores look like ----------------------------------------------------

    def sample(self, dataset_id: Id, index: int) -> dict[str, Any]:
        """One sample of a ready dataset: its id, label, and a text snippet or thumbnail URL."""
        return dict(self._json("GET", f"/v1/datasets/{dataset_id}/samples/{index}"))

    def thumbnail(self, dataset_id: Id, index: int, dest_dir: str | os.PathLike[str]) -> Path:
        """An image sample's PNG thumbnail, saved into ``dest_dir``."""
        path = f"/v1/datasets/{dataset_id}/samples/{index}/thumbnail"
        with self._stream("GET", path) as resp:
            return self._save(resp, dest_dir, f"sample-{index}.png")

    def summary(self, job_id: Id, bins: int = 30, k: int = 6) -> dict[str, Any]:
        """A finished job's histograms, loss curve and easiest and hardest samples."""
        params = {"bins": bins, "k": k}
        return dict(self._json("GET", f"/v1/jobs/{job_id}/summary", params=params))

    def plot(
        self,
        job_id: Id,
        name: str,
        dest_dir: str | os.PathLike[str],
        fmt: str = "png",
        **params: Any,
    ) -> Path:
        """A job's plot saved into ``dest_dir``: ``histogram``, ``loss-curve``, or
        ``distribution`` (what a selection with ``params`` — keep, strategy, ... — would keep);
        ``fmt`` png or svg."""
        path = f"/v1/jobs/{job_id}/plots/{name}.{fmt}"
        with self._stream("GET", path, params=params or None) as resp:
            return self._save(resp, dest_dir, f"{name}-{str(job_id)[:8]}.{fmt}")

    def selection_plot(
        self, selection_id: Id, dest_dir: str | os.PathLike[str], fmt: str = "png"
    ) -> Path:
        """A selection's scores against the full set's, saved into ``dest_dir``."""
        path = f"/v1/selections/{selection_id}/plots/distribution.{fmt}"
        with self._stream("GET", path) as resp:
            return self._save(resp, dest_dir, f"distribution-{str(selection_id)[:8]}.{fmt}")

    # Webhooks ----------------------------------------------------------------------------------

    def create_webhook(
        self, url: str, events: list[str] | tuple[str, ...], description: str = ""
    ) -> Webhook:
        """Register an endpoint for ``events`` (``WEBHOOK_EVENTS``); the answer's ``secret``
        (shown this once) is what ``verify_webhook`` checks deliveries with."""
        body = {"url": url, "events": list(events), "description": description}
        return Webhook.from_json(self._json("POST", "/v1/webhooks", json=body))

    def webhooks(self) -> list[Webhook]:
        """This tenant's endpoints, newest first (all pages)."""
        return [Webhook.from_json(w) for w in self._pages("/v1/webhooks", {}, 1000)]

    def webhook(self, webhook_id: Id) -> Webhook:
        return Webhook.from_json(self._json("GET", f"/v1/webhooks/{webhook_id}"))

    def delete_webhook(self, webhook_id: Id) -> None:
        """Delete an endpoint with its deliveries; nothing more is sent to it."""
        self._send("DELETE", f"/v1/webhooks/{webhook_id}")

    def deliveries(self, webhook_id: Id, status: str | None = None) -> list[Delivery]:
        """An endpoint's deliveries, newest first, each with its attempts (all pages);
        ``status``: pending, delivered or failed."""
        params = {"status": status} if status else {}
        path = f"/v1/webhooks/{webhook_id}/deliveries"
        return [Delivery.from_json(d) for d in self._pages(path, params, 1000)]

    def delivery(self, webhook_id: Id, delivery_id: Id) -> Delivery:
        path = f"/v1/webhooks/{webhook_id}/deliveries/{delivery_id}"
        return Delivery.from_json(self._json("GET", path))

    def replay(self, webhook_id: Id, delivery_id: Id) -> Delivery:
        """Send a delivery again (the same ``webhook-id`` and body), now."""
        path = f"/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay"
        return Delivery.from_json(self._json("POST", path))


from dlcprune.client._async import AsyncClient  # noqa: E402 - it wraps the Client above
