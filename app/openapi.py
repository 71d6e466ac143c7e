"""The OpenAPI document, as clients see the API: every error is a ``Problem``.

FastAPI documents its own 422 body (``HTTPValidationError``); this service answers every error
with an RFC 9457 problem document (``application/problem+json``, :mod:`app.errors`), so the
document says so, for every status a route can answer, and declares the two ways to send an API
key.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field


class FieldError(BaseModel):
    loc: list[str] = Field(description="where: the body's field path, or query/path/header")
    msg: str
    type: str = Field(description="pydantic's error type (int_type, greater_than, ...)")


class ProblemDetails(BaseModel, extra="allow"):
    errors: list[FieldError] | None = Field(
        default=None, description="for validation_error: each field that failed"
    )


class Problem(BaseModel):
    """An RFC 9457 problem document with the service's stable ``code``."""

    type: str = Field(description="urn:dlcprune:problem:<code>")
    title: str = Field(description="a short summary of the code")
    status: int = Field(description="the HTTP status")
    detail: str = Field(description="for a person: what is wrong, naming the field or file")
    instance: str | None = Field(default=None, description="the request's path")
    code: str = Field(description="stable, machine-readable: not_found, validation_error, ...")
    request_id: str | None = Field(default=None, description="as in X-Request-ID")
    details: ProblemDetails | None = None


_DESCRIPTIONS = {
    "400": "malformed request (body not JSON, bad multipart, bad header)",
    "401": "missing, wrong or revoked API key",
    "404": "no such resource for this tenant",
    "405": "method not allowed",
    "409": "the resource is not in a state that allows this",
    "413": "request body over the size limit",
    "415": "unsupported content type",
    "422": "invalid parameters or data",
    "429": "a per-tenant limit was reached; retry after Retry-After seconds",
    "503": "a dependency (database, broker, blob store) is down",
}

# Errors any /v1 route can answer (auth, body limits, unknown ids, bad parameters).
_COMMON = ("400", "401", "404", "413", "422")


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _integer_bounds(node: Any) -> None:
    """Bounds of integers as integers: FastAPI's document model holds them as floats, and
    9.223372036854776e+18 is not 2**63 - 1 (a generator would refuse the largest valid seed)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for name in _BOUNDS:
                value = node.get(name)
                if isinstance(value, float) and value.is_integer():
                    node[name] = _exact(value)
        for child in node.values():
            _integer_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _integer_bounds(child)


def _exact(value: float) -> int:
    # A float near 2**63 stands for the int64 limit the code wrote (2**63 - 1).
    as_int = int(value)
    return as_int - 1 if as_int in (2**63, 2**31 * 2**32) else as_int


def install_openapi(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schemas["Problem"].pop("$defs", {}).items():
            schemas[name] = sub
        error_ref = {"$ref": "#/components/schemas/Problem"}
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        for path, item in schema.get("paths", {}).items():
            for op in item.values():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                responses = op["responses"]
                codes = set(responses)
                if path.startswith("/v1/"):
                    codes |= set(_COMMON)
                    op["security"] = [{"bearer": []}, {"apiKey": []}, {}]
                for code in sorted(codes):
                    if not code.startswith(("4", "5")):
                        continue
                    entry = responses.setdefault(code, {})
                    entry["description"] = entry.get("description") or _DESCRIPTIONS.get(
                        code, "error"
                    )
                    if entry["description"] == "Validation Error":
                        entry["description"] = _DESCRIPTIONS["422"]
                    entry["content"] = {"application/problem+json": {"schema": error_ref}}
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        _integer_bounds(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]


def render() -> str:
    """The service's OpenAPI document as committed in ``docs/openapi.json`` (sorted keys)."""
    import json

    from app.main import app

    return json.dumps(app.openapi(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m app.openapi docs/openapi.json
    import sys

    text = render()
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
