"""Where the routes live and what their schema says: the dashboard package serves only its page;
every route the page reads belongs to its resource's router; strategy names, export formats and
selection defaults in the OpenAPI document are the ones of ``dlcprune.names``."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute

from app.dashboard import router as dashboard_router
from app.datasets import router as datasets_router
from app.jobs import router as jobs_router
from app.main import create_app
from app.models import Selection
from app.selections import router as selections_router
from dlcprune import names


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return create_app(migrate=False).openapi()


def _paths(router: APIRouter) -> set[tuple[str, str]]:
    return {
        (route.path, method)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }


def test_the_dashboard_serves_only_its_page() -> None:
    assert _paths(dashboard_router.router) == {("/", "GET")}


@pytest.mark.parametrize(
    ("router", "path", "method"),
    [
        (jobs_router.router, "/v1/jobs/{job_id}/summary", "GET"),
        (jobs_router.router, "/v1/jobs/{job_id}/plots/histogram.{fmt}", "GET"),
        (jobs_router.router, "/v1/jobs/{job_id}/plots/loss-curve.{fmt}", "GET"),
        (selections_router.router, "/v1/jobs/{job_id}/selections/preview", "POST"),
        (selections_router.router, "/v1/jobs/{job_id}/plots/distribution.{fmt}", "GET"),
        (
            selections_router.router,
            "/v1/selections/{selection_id}/plots/distribution.{fmt}",
            "GET",
        ),
        (datasets_router.router, "/v1/datasets/{dataset_id}/samples/{index}", "GET"),
        (datasets_router.router, "/v1/datasets/{dataset_id}/samples/{index}/thumbnail", "GET"),
    ],
)
def test_the_routes_the_page_reads_live_with_their_resource(
    router: APIRouter, path: str, method: str, openapi: dict[str, Any]
) -> None:
    assert (path, method) in _paths(router)
    assert method.lower() in openapi["paths"][path]


def _param(op: dict[str, Any], name: str) -> dict[str, Any]:
    (param,) = [p for p in op["parameters"] if p["name"] == name]
    return param["schema"]


def test_the_schema_says_what_dlcprune_names_says(openapi: dict[str, Any]) -> None:
    create = openapi["components"]["schemas"]["SelectionCreate"]["properties"]
    assert create["strategy"]["enum"] == list(names.SELECTION_STRATEGIES)
    assert create["strategy"]["default"] == names.DEFAULT_STRATEGY
    assert create["split"]["default"] == names.DEFAULT_SPLIT
    assert create["hard_cutoff"]["default"] == names.DEFAULT_HARD_CUTOFF

    plot = openapi["paths"]["/v1/jobs/{job_id}/plots/distribution.{fmt}"]["get"]
    assert _param(plot, "strategy")["enum"] == list(names.SELECTION_STRATEGIES)
    assert _param(plot, "strategy")["default"] == names.DEFAULT_STRATEGY
    assert _param(plot, "split")["default"] == names.DEFAULT_SPLIT

    export = openapi["paths"]["/v1/selections/{selection_id}/export"]["get"]
    assert _param(export, "format")["enum"] == list(names.EXPORT_FORMATS)
    assert _param(export, "format")["default"] == names.DEFAULT_EXPORT_FORMAT

    read = openapi["components"]["schemas"]["SelectionRead"]["properties"]
    assert read["hard_cutoff"]["default"] == names.DEFAULT_HARD_CUTOFF
    column = Selection.__table__.c.hard_cutoff
    assert column.default.arg == names.DEFAULT_HARD_CUTOFF
    assert float(column.server_default.arg) == names.DEFAULT_HARD_CUTOFF
