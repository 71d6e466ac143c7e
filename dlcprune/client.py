"""A typed Python client for the dlcprune REST API (httpx, synchronous).

    from dlcprune.client import Client

    with Client("http://127.0.0.1:8000", api_key=None) as dlc:
        ds = dlc.upload("digits.zip")
        job = dlc.start_job(ds.id, params={"image_size": 64, "levels": 10})
        job = dlc.wait(job.id, progress=lambda fraction, job: print(f"{fraction:.0%}"))
        sel = dlc.select(job.id, keep=0.3)
        kept = [item.sample_id for item in dlc.items(sel.id)]
        path = dlc.download(sel.id, "out/")  # out/digits-<id8>.zip, the server's file name

Every error the API answers raises ``DlcpruneError`` with the HTTP status and the API's error
``code`` and ``message`` (``not_found``, ``job_not_ready``, ``validation_error``, ...); a service
that cannot be reached raises it with ``status=None`` and code ``connection_error`` or
``timeout``. ``wait`` raises ``JobFailed`` (a ``DlcpruneError`` carrying the job) when the job
fails or is cancelled, and ``WaitTimeout`` past its timeout.

Files go both ways as streams: ``upload`` sends the file from disk in chunks (multipart, never
read whole into memory) and ``download``, ``scores_csv`` and ``items`` read the answer
incrementally.
"""

from __future__ import annotations

import csv
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx

__all__ = [
    "Client",
    "Dataset",
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
    "Weights",
]

VERSION = "0.1.0"
DEFAULT_TIMEOUT = 60.0
EXPORT_FORMATS = ("original", "manifest-csv", "manifest-jsonl", "parquet", "bundle")
_CHUNK = 1 << 20
_MAX_OUTAGES = 30  # consecutive failed polls ``wait`` sits out without a timeout of its own

Id = str | uuid.UUID
ProgressCallback = Callable[[float, "Job"], object]


# Errors ----------------------------------------------------------------------------------------


class DlcpruneError(Exception):
    """An error answered by the API (``status`` is its HTTP status), or no answer at all
    (``status`` is None; ``code`` is ``connection_error`` or ``timeout``)."""

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        *,
        details: Any = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r})"
        )


class JobFailed(DlcpruneError):
    """``wait`` saw the job end ``failed`` (code: the job's error code) or ``cancelled``."""

    def __init__(self, job: Job) -> None:
        if job.status == "cancelled":
            code, message = "cancelled", f"job {job.id} was cancelled"
        elif job.error is not None:
            code, message = job.error.code, job.error.message
        else:
            code, message = "job_failed", f"job {job.id} ended {job.status}"
        super().__init__(None, code, message)
        self.job = job


class WaitTimeout(DlcpruneError):
    """``wait`` gave up before the job ended (the job itself goes on)."""

    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(
            None,
            "timeout",
            f"job {job.id} still {job.status} ({job.progress.fraction:.0%}) after {timeout:g} s",
        )
        self.job = job


def _error_from(resp: httpx.Response) -> DlcpruneError:
    """The API's ``{"error": {"code", "message"}}`` as an exception (any other body too)."""
    code, message, details = f"http_{resp.status_code}", "", None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code") or code)
        message = str(err.get("message") or "")
        details = err.get("details")
    if not message:
        message = resp.text.strip()[:500] or resp.reason_phrase or "error"
    return DlcpruneError(
        resp.status_code,
        code,
        message,
        details=details,
        request_id=resp.headers.get("x-request-id"),
    )


# Returned objects --------------------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class ErrorInfo:
    """Why a dataset is invalid or a job failed."""

    code: str
    message: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ErrorInfo | None:
        if not data:
            return None
        return cls(code=str(data.get("code", "")), message=str(data.get("message", "")))


@dataclass(frozen=True)
class Dataset:
    """A registered dataset (``GET /v1/datasets/{id}``)."""

    id: str
    name: str
    status: str  # indexing, ready or invalid
    source: str
    filename: str
    uri: str | None = None
    format: str | None = None
    kind: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    num_samples: int | None = None
    classes: dict[str, int] | None = None
    error: ErrorInfo | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    url: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Dataset:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            status=str(data["status"]),
            source=str(data.get("source") or ""),
            filename=str(data.get("filename") or ""),
            uri=data.get("uri"),
            format=data.get("format"),
            kind=data.get("kind"),
            size_bytes=data.get("size_bytes"),
            sha256=data.get("sha256"),
            num_samples=data.get("num_samples"),
            classes=data.get("classes"),
            error=ErrorInfo.from_json(data.get("error")),
            created_at=_time(data.get("created_at")),
            updated_at=_time(data.get("updated_at")),
            url=str(data.get("url") or ""),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Weights:
    """An uploaded weights file (``POST /v1/weights``)."""

    id: str
    filename: str
    size_bytes: int
    sha256: str
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Weights:
        return cls(
            id=str(data["id"]),
            filename=str(data.get("filename") or ""),
            size_bytes=int(data.get("size_bytes") or 0),
            sha256=str(data.get("sha256") or ""),
            created_at=_time(data.get("created_at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Progress:
    """Where a job stands: work units done of total, the stage, the estimated time left."""

    done: int
    total: int
    fraction: float
    stage: str
    eta_seconds: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Progress:
        data = data or {}
        return cls(
            done=int(data.get("done") or 0),
            total=int(data.get("total") or 0),
            fraction=float(data.get("fraction") or 0.0),
            stage=str(data.get("stage") or ""),
            eta_seconds=data.get("eta_seconds"),
        )


FINISHED = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class Job:
    """A scoring job (``GET /v1/jobs/{id}``)."""

    id: str
    dataset_id: str
    model: str
    method: str
    params: dict[str, Any]
    status: str  # queued, running, succeeded, failed or cancelled
    cached: bool
    progress: Progress
    weights_id: str | None = None
    unscored: int = 0
    cancel_requested: bool = False
    error: ErrorInfo | None = None
    attempts: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    timings: dict[str, float] = field(default_factory=dict)
    url: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """Succeeded, failed or cancelled: the job will not change any more."""
        return self.status in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        return cls(
            id=str(data["id"]),
            dataset_id=str(data["dataset_id"]),
            model=str(data.get("model") or ""),
            method=str(data.get("method") or ""),
            params=dict(data.get("params") or {}),
            status=str(data["status"]),
            cached=bool(data.get("cached")),
            progress=Progress.from_json(data.get("progress")),
            weights_id=data.get("weights_id"),
            unscored=int(data.get("unscored") or 0),
            cancel_requested=bool(data.get("cancel_requested")),
            error=ErrorInfo.from_json(data.get("error")),
            attempts=int(data.get("attempts") or 0),
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            timings=dict(data.get("timings") or {}),
            url=str(data.get("url") or ""),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Score:
    """One sample's DLC score (None when it could not be scored)."""

    sample_id: str
    label: str | None
    score: float | None
    tokens: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Score:
        return cls(
            sample_id=str(data["sample_id"]),
            label=data.get("label"),
            score=data.get("score"),
            tokens=data.get("tokens"),
        )


@dataclass(frozen=True)
class Selection:
    """A stored subset (``GET /v1/selections/{id}``), with its provenance record."""

    id: str
    job_id: str
    dataset_id: str
    keep: float
    strategy: str
    split: float
    seed: int
    size: int
    num_samples: int
    class_counts: dict[str, int]
    excluded: int = 0
    created_at: datetime | None = None
    url: str = ""
    items_url: str = ""
    export_url: str = ""
    provenance: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Selection:
        return cls(
            id=str(data["id"]),
            job_id=str(data["job_id"]),
            dataset_id=str(data["dataset_id"]),
            keep=float(data["keep"]),
            strategy=str(data["strategy"]),
            split=float(data.get("split") or 0.0),
            seed=int(data.get("seed") or 0),
            size=int(data["size"]),
            num_samples=int(data.get("num_samples") or 0),
            class_counts=dict(data.get("class_counts") or {}),
            excluded=int(data.get("excluded") or 0),
            created_at=_time(data.get("created_at")),
            url=str(data.get("url") or ""),
            items_url=str(data.get("items_url") or ""),
            export_url=str(data.get("export_url") or ""),
            provenance=data.get("provenance"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Preview:
    """What a selection would keep (``POST /v1/jobs/{id}/selections/preview``; nothing stored)."""

    job_id: str
    keep: float
    strategy: str
    split: float
    seed: int
    size: int
    num_samples: int
    excluded: int
    class_counts: dict[str, dict[str, int]]
    ks_statistic: float
    tv_distance: float | None
    mean_score: dict[str, float | None]
    histogram: dict[str, list[Any]]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preview:
        return cls(
            job_id=str(data["job_id"]),
            keep=float(data["keep"]),
            strategy=str(data["strategy"]),
            split=float(data.get("split") or 0.0),
            seed=int(data.get("seed") or 0),
            size=int(data["size"]),
            num_samples=int(data["num_samples"]),
            excluded=int(data.get("excluded") or 0),
            class_counts=dict(data.get("class_counts") or {}),
            ks_statistic=float(data["ks_statistic"]),
            tv_distance=data.get("tv_distance"),
            mean_score=dict(data.get("mean_score") or {}),
            histogram=dict(data.get("histogram") or {}),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Item:
    """A kept sample of a selection."""

    sample_id: str
    label: str | None


# Helpers ---------------------------------------------------------------------------------------


_FILENAME_STAR = re.compile(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", re.IGNORECASE)
_FILENAME = re.compile(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]+))', re.IGNORECASE)


def filename_from(disposition: str | None, fallback: str) -> str:
    """The file name a ``Content-Disposition`` header gives, reduced to a safe base name."""
    name = ""
    if disposition:
        star = _FILENAME_STAR.search(disposition)
        if star:
            name = unquote(star.group(2).strip(), encoding=star.group(1) or "utf-8")
        else:
            plain = _FILENAME.search(disposition)
            if plain:
                name = (plain.group(1) if plain.group(1) is not None else plain.group(2)).strip()
                name = name.replace('\\"', '"')
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*').strip()
    return name if name not in ("", ".", "..") else fallback


def _lines(chunks: Iterable[str]) -> Iterator[str]:
    """Text split into lines that keep their ``\\n`` (so csv can read quoted line breaks)."""
    pending = ""
    for chunk in chunks:
        pending += chunk
        start = 0
        while (end := pending.find("\n", start)) >= 0:
            yield pending[start : end + 1]
            start = end + 1
        pending = pending[start:]
    if pending:
        yield pending


def _write_stream(resp: httpx.Response, target: Path) -> None:
    """Write a response body to ``target`` chunk by chunk, through a temporary name beside it,
    so a partial file never takes the final name."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        with open(tmp, "xb") as out:
            for chunk in resp.iter_bytes(_CHUNK):
                out.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# The client --------------------------------------------------------------------------------------


class Client:
    """A dlcprune service at ``base_url`` (``http://127.0.0.1:8000``), with an optional API key
    (sent as ``Authorization: Bearer``). ``timeout`` (seconds, or an ``httpx.Timeout``) bounds each
    network operation, not a whole transfer. ``http`` takes an ``httpx.Client`` of your own
    (proxies, TLS settings, a test transport); it is then not closed by ``close``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        *,
        http: httpx.Client | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required, e.g. http://127.0.0.1:8000")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"User-Agent": f"dlcprune-client/{VERSION}", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)

    def __repr__(self) -> str:  # never shows the key
        return f"Client({self.base_url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (unless the ``httpx.Client`` was passed in)."""
        if self._own_http:
            self._http.close()

    # Transport ---------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**self._headers, **(kw.pop("headers", None) or {})}
        url = self._url(path)
        try:
            resp = self._http.request(method, url, headers=headers, **kw)
        except httpx.TimeoutException as exc:
            raise DlcpruneError(None, "timeout", f"{method} {url}: {exc or 'timed out'}") from exc
        except httpx.TransportError as exc:
            raise DlcpruneError(None, "connection_error", f"{method} {url}: {exc}") from exc
        if not resp.is_success:
            raise _error_from(resp)
        return resp

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._send(method, path, **kw).json()

    @contextmanager
    def _stream(self, method: str, path: str, **kw: Any) -> Iterator[httpx.Response]:
        headers = {**self._headers, **(kw.pop("headers", None) or {})}
        url = self._url(path)
        try:
            with self._http.stream(method, url, headers=headers, **kw) as resp:
                if not resp.is_success:
                    resp.read()
                    raise _error_from(resp)
                yield resp
        except httpx.TimeoutException as exc:
            raise DlcpruneError(None, "timeout", f"{method} {url}: {exc or 'timed out'}") from exc
        except httpx.TransportError as exc:
            raise DlcpruneError(None, "connection_error", f"{method} {url}: {exc}") from exc

    def _pages(self, path: str, params: dict[str, Any], page_size: int) -> Iterator[dict]:
        offset = 0
        while True:
            page = self._json("GET", path, params={**params, "limit": page_size, "offset": offset})
            items = page.get("items") or []
            yield from items
            offset += len(items)
            if not items or offset >= int(page.get("total") or 0):
                return

    def _save(self, resp: httpx.Response, dest_dir: str | os.PathLike[str], fallback: str) -> Path:
        """Stream a response body into ``dest_dir`` under the server's file name (atomically:
        a partial file never takes the final name)."""
        folder = Path(dest_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = filename_from(resp.headers.get("content-disposition"), fallback)
        target = folder / name
        _write_stream(resp, target)
        return target

    # Health --------------------------------------------------------------------------------------

    def ready(self) -> dict[str, Any]:
        """``/readyz``: database, broker and blob store checks (raises when one is down)."""
        return dict(self._json("GET", "/readyz"))

    # Datasets ----------------------------------------------------------------------------------

    def upload(self, path: str | os.PathLike[str], name: str | None = None) -> Dataset:
        """Upload a dataset file (zip, tar, tar.gz, npz, jsonl), streamed from disk. Answers once
        it is validated (``ready``), or at once for large files (``indexing``: see
        ``wait_dataset``). Invalid data raises ``DlcpruneError`` (422, with the reason)."""
        source = Path(path)
        data = {"name": name} if name else None
        with source.open("rb") as fh:
            files = {"file": (source.name, fh, "application/octet-stream")}
            body = self._json("POST", "/v1/datasets", files=files, data=data)
        return Dataset.from_json(body)

    def register(self, uri: str, name: str | None = None) -> Dataset:
        """Register data the service can read already (``file://`` below its configured roots,
        or an enabled fsspec URL such as ``s3://``)."""
        body: dict[str, Any] = {"uri": uri}
        if name:
            body["name"] = name
        return Dataset.from_json(self._json("POST", "/v1/datasets", json=body))

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
        model: str = "efficientnet_lite0",
        params: Mapping[str, Any] | None = None,
        weights_id: Id | None = None,
        idempotency_key: str | None = None,
        method: str = "dlc",
    ) -> Job:
        """Start scoring a dataset (answered at once; ``wait`` for it). Scores computed before
        for the same content, model and parameters answer ``succeeded`` with ``cached=True``.
        The same ``idempotency_key`` with the same body returns the same job."""
        body: dict[str, Any] = {
            "dataset_id": str(dataset_id),
            "model": model,
            "method": method,
            "params": dict(params or {}),
        }
        if weights_id is not None:
            body["weights_id"] = str(weights_id)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Job.from_json(self._json("POST", "/v1/jobs", json=body, headers=headers))

    def job(self, job_id: Id) -> Job:
        return Job.from_json(self._json("GET", f"/v1/jobs/{job_id}"))

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
        while True:
            try:
                job = self.job(job_id)
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
        self, keep: float, strategy: str, split: float | None, seed: int
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"keep": keep, "strategy": strategy, "seed": seed}
        if split is not None:  # else the service's default (docs/quality.md)
            body["split"] = split
        return body

    def select(
        self,
        job_id: Id,
        keep: float,
        strategy: str = "flexrand",
        split: float | None = None,
        seed: int = 0,
    ) -> Selection:
        """Store a subset of a succeeded job's samples: ``keep`` is a ratio in (0, 1] or a
        count; strategies flexrand, easy, hard, random, stratified."""
        body = self._selection_body(keep, strategy, split, seed)
        return Selection.from_json(self._json("POST", f"/v1/jobs/{job_id}/selections", json=body))

    def preview(
        self,
        job_id: Id,
        keep: float,
        strategy: str = "flexrand",
        split: float | None = None,
        seed: int = 0,
        bins: int = 30,
    ) -> Preview:
        """What ``select`` would keep, with how far it moves the score and class distributions
        (Kolmogorov-Smirnov D, total variation); stores nothing."""
        body = self._selection_body(keep, strategy, split, seed)
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
        format: str = "original",
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
