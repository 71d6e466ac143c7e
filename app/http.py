"""Answers shared by the resources: 202 Accepted with ``Location`` and ``Retry-After``, and
JSON with an ``ETag`` that answers 304 to a matching ``If-None-Match`` (so pollers that send
the tag back get an empty answer until the resource changes)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from app.config import Settings

# For the OpenAPI document: the headers of a 202 answer and of a tagged 200.
ACCEPTED_HEADERS = {
    "Location": {"description": "where to poll", "schema": {"type": "string"}},
    "Retry-After": {
        "description": "seconds before polling is worth it",
        "schema": {"type": "integer"},
    },
}
ETAG_HEADERS = {
    "ETag": {
        "description": "send it back in If-None-Match: 304 while unchanged",
        "schema": {"type": "string"},
    }
}


# The responses of a GET that answers conditionally (``conditional_json``).
CONDITIONAL_RESPONSES: dict[int | str, dict] = {
    200: {"headers": ETAG_HEADERS},
    304: {"description": "not modified since the ETag sent", "headers": ETAG_HEADERS},
}


def accepted(
    body: dict[str, Any], location: str, settings: Settings, headers: dict[str, str] | None = None
) -> JSONResponse:
    """202: the work goes on; poll ``location``, at the earliest after ``Retry-After``."""
    return JSONResponse(
        body,
        status_code=202,
        headers={
            "Location": location,
            "Retry-After": str(settings.retry_after_s),
            **(headers or {}),
        },
    )


def etag_of(body: dict[str, Any]) -> str:
    """A strong tag of the JSON document (its canonical bytes)."""
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return f'"{hashlib.sha256(raw).hexdigest()[:32]}"'


def _matches(header: str, tag: str) -> bool:
    if header.strip() == "*":
        return True
    # Weak comparison (RFC 9110 13.1.2): W/ prefixes do not matter for If-None-Match.
    given = {t.strip().removeprefix("W/") for t in header.split(",")}
    return tag in given


def conditional_json(request: Request, body: dict[str, Any]) -> Response:
    """200 with the body and its ``ETag``, or 304 without a body when the client's
    ``If-None-Match`` names the same tag."""
    tag = etag_of(body)
    headers = {"ETag": tag, "Cache-Control": "private, no-cache"}
    given = request.headers.get("if-none-match")
    if given is not None and _matches(given, tag):
        return Response(status_code=304, headers=headers)
    return JSONResponse(body, headers=headers)
