"""Errors as RFC 9457 problem details (``application/problem+json``), with the right status.

Every error body is one shape::

    {"type": "urn:dlcprune:problem:validation_error", "title": "Validation error",
     "status": 422, "detail": "keep_ratio: Input should be ...", "instance": "/v1/selections",
     "code": "validation_error", "request_id": "...", "details": {"errors": [...]}}

``code`` is the stable, machine-readable name (``type`` is the same name as a URN, so a client may
read either); ``detail`` is for a person and names the field, file or row; ``instance`` is the
request's path; ``details`` is absent or an object: ``errors`` (a list of ``{"loc", "msg",
"type"}``, for validation errors) and, where a route says so, other named members.

Every error a client can cause maps to a 4xx with a stable code; an unexpected exception answers
500 ``internal_error`` without details (they go to the log with the request id).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("dlcprune.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:dlcprune:problem:"


def problem_details(details: Any) -> dict[str, Any] | None:
    """The one shape of ``details``: None, or an object (a bare list is the ``errors`` list)."""
    if details is None:
        return None
    if isinstance(details, dict):
        return details
    if isinstance(details, (list, tuple)):
        return {"errors": list(details)}
    return {"value": details}


class APIError(Exception):
    """An error answered to the client as it is (as a problem document)."""

    def __init__(
        self, status: int, code: str, message: str, *, details: Any = None, headers: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = problem_details(details)
        self.headers = headers


def not_found(what: str, ident: object) -> APIError:
    return APIError(404, "not_found", f"{what} {ident} not found")


def conflict(code: str, message: str, details: Any = None) -> APIError:
    return APIError(409, code, message, details=details)


def unprocessable(code: str, message: str, details: Any = None) -> APIError:
    return APIError(422, code, message, details=details)


def too_many(code: str, message: str, retry_after: int, details: Any = None) -> APIError:
    """429 with ``Retry-After`` (seconds): a per-tenant limit was reached."""
    return APIError(
        429,
        code,
        message,
        details=details,
        headers={"Retry-After": str(max(1, int(retry_after)))},
    )


def title_of(code: str) -> str:
    return code.replace("_", " ").capitalize()


def problem_document(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    *,
    instance: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The RFC 9457 body of an error (see the module's docstring for its members)."""
    doc: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title_of(code),
        "status": status,
        "detail": message,
        "code": code,
    }
    if instance:
        doc["instance"] = instance
    if request_id:
        doc["request_id"] = request_id
    shaped = problem_details(details)
    if shaped is not None:
        doc["details"] = shaped
    return doc


def error_body(code: str, message: str, details: Any = None, *, status: int = 422) -> dict:
    """The problem document of an error (kept for code written before problem details: pass
    the response's ``status``; new code raises ``APIError`` or calls ``problem_response``)."""
    return problem_document(status, code, message, details)


def problem_response(
    request: Request | None,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Any = None,
) -> JSONResponse:
    """A problem document as a response (``application/problem+json``)."""
    instance = request.url.path if request is not None else None
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    return JSONResponse(
        problem_document(status, code, message, details, instance=instance, request_id=request_id),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


def field_errors(errors: Any) -> list[dict[str, Any]]:
    """Pydantic's errors as the ``details.errors`` list: ``{"loc", "msg", "type"}`` each."""
    out = []
    for err in errors:
        out.append(
            {
                "loc": [str(p) for p in err.get("loc", ()) if p != "body"],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


def validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def validation_error(errors: Any) -> APIError:
    """422 ``validation_error`` naming each field that failed, ``details.errors`` the list."""
    errors = list(errors)
    if any(e.get("type") == "json_invalid" for e in errors):
        return APIError(400, "malformed_json", "the request body is not valid JSON")
    return APIError(
        422, "validation_error", validation_message(errors), details=field_errors(errors)
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.code, exc.message, exc.details, exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(exc.errors())
        return problem_response(request, err.status, err.code, err.message, err.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return problem_response(request, exc.status_code, code, message, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception(
            "unhandled error",
            extra={"request_id": getattr(request.state, "request_id", None)},
        )
        request_id = getattr(request.state, "request_id", None)
        return problem_response(
            request,
            500,
            "internal_error",
            "internal server error; the request id is in the logs",
            headers={"X-Request-ID": request_id} if request_id else None,
        )


_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette's 405 names only the first
    route's), HEAD beside GET, for the ``Allow`` header."""
    from starlette.routing import Match

    methods: set[str] = set()
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        for route in request.app.router.routes:
            try:
                match, _ = route.matches(probe)
            except Exception:
                continue
            if match is Match.FULL:
                methods.add(method)
                break
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))
