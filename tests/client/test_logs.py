"""Structured logs: JSON lines with the request id (the one in the X-Request-ID header), the
tenant, and the job id in every record a worker writes for a job; API keys never appear."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from app import logs
from tests.client.conftest import FAST, Embedded
from tests.conftest import Api


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """``app.logs.configure`` writing JSON lines into a buffer; logging restored afterwards."""
    root = logging.getLogger()
    saved_level = root.level
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }
    access_disabled = logging.getLogger("uvicorn.access").disabled
    stream = io.StringIO()
    handler = logs.configure("INFO", fmt="json", stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, (handlers, propagate) in saved.items():
            logging.getLogger(name).handlers = handlers
            logging.getLogger(name).propagate = propagate
        logging.getLogger("uvicorn.access").disabled = access_disabled
        logging.captureWarnings(False)


def records(stream: io.StringIO) -> list[dict]:
    lines = [line for line in stream.getvalue().splitlines() if line]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    for rec in parsed:
        assert {"timestamp", "level", "logger", "message"} <= set(rec), rec
        assert rec["timestamp"].endswith("Z")
    return parsed


def test_access_lines_carry_the_request_id_of_the_response(  # type: ignore[no-untyped-def]
    app_client, key_a: str, json_log: io.StringIO
) -> None:
    api = Api(app_client, key_a)
    given = f"req-{uuid.uuid4().hex[:8]}"
    chosen = api.get("/v1/datasets", headers={"X-Request-ID": given})
    assert chosen.status_code == 200 and chosen.headers["x-request-id"] == given
    fresh = api.get(f"/v1/jobs/{uuid.uuid4()}")
    assert fresh.status_code == 404
    fresh_id = fresh.headers["x-request-id"]
    assert uuid.UUID(fresh_id)
    anonymous = app_client.get("/v1/datasets")
    assert anonymous.status_code == 401

    parsed = records(json_log)
    access = {r["request_id"]: r for r in parsed if r["logger"] == "dlcprune.access"}
    line = access[given]
    assert (line["method"], line["path"], line["route"], line["status"]) == (
        "GET",
        "/v1/datasets",
        "/v1/datasets",
        200,
    )
    assert isinstance(line["duration_ms"], float) and line["level"] == "INFO"
    assert uuid.UUID(line["tenant_id"])  # known once the key was checked
    assert line["message"].startswith("GET /v1/datasets 200 ")
    missing = access[fresh_id]
    assert missing["status"] == 404 and missing["route"] == "/v1/jobs/{job_id}"
    unauthorized = access[anonymous.headers["x-request-id"]]
    assert unauthorized["status"] == 401 and "tenant_id" not in unauthorized
    assert key_a not in json_log.getvalue() and key_a[-20:] not in json_log.getvalue()


def test_worker_records_carry_the_job_id(  # type: ignore[no-untyped-def]
    app_client, key_a: str, colours, json_log: io.StringIO
) -> None:
    """The Celery task wrapper binds the job id; so does ``log_context`` around ``run_job``.
    (Level counts no other test of tenant A uses: the jobs must run, not come from the cache.)"""
    from worker.celery_app import run_job_task
    from worker.runner import run_job

    api = Api(app_client, key_a)
    ds = api.upload(colours).json()
    first = api.post(
        "/v1/jobs", json={"dataset_id": ds["id"], "params": {**FAST, "levels": 6}}
    ).json()
    second = api.post(
        "/v1/jobs", json={"dataset_id": ds["id"], "params": {**FAST, "levels": 7}}
    ).json()
    assert run_job_task(first["id"]) == "succeeded"
    with logs.log_context(job_id=second["id"]):
        assert run_job(second["id"]) == "succeeded"
    logging.getLogger("dlcprune.worker").info("outside any job")

    parsed = records(json_log)
    for job_id in (first["id"], second["id"]):
        mine = [r for r in parsed if r["logger"] == "dlcprune.worker" and job_id in r["message"]]
        assert len(mine) >= 2, mine  # "scoring dataset ..." and the final status
        assert all(r["job_id"] == job_id for r in mine)
    outside = next(r for r in parsed if r["message"] == "outside any job")
    assert "job_id" not in outside


def test_formats_context_exceptions_and_secrets(json_log: io.StringIO) -> None:
    log = logging.getLogger("dlcprune.test")
    key = "dlc_0123abcd_" + "s3cr3t" * 7
    with logs.log_context(job_id="j-1"), logs.request_context("r-1", {"tenant_id": "t-1"}):
        log.info("got %s", key)
        log.warning("header Authorization: Bearer %s", key, extra={"attempt": 2})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    logging.getLogger("uvicorn.error").info("from uvicorn")
    logging.getLogger("uvicorn.access").info("never shown")
    parsed = records(json_log)
    text = json_log.getvalue()
    assert "s3cr3t" not in text and "dlc_0123abcd_***" in text
    mine = [r for r in parsed if r["logger"] == "dlcprune.test"]
    assert all(
        (r["job_id"], r["request_id"], r["tenant_id"]) == ("j-1", "r-1", "t-1") for r in mine
    )
    assert mine[1]["attempt"] == 2 and mine[1]["level"] == "WARNING"
    assert "Traceback" in mine[2]["exception"] and "ValueError: boom" in mine[2]["exception"]
    assert any(r["logger"] == "uvicorn.error" and r["message"] == "from uvicorn" for r in parsed)
    assert "never shown" not in text


def test_the_format_follows_the_environment_and_the_terminal(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DLCPRUNE_LOG_FORMAT", raising=False)
    assert logs.log_format(io.StringIO()) == "json"
    assert logs.log_format(_Tty()) == "text"
    monkeypatch.setenv("DLCPRUNE_LOG_FORMAT", "json")
    assert logs.log_format(_Tty()) == "json"
    monkeypatch.setenv("DLCPRUNE_LOG_FORMAT", "text")
    assert logs.log_format(io.StringIO()) == "text"
    record = logging.LogRecord("dlcprune.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.job_id = "j-9"
    line = logs.TextFormatter().format(record)
    assert line.endswith("INFO    dlcprune.x [job_id=j-9] hello you")


@pytest.mark.slow
def test_a_running_service_logs_json_lines_with_ids(embedded: Embedded, colours) -> None:  # type: ignore[no-untyped-def]
    from dlcprune.client import Client

    with Client(embedded.url, api_key=embedded.key) as client:
        ds = client.upload(colours)
        job = client.start_job(ds.id, params={**FAST, "levels": 3})  # not cached: it runs
        client.wait(job.id, poll=0.1, timeout=300)
    given = f"req-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {embedded.key}", "X-Request-ID": given}
    resp = httpx.get(f"{embedded.url}/v1/jobs/{job.id}", headers=headers)
    assert resp.headers["x-request-id"] == given

    deadline = time.monotonic() + 10
    while True:
        parsed = [json.loads(line) for line in embedded.log_lines()]  # every line is JSON
        access = [r for r in parsed if r.get("request_id") == given]
        if access or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert access and access[0]["logger"] == "dlcprune.access" and access[0]["status"] == 200
    assert access[0]["route"] == "/v1/jobs/{job_id}" and access[0]["tenant_id"]
    worker = [r for r in parsed if r["logger"] == "dlcprune.worker" and job.id in r["message"]]
    assert len(worker) >= 2 and all(r.get("job_id") == job.id for r in worker)
    assert any(r["logger"].startswith("uvicorn") for r in parsed)
    text = embedded.log.read_text()
    assert embedded.key not in text and "Traceback" not in text
