"""The client's retries against a real HTTP server on loopback that answers what it is told:
repeatable calls are sent again on no answer or 429/502/503/504 (with backoff, honouring
Retry-After), others never; the async client makes the same calls; ``verify_webhook`` accepts
what the service signs and refuses anything else."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.webhooks.delivery import new_secret, signed_headers
from dlcprune.client import (
    AsyncClient,
    Client,
    DlcpruneError,
    WebhookInvalid,
    verify_webhook,
)

JOB = {
    "id": "5f1d8a4e-2b1c-4f7e-8a9b-0c1d2e3f4a5b",
    "dataset_id": "9b0c3b8e-3d0c-4c55-9a53-5f4c3d2a1b10",
    "status": "queued",
    "progress": {"done": 0, "total": 0, "fraction": 0.0, "stage": "queued"},
}


class Script:
    """Statuses to answer, in order, per "METHOD path"; then 200 with ``JOB``."""

    def __init__(self) -> None:
        self.plan: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.seen: list[tuple[str, dict[str, str], float]] = []

    def answer(self, key: str) -> tuple[int, dict[str, str]]:
        queue = self.plan.get(key) or []
        return queue.pop(0) if queue else (200, {})


@contextmanager
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            key = f"{self.command} {self.path.split('?')[0]}"
            script.seen.append((key, dict(self.headers.items()), time.monotonic()))
            status, headers = script.answer(key)
            body = json.dumps(JOB if status == 200 else {"error": {"code": "x", "message": "no"}})
            self.send_response(status)
            for name, value in {"content-type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        do_GET = do_POST = do_DELETE = _any

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def _count(script: Script, key: str) -> int:
    return sum(1 for k, _, _ in script.seen if k == key)


def test_reads_are_retried_until_they_succeed() -> None:
    with server() as (url, script), Client(url, retries=3, backoff=0.01) as client:
        script.plan["GET /v1/jobs/j1"] = [(503, {}), (502, {}), (504, {})]
        assert client.job("j1").id == JOB["id"]
        assert _count(script, "GET /v1/jobs/j1") == 4
        script.plan["GET /v1/jobs/j2"] = [(503, {})] * 5
        with pytest.raises(DlcpruneError) as err:
            client.job("j2")
        assert err.value.status == 503 and _count(script, "GET /v1/jobs/j2") == 4
        script.plan["GET /v1/jobs/j3"] = [(404, {})]
        with pytest.raises(DlcpruneError):
            client.job("j3")
        assert _count(script, "GET /v1/jobs/j3") == 1  # an answer that will not change


def test_posts_are_retried_only_with_an_idempotency_key() -> None:
    with server() as (url, script), Client(url, retries=3, backoff=0.01) as client:
        script.plan["POST /v1/webhooks"] = [(503, {})]
        with pytest.raises(DlcpruneError):
            client.create_webhook("https://example.com/h", ["job.failed"])
        assert _count(script, "POST /v1/webhooks") == 1
        script.plan["POST /v1/jobs"] = [(502, {}), (503, {})]
        client.start_job("9b0c3b8e-3d0c-4c55-9a53-5f4c3d2a1b10")
        sent = [h for k, h, _ in script.seen if k == "POST /v1/jobs"]
        assert len(sent) == 3
        keys = {h["Idempotency-Key"] for h in sent}
        assert len(keys) == 1 and keys.pop().startswith("client-")  # one key, every try


def test_retry_after_is_honoured_and_retries_can_be_off() -> None:
    with server() as (url, script):
        with Client(url, retries=2, backoff=0.01, max_backoff=5) as client:
            script.plan["GET /v1/jobs/j"] = [(429, {"retry-after": "0.4"})]
            client.job("j")
            first, second = [t for k, _, t in script.seen if k == "GET /v1/jobs/j"]
            assert second - first >= 0.4
        with Client(url, retries=0) as client:
            script.plan["GET /v1/jobs/k"] = [(503, {})]
            with pytest.raises(DlcpruneError):
                client.job("k")
            assert _count(script, "GET /v1/jobs/k") == 1
    with pytest.raises(ValueError):
        Client(url, retries=-1)


def test_no_answer_is_retried_then_reported() -> None:
    from dlcprune.devserver import free_port

    start = time.monotonic()
    with (
        Client(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.2) as client,
        pytest.raises(DlcpruneError) as err,
    ):
        client.job("j")
    assert err.value.status is None and err.value.code == "connection_error"
    assert time.monotonic() - start >= 0.2 + 0.4  # two waits: 0.2 s, then 0.4 s (+ jitter)


def test_the_async_client_makes_the_same_calls() -> None:
    async def main(url: str) -> list:
        async with AsyncClient(url, retries=2, backoff=0.01) as client:
            return await asyncio.gather(client.job("a"), client.job("b"), client.jobs(limit=1))

    with server() as (url, script):
        script.plan["GET /v1/jobs/a"] = [(503, {})]
        a, b, _listed = asyncio.run(main(url))
    assert a.id == b.id == JOB["id"]
    assert _count(script, "GET /v1/jobs/a") == 2


def test_verify_webhook_accepts_the_services_signature_and_nothing_else() -> None:
    secret = new_secret()
    body = json.dumps({"type": "job.succeeded", "timestamp": "2026-12-01T00:00:00Z", "data": JOB})
    now = datetime.now(UTC)
    headers = signed_headers(secret, "msg-1", now, body)
    event = verify_webhook(body.encode(), headers, secret)
    assert (event.id, event.type, event.data["id"]) == ("msg-1", "job.succeeded", JOB["id"])
    capitalised = {k.title(): v for k, v in headers.items()}
    assert verify_webhook(body, capitalised, secret).type == "job.succeeded"
    with pytest.raises(WebhookInvalid):
        verify_webhook(body.replace("succeeded", "failed"), headers, secret)
    with pytest.raises(WebhookInvalid):
        verify_webhook(body, headers, new_secret())
    with pytest.raises(WebhookInvalid):
        verify_webhook(body, {k: v for k, v in headers.items() if k != "webhook-id"}, secret)
    old = signed_headers(secret, "msg-1", now - timedelta(minutes=10), body)
    with pytest.raises(WebhookInvalid, match="too old"):
        verify_webhook(body, old, secret)
    not_event = "[1, 2]"
    with pytest.raises(WebhookInvalid, match="not a webhook event"):
        verify_webhook(not_event, signed_headers(secret, "m", now, not_event), secret)
