"""One ``Settings`` for the API and the worker, read from ``DLCPRUNE_*`` environment variables.

With nothing set, the service runs embedded: SQLite and a blob directory under ``./var``, and a
worker process that polls the database instead of a broker. Pointing ``DLCPRUNE_DATABASE_URL`` at
PostgreSQL and ``DLCPRUNE_BROKER_URL`` at Redis gives the production stack (Celery workers).
"""

from __future__ import annotations

import ipaddress
import json
import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_list(value: Any) -> Any:
    """Comma-separated strings become lists, so ``DLCPRUNE_FILE_ROOTS=/a,/b`` works."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DLCPRUNE_", env_file=None, extra="ignore")

    # Where state lives.
    data_dir: Path = Path("var")
    database_url: str = ""  # default: sqlite in data_dir
    blob_url: str = ""  # default: data_dir/blobs; any fsspec URL (s3://bucket/prefix) otherwise
    broker_url: str = ""  # empty: embedded worker (no broker); redis://... for Celery

    # HTTP.
    host: str = "127.0.0.1"
    port: int = 8000
    auth_enabled: bool | None = None  # default: on, except embedded on a loopback host
    public_url: str = ""  # base of absolute URLs in responses; default: from the request
    # Idle seconds before the server closes a kept-alive connection. Above a load balancer's idle
    # timeout (60 s is common), so the server is never the side that closes: a client that sends
    # on a connection at the moment the server closes it gets a connection error instead of an
    # answer (`make load` with uvicorn's 5 s default: 2 read errors in 11,000 requests; none
    # with 75 s).
    keep_alive_s: int = Field(default=75, ge=1, le=3600)

    # Input limits.
    max_upload_bytes: int = 10 * 2**30
    max_request_bytes: int = 1 * 2**20  # JSON bodies
    index_sync_max_bytes: int = 256 * 2**20  # smaller uploads are indexed before answering
    # A reference to a store is indexed before answering only up to this many objects (each is
    # fetched once to check it decodes); larger ones go to the index queue.
    index_sync_max_objects: int = Field(default=2000, ge=0)
    # What a dataset may hold (see dlcprune.core.formats.ReadLimits).
    max_samples: int = 10_000_000
    max_archive_members: int = 10_000_000
    max_archive_bytes: int = 64 * 2**30
    max_compression_ratio: float = 200.0
    max_image_pixels: int = 50_000_000
    max_line_bytes: int = 16 * 2**20
    max_array_bytes: int = 64 * 2**30
    file_roots: Annotated[list[str], NoDecode] = Field(default_factory=list)
    reference_schemes: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Object stores (app/storage.py): fsspec storage options per scheme, as JSON
    # ('{"s3": {"endpoint_url": "http://127.0.0.1:9000"}}'); credentials otherwise come from each
    # file system's own environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS). Never logged or
    # returned; a secret, so it is not even in the settings' repr.
    storage_options: SecretStr = SecretStr("")
    # Objects fetched from a store are kept on the local disk up to this many bytes, and the
    # worker fetches this many objects ahead of the one it decodes.
    remote_cache_bytes: int = Field(default=2 * 2**30, ge=0)
    remote_prefetch: int = Field(default=64, ge=1, le=4096)
    # WebDataset shards, class-folder tars and class-folder zips in a store are read in place
    # (never copied), in ranged reads of this size.
    remote_block_bytes: int = Field(default=8 * 2**20, ge=64 * 2**10, le=2**30)
    # Decoded inputs (the prepared arrays a job scores) kept on the worker's disk for later jobs
    # on the same data with the same preprocessing, up to this many bytes (0: none).
    input_cache_bytes: int = Field(default=4 * 2**30, ge=0)

    # Worker.
    device: str = "auto"
    batch_size: int = 64
    cache_dir: Path | None = None  # local copies of remote blobs; default data_dir/cache
    heartbeat_seconds: float = 2.0
    # Kept embeddings: reduce each job's features by PCA to this many dimensions (at most 256;
    # 0 keeps them at the backbone's width, in float16).
    embeddings_pca_dims: int = Field(default=0, ge=0, le=256)
    # Evaluations: BLAS/OpenMP threads per evaluation (app.evaluations.engine).
    evaluation_threads: int = Field(default=1, ge=1, le=256)
    stale_after_seconds: float = 0.0  # a running job without a heartbeat this long is requeued;
    # 0 means max(10, 5 x heartbeat_seconds)
    poll_seconds: float = 0.5  # embedded worker: how often it looks for queued work
    worker_concurrency: int = 1
    # Datasets above shard_threshold samples are scored in shards of about shard_size samples
    # by all Celery workers (0 disables; the embedded worker never shards).
    shard_threshold: int = 200_000
    shard_size: int = 50_000
    shard_attempts: int = 3

    # Reliability: a job whose worker was lost this many times fails (a poison job); the reaper
    # runs every reaper_seconds in each worker; queued work not picked up within
    # redeliver_after_seconds is handed to the broker again (doubling each time).
    max_attempts: int = 3
    reaper_seconds: float = 10.0
    redeliver_after_seconds: float = 60.0
    # Per job: past the soft limit the job fails with time_limit at its next batch; past the
    # hard limit the worker process exits (a batch that never ends) and the reaper takes over.
    job_time_limit_seconds: float = 0.0
    job_hard_time_limit_seconds: float = 0.0
    transient_retries: int = 8

    # Celery. Each kind of work (dlcprune.names.WORK_KINDS) has a queue of its own, named by
    # queue_<kind>, or "<task_queue>.<kind>" when that is empty; GPU workers consume the scoring
    # queues, CPU workers the rest (``dlcprune worker --kind``).
    task_queue: str = "dlcprune"
    queue_index: str = ""
    queue_score: str = ""
    queue_shards: str = ""
    queue_export: str = ""
    queue_evaluate: str = ""
    visibility_timeout_s: int = 12 * 3600
    # The migrations run when the API starts; off where a migration job runs them (Kubernetes).
    migrate_on_start: bool = True
    # Seconds a 202 answer suggests waiting before polling (Retry-After).
    retry_after_s: int = Field(default=2, ge=1, le=3600)

    # Webhooks. Deliveries are retried this many seconds after each failed attempt (the
    # Standard Webhooks schedule: about 28 hours in all), then marked failed.
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Whether this process's worker sends deliveries (the embedded worker, CPU Celery workers);
    # off to leave sending to other workers.
    webhook_sender: bool = True
    # Targets must be public addresses, except: loopback where this is on (default: on in the
    # embedded default, off with a broker) and the networks listed (CIDR, e.g. 10.0.0.0/8).
    webhook_allow_loopback: bool | None = None
    webhook_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_max_per_tenant: int = Field(default=20, ge=1, le=1000)

    # Idempotency-Key (app.idempotency): how long a key is remembered, and how long a request
    # waits for another one with the same key that is still running before answering 409.
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    idempotency_wait_s: float = Field(default=60.0, ge=0, le=600)
    # A claimed key whose request made nothing within this time is taken as abandoned (the API
    # died mid-request) and can be claimed again. Keep it above the longest request (a large
    # upload): a retry sent while the first request still runs would otherwise make a second.
    idempotency_claim_stale_s: int = Field(default=6 * 3600, ge=60, le=7 * 24 * 3600)

    # Per-tenant limits (0: none), answered 429 with Retry-After: scoring jobs, evaluations and
    # exports queued or running at once (counted together), bytes of uploaded datasets and
    # weights stored, requests per second (a token bucket of rate_limit_burst requests, refilled
    # at rate_limit_per_s, per API process).
    tenant_max_active_jobs: int = Field(default=0, ge=0)
    tenant_max_stored_bytes: int = Field(default=0, ge=0)
    rate_limit_per_s: float = Field(default=0.0, ge=0)
    rate_limit_burst: int = Field(default=0, ge=0)

    log_level: str = "INFO"

    @field_validator(
        "file_roots",
        "reference_schemes",
        "webhook_retry_schedule",
        "webhook_allowed_networks",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 <= v <= 7 * 86400 for v in value):
            raise ValueError("give one or more delays in seconds, each from 0 to 604800")
        return value

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_network(v, strict=False)) for v in value]
        except ValueError as exc:
            raise ValueError(f"not a network in CIDR notation: {exc}") from exc

    @field_validator(
        "task_queue", "queue_index", "queue_score", "queue_shards", "queue_export", "queue_evaluate"
    )
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if value and (len(value) > 200 or not all(c.isalnum() or c in "._-" for c in value)):
            raise ValueError(f"queue names take letters, digits, '.', '_' and '-': {value!r}")
        return value

    @field_validator("reference_schemes")
    @classmethod
    def _schemes(cls, value: list[str]) -> list[str]:
        out = [s.lower().removesuffix("://") for s in value]
        for scheme in out:
            if scheme in ("file", "local"):
                raise ValueError("file:// references are governed by DLCPRUNE_FILE_ROOTS")
            if not scheme.isidentifier():
                raise ValueError(f"not a URL scheme: {scheme!r}")
        return out

    @field_validator("storage_options")
    @classmethod
    def _storage_options(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value().strip()
        if not raw:
            return value
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            # The value itself is not repeated: it may hold credentials.
            raise ValueError(f"DLCPRUNE_STORAGE_OPTIONS is not valid JSON ({exc.msg})") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
            raise ValueError('DLCPRUNE_STORAGE_OPTIONS maps schemes to objects: {"s3": {...}}')
        return value

    def storage_options_for(self, scheme: str) -> dict[str, Any]:
        """The fsspec storage options of ``scheme`` from ``storage_options`` ({} when none)."""
        raw = self.storage_options.get_secret_value().strip()
        return dict(json.loads(raw).get(scheme, {})) if raw else {}

    @field_validator("file_roots")
    @classmethod
    def _roots(cls, value: list[str]) -> list[str]:
        roots = []
        for root in value:
            path = Path(root.removeprefix("file://"))
            if not path.is_absolute():
                raise ValueError(f"file roots must be absolute paths: {root!r}")
            roots.append(str(path.resolve()))
        return roots

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'dlcprune.db').resolve()}"
        if not self.blob_url:
            self.blob_url = str((self.data_dir / "blobs").resolve())
        if self.cache_dir is None:
            self.cache_dir = (self.data_dir / "cache").resolve()
        if self.auth_enabled is None:
            self.auth_enabled = not (self.embedded_worker and _is_loopback(self.host))
        if self.webhook_allow_loopback is None:
            self.webhook_allow_loopback = self.embedded_worker
        return self

    @property
    def base_url(self) -> str:
        """Where clients reach the API, for URLs written outside a request (webhook payloads):
        ``public_url``, else this process's host and port."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def queue_name(self, kind: str) -> str:
        """The Celery queue of a kind of work (``dlcprune.names.WORK_KINDS``)."""
        return getattr(self, f"queue_{kind}") or f"{self.task_queue}.{kind}"

    @property
    def embedded_worker(self) -> bool:
        """No broker configured: the worker polls the database for queued work."""
        return not self.broker_url

    @property
    def stale_after(self) -> timedelta:
        seconds = self.stale_after_seconds or max(10.0, 5 * self.heartbeat_seconds)
        return timedelta(seconds=seconds)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()


def environment_summary(settings: Settings) -> dict[str, Any]:
    """What the service runs on, without secrets (passwords in URLs are masked)."""

    def mask(url: str) -> str:
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            creds, host = rest.rsplit("@", 1)
            user = creds.split(":", 1)[0]
            return f"{scheme}://{user}:***@{host}"
        return url

    return {
        "database": mask(settings.database_url),
        "broker": mask(settings.broker_url) or "embedded",
        "blob_store": mask(settings.blob_url),
        "auth": settings.auth_enabled,
        "pid": os.getpid(),
    }
