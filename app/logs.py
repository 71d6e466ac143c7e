"""Structured logs: one JSON object per line, with the request, job and tenant ids of the moment.

``configure()`` installs one handler on the root logger for the API (uvicorn's own loggers are
routed through it; its access log is replaced by ``dlcprune.access`` lines written by the request
middleware, which know the duration and the request id) and for the workers (Celery and the
embedded worker). A line looks like::

    {"timestamp": "2026-11-28T11:56:42.699Z", "level": "INFO", "logger": "dlcprune.access",
     "message": "GET /v1/jobs/... 200 3.1 ms", "request_id": "...", "tenant_id": "...",
     "method": "GET", "path": "/v1/jobs/...", "status": 200, "duration_ms": 3.1}

Ids come from context variables: ``request_context`` (set per HTTP request; the tenant is read from
the request's state once authentication has resolved it) and ``log_context(job_id=...)`` (set
around every task a worker runs), so every record logged while they are set carries them, whatever
logger wrote it. ``DLCPRUNE_LOG_FORMAT`` chooses ``json`` or ``text`` (default: json unless stderr
is a terminal). Anything shaped like an API key or a bearer token is masked in every line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

# Fields bound with log_context() (job_id, shard_id, dataset_id, ...).
_fields: ContextVar[Mapping[str, str] | None] = ContextVar("dlcprune_log_fields", default=None)
# The current request: its id, and the ASGI state dict (where auth leaves the tenant id).
_request_id: ContextVar[str | None] = ContextVar("dlcprune_request_id", default=None)
_request_state: ContextVar[MutableMapping[str, Any] | None] = ContextVar(
    "dlcprune_request_state", default=None
)

# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName", "color_message"}
)
# Context fields shown first, in this order, when known.
_CONTEXT_KEYS = ("request_id", "job_id", "tenant_id")

# API keys (dlc_<prefix>_<secret>) and whatever follows "Bearer" never reach a log line.
_SECRETS = (
    (re.compile(r"\b(dlc_[0-9A-Za-z]{1,16}_)[A-Za-z0-9_\-]{4,}"), r"\1***"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1***"),
    (re.compile(r"(?i)(x-api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"), r"\1***"),
)


def redact(text: str) -> str:
    """``text`` with API keys and bearer tokens masked."""
    if "dlc_" not in text and "earer" not in text and "api-key" not in text.lower():
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


# Context ---------------------------------------------------------------------------------------


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind ``fields`` (``job_id=...``) to every record logged inside the block, in this thread
    or task and in what it starts with a copy of the context."""
    bound = {k: str(v) for k, v in fields.items() if v is not None}
    token = _fields.set({**(_fields.get() or {}), **bound})
    try:
        yield
    finally:
        _fields.reset(token)


@contextmanager
def request_context(request_id: str, state: MutableMapping[str, Any] | None) -> Iterator[None]:
    """Bind a request's id (and its state, for the tenant id) to the records it logs."""
    id_token = _request_id.set(request_id)
    state_token = _request_state.set(state)
    try:
        yield
    finally:
        _request_state.reset(state_token)
        _request_id.reset(id_token)


def current_context() -> dict[str, str]:
    """The ids known in this context: request_id, tenant_id, job_id, ..."""
    out: dict[str, str] = {}
    request_id = _request_id.get()
    if request_id:
        out["request_id"] = request_id
    state = _request_state.get()
    if state is not None and state.get("tenant_id") is not None:
        out["tenant_id"] = str(state["tenant_id"])
    out.update(_fields.get() or {})
    return out


class ContextFilter(logging.Filter):
    """Copies the context's ids onto each record (``extra=`` given to the call wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current_context().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


# Formatters ------------------------------------------------------------------------------------


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp (UTC), level, logger, message, the context ids,
    the record's extra fields, and ``exception`` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = str(value)
        for key, value in record.__dict__.items():
            if key in _STANDARD or key in out or key.startswith("_"):
                continue
            out[key] = _jsonable(value)
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return redact(json.dumps(out, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """``time level logger [ids] message`` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(ids)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = [
            f"{key}={getattr(record, key)}"
            for key in (*_CONTEXT_KEYS, "shard_id", "dataset_id")
            if getattr(record, key, None) is not None
        ]
        record.ids = f" [{' '.join(ids)}]" if ids else ""
        try:
            return redact(super().format(record))
        finally:
            del record.ids


# Setup -----------------------------------------------------------------------------------------


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure`` installs (recognised, and replaced, when it runs again)."""


def log_format(stream: IO[str] | None = None) -> str:
    """``DLCPRUNE_LOG_FORMAT`` (json or text); by default json unless ``stream`` is a terminal."""
    chosen = os.environ.get("DLCPRUNE_LOG_FORMAT", "").strip().lower()
    if chosen in ("json", "text"):
        return chosen
    stream = stream or sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def make_formatter(fmt: str) -> logging.Formatter:
    return TextFormatter() if fmt == "text" else JsonFormatter()


def configure(
    level: str | int | None = None,
    fmt: str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every log record through one handler on the root logger, as JSON lines or text.

    Safe to call again (the previous handler is replaced). Handlers that others installed on the
    root logger (a test runner's) are left in place. uvicorn's loggers propagate to the root, and
    its access log is turned off: ``dlcprune.access`` lines replace it. Python warnings are
    logged (``py.warnings``) instead of printed.
    """
    if level is None:
        from app.config import get_settings

        level = get_settings().log_level
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    stream = stream or sys.stderr
    handler = _Handler(stream)
    handler.setFormatter(make_formatter(fmt or log_format(stream)))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    access.disabled = True
    # Python warnings (a library's deprecation notice) become records too: every line is JSON.
    logging.captureWarnings(True)
    return handler


__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "configure",
    "current_context",
    "log_context",
    "log_format",
    "redact",
    "request_context",
]
