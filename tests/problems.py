"""How a test reads an error answer, in one place: an RFC 9457 problem document
(``application/problem+json``: type, title, status, detail, instance, and the stable ``code``).
Tests assert errors through ``problem(resp)``, not the raw body."""

from __future__ import annotations

from typing import Any

PROBLEM_TYPE_PREFIX = "urn:dlcprune:problem:"


def problem(resp: Any) -> dict[str, Any]:
    """``{"code", "message", "details"}`` of an error response (``details`` None when absent),
    after checking that it is a well-formed problem document for this response."""
    assert resp.headers["content-type"].startswith("application/problem+json"), (
        resp.headers.get("content-type"),
        resp.text[:300],
    )
    body = resp.json()
    assert body["status"] == resp.status_code, body
    assert body["type"] == PROBLEM_TYPE_PREFIX + body["code"], body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str), body
    details = body.get("details")
    assert details is None or isinstance(details, dict), body
    return {"code": body["code"], "message": body["detail"], "details": details}


def error_code(resp: Any) -> str:
    return problem(resp)["code"]
