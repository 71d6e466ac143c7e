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
    "403": "the API key lacks the scope this needs (read, write or admin)",
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
_COMMON = ("400", "401", "403", "404", "413", "422", "429")


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


_JSON = ("application/json", "application/problem+json")
_BYTES = "application/octet-stream"


def _binary_content(entry: dict[str, Any]) -> None:
    """Files (images, CSV, zips) declared as what they are: ``type: string, format: binary``
    (a generator drops a media type without a schema), and no empty JSON beside them (a
    generator would call ``.json()`` on a zip)."""
    content = entry.get("content")
    if not content:
        return
    files = [m for m in content if m not in _JSON]
    for media in files:
        if media.startswith("text/"):
            # Text (CSV, SVG as text/*): a string of UTF-8, which generators read as text.
            content[media]["schema"] = {"type": "string"}
        elif not content[media].get("schema"):
            content[media]["schema"] = {"type": "string", "format": "binary"}
    if files and not content.get("application/json", {"schema": True}).get("schema"):
        content.pop("application/json")
    # Generators know a few media types (JSON, text/*, application/octet-stream): a file of
    # another type (image/png, application/jsonl, a zip) is declared as bytes too, so a
    # generated client reads it as bytes instead of dropping the operation's answer.
    if files and not any(m.startswith("text/") or m == _BYTES for m in files):
        content[_BYTES] = {"schema": {"type": "string", "format": "binary"}}


# OpenAPI links: where a created resource's id goes next (generators and stateful testers follow
# them). (operation, status) -> {link name: (target operation, parameter, where the id is)}.
_ID = "$response.body#/id"
_LINKS: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
    ("create_dataset", "201"): {
        "GetDataset": ("get_dataset", "dataset_id"),
        "ListDatasetJobs": ("list_jobs", "dataset_id"),
        "DeleteDataset": ("delete_dataset", "dataset_id"),
    },
    ("create_reference", "201"): {
        "GetDataset": ("get_dataset", "dataset_id"),
        "DeleteDataset": ("delete_dataset", "dataset_id"),
    },
    ("create_job", "202"): {
        "GetJob": ("get_job", "job_id"),
        "CancelJob": ("cancel_job", "job_id"),
        "CreateSelection": ("create_selection", "job_id"),
        "ListSelections": ("list_selections", "job_id"),
        "GetScores": ("get_scores", "job_id"),
        "DeleteJob": ("delete_job", "job_id"),
    },
    ("create_selection", "201"): {
        "GetSelection": ("get_selection", "selection_id"),
        "GetItems": ("get_items", "selection_id"),
        "GetItemsCsv": ("get_items_csv", "selection_id"),
        "GetExport": ("get_export", "selection_id"),
        "DeleteSelection": ("delete_selection", "selection_id"),
    },
    ("create_webhook", "201"): {
        "GetWebhook": ("get_webhook", "webhook_id"),
        "ListDeliveries": ("list_deliveries", "webhook_id"),
        "DeleteWebhook": ("delete_webhook", "webhook_id"),
    },
    ("upload_weights", "201"): {
        "GetWeights": ("get_weights", "weights_id"),
        "DeleteWeights": ("delete_weights", "weights_id"),
    },
    ("create_key", "201"): {
        "GetKey": ("get_key", "key_id"),
        "RevokeKey": ("revoke_key", "key_id"),
    },
}


def _links(schema: dict[str, Any]) -> None:
    operations = {
        op.get("operationId"): op
        for item in schema.get("paths", {}).values()
        for op in item.values()
        if isinstance(op, dict)
    }
    for (source, status), links in _LINKS.items():
        op = operations.get(source)
        if op is None or status not in op.get("responses", {}):
            continue
        op["responses"][status]["links"] = {
            name: {"operationId": target, "parameters": {param: _ID}}
            for name, (target, param) in links.items()
            if target in operations
        }


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
                    # A key is required (the embedded default with auth off lets requests
                    # without one through; a wrong one is refused there too).
                    op["security"] = [{"bearer": []}, {"apiKey": []}]
                for entry in responses.values():
                    _binary_content(entry)
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
        _links(schema)
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
