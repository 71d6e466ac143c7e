"""The client's errors: what the API answered (its status, code and message), or no answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from dlcprune.client.models import Job

__all__ = ["DlcpruneError", "JobFailed", "WaitTimeout", "error_from"]


class DlcpruneError(Exception):
    """An error answered by the API (``status`` is its HTTP status), or no answer at all
    (``status`` is None; ``code`` is ``connection_error`` or ``timeout``)."""

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        *,
        details: Any = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id
        # Seconds the service asked to wait before trying again (429, 503), when it said.
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r})"
        )


class JobFailed(DlcpruneError):
    """``wait`` saw the job end ``failed`` (code: the job's error code) or ``cancelled``."""

    def __init__(self, job: Job) -> None:
        if job.status == "cancelled":
            code, message = "cancelled", f"job {job.id} was cancelled"
        elif job.error is not None:
            code, message = job.error.code, job.error.message
        else:
            code, message = "job_failed", f"job {job.id} ended {job.status}"
        super().__init__(None, code, message)
        self.job = job


class WaitTimeout(DlcpruneError):
    """``wait`` gave up before the job ended (the job itself goes on)."""

    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(
            None,
            "timeout",
            f"job {job.id} still {job.status} ({job.progress.fraction:.0%}) after {timeout:g} s",
        )
        self.job = job


def error_from(resp: httpx.Response) -> DlcpruneError:
    """The API's RFC 9457 problem document (``code``, ``detail``, ``details``) as an exception
    (any other body too: its text is the message)."""
    code, message, details = f"http_{resp.status_code}", "", None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code = body["code"] or code
        message = str(body.get("detail") or body.get("title") or "")
        details = body.get("details")
    if not message:
        message = resp.text.strip()[:500] or resp.reason_phrase or "error"
    return DlcpruneError(
        resp.status_code,
        code,
        message,
        details=details,
        request_id=resp.headers.get("x-request-id"),
        retry_after=_seconds(resp.headers.get("retry-after")),
    )


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (its HTTP-date form is not used by the service)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
