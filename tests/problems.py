"""How a test reads an error answer, in one place: the body's stable ``code``, its human
``message`` and its ``details``, whatever the error document's shape (issue 15 moves it to RFC 9457
problem details). New tests assert errors through ``problem(resp)``, not the raw body."""

from __future__ import annotations

from typing import Any


def problem(resp: Any) -> dict[str, Any]:
    """``{"code", "message", "details"}`` of an error response (``details`` None when absent)."""
    body = resp.json()
    err = body["error"]
    return {"code": err["code"], "message": err["message"], "details": err.get("details")}


def error_code(resp: Any) -> str:
    return problem(resp)["code"]
