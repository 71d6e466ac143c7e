"""The FastAPI application: routers, error handlers, request ids, body limits, access logs and
metrics.

``create_app()`` builds it; ``app`` is the instance uvicorn serves (``app.main:app``; building it
that way also sets up the JSON logs of ``app.logs``). On start the database is migrated to the
latest schema. ``GET /metrics`` serves Prometheus metrics (``app.metrics``; no key, not in the
OpenAPI document).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import db, logs, metrics
from app.config import Settings, get_settings
from app.dashboard import STATIC_PATH, static_files
from app.dashboard.router import router as dashboard_router
from app.datasets.router import router as datasets_router
from app.errors import PROBLEM_MEDIA_TYPE, install_error_handlers, problem_document
from app.health.router import router as health_router
from app.jobs.router import router as jobs_router
from app.openapi import install_openapi
from app.selections.router import router as selections_router
from app.webhooks.router import router as webhooks_router
from app.weights.router import router as weights_router

log = logging.getLogger("dlcprune.api")
access_log = logging.getLogger("dlcprune.access")

# Probes and scrapes are logged at DEBUG: they would drown the rest.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/metrics/backlog"})
UNMATCHED_ROUTE = "<unmatched>"

DESCRIPTION = """
Training-free dataset pruning. Register a dataset, start a **DLC** scoring job (a pre-trained
model's weights are masked step by step and each sample's loss is averaged along the way: low =
easy), poll it, then request subsets at any ratio with **FlexRand** (randomised easy/hard
under-sampling) and download them. Scores are computed once and reused for every ratio.

Errors are RFC 9457 problem details (`application/problem+json`): `type`, `title`, `status`,
`detail`, `instance`, plus a stable `code` and, for some, a `details` object (`details.errors`
lists the fields that failed validation). Send the API key as
`Authorization: Bearer <key>` (or `X-API-Key`).
"""

# Upload routes stream their bodies and enforce their own (larger) limit.
_UPLOAD_ROUTES = {("POST", "/v1/datasets"), ("POST", "/v1/weights")}


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Answer 413 once a request body passes the limit, counting bytes as they arrive (a
    Content-Length above the limit is refused before reading)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in _UPLOAD_ROUTES:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        body = json.dumps(
            problem_document(
                413,
                "payload_too_large",
                f"the request body is larger than {self.limit} bytes",
                instance=scope.get("path"),
                request_id=(scope.get("state") or {}).get("request_id"),
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/jobs/{job_id}``), never the raw path, so metric
    labels stay few; ``<unmatched>`` for paths no route serves."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path or "/"
    # Answered before routing (a body over the limit): match the routes here.
    router = getattr(scope.get("app"), "router", None)
    for candidate in getattr(router, "routes", ()):
        try:
            match, _ = candidate.matches(scope)
        except Exception:
            continue
        if match is Match.FULL:
            return str(getattr(candidate, "path", UNMATCHED_ROUTE)) or "/"
    return UNMATCHED_ROUTE


class RequestIdMiddleware:
    """Every response carries ``X-Request-ID`` (the client's, or a new UUID); every log record
    written while the request runs carries it (and the tenant once the key is checked). When the
    response is sent, one ``dlcprune.access`` line (method, path, status, duration) is logged and
    the request is counted in the HTTP metrics under its route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if 0 < len(given) <= 100 and given.isprintable() else str(uuid.uuid4())
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        with logs.request_context(request_id, state):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                self._record(scope, status, time.perf_counter() - started)

    @staticmethod
    def _record(scope: Scope, status: int, seconds: float) -> None:
        method = scope.get("method", "")
        path = scope.get("path", "")
        route = route_template(scope)
        try:
            metrics.observe_request(method, route, status, seconds)
        except Exception:  # metrics must never break a response
            log.debug("could not record request metrics", exc_info=True)
        duration_ms = round(seconds * 1000, 1)
        client = scope.get("client")
        access_log.log(
            logging.DEBUG if path in _QUIET_PATHS else logging.INFO,
            "%s %s %d %.1f ms",
            method,
            path,
            status,
            duration_ms,
            extra={
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": duration_ms,
                "client": client[0] if client else None,
            },
        )


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if migrate and settings.migrate_on_start:
            db.migrate(settings)
        log.info("dlcprune API ready")
        yield

    app = FastAPI(
        title="dlcprune",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "datasets", "description": "register and index data"},
            {"name": "jobs", "description": "score a dataset (long work, polled)"},
            {"name": "selections", "description": "pruned subsets from cached scores"},
            {"name": "weights", "description": "weights files for user-chosen backbones"},
            {"name": "webhooks", "description": "signed pushes when datasets and jobs change"},
            {"name": "health", "description": "liveness and readiness"},
        ],
    )
    install_error_handlers(app)
    install_openapi(app)
    for router in (
        health_router,
        datasets_router,
        jobs_router,
        selections_router,
        weights_router,
        webhooks_router,
        dashboard_router,
    ):
        app.include_router(router)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus metrics in the text format (no key: scrapers are not tenants)."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/metrics/backlog", include_in_schema=False)
    def backlog() -> dict[str, int]:
        """Work queued or running per kind of work, as JSON: what an autoscaler sizes each
        kind of worker by (deploy/kubernetes: KEDA's metrics-api scaler reads ``gpu``)."""
        with db.session_factory()() as session:
            return metrics.backlog(session)

    app.mount(STATIC_PATH, static_files(), name="dashboard-static")
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app


def __getattr__(name: str) -> Any:
    # ``app.main:app`` for uvicorn, built on first use so importing this module has no effects;
    # the process serving it logs JSON lines (``app.logs``).
    if name == "app":
        logs.configure()
        instance = create_app()
        globals()["app"] = instance
        return instance
    raise AttributeError(name)
