"""Webhooks end to end, in real processes on the embedded default (SQLite, no broker: the
embedded worker indexes, scores and sends): a receiver on loopback that answers 500 twice, then
200, gets each event, signed so the standardwebhooks library verifies it, carrying the resource
as the API answers it; and an event whose receiver is down when the service stops is delivered
by the restarted service once the receiver is back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from dlcprune.devserver import clean_env, serve
from tests.service.data import write_image_zip
from tests.service.receiver import Receiver, receiver

pytestmark = pytest.mark.slow

FAST = {"image_size": 32, "levels": 2}


def _env(root: Path) -> dict[str, str]:
    return clean_env(
        DLCPRUNE_DATA_DIR=str(root / "var"),
        DLCPRUNE_POLL_SECONDS="0.2",
        DLCPRUNE_HEARTBEAT_SECONDS="0.5",
        DLCPRUNE_INDEX_SYNC_MAX_BYTES="0",  # every upload is indexed by the worker
        DLCPRUNE_WEBHOOK_RETRY_SCHEDULE="0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3",
        DLCPRUNE_WEBHOOK_POLL_SECONDS="0.2",
        DLCPRUNE_WEBHOOK_TIMEOUT_S="3",
    )


def _by_message(rx: Receiver, message: str) -> list:
    return [r for r in rx.requests if r.headers["webhook-id"] == message]


def _wait_delivered(rx: Receiver, events: int, timeout: float) -> dict[str, list]:
    """The requests of each message once ``events`` messages got a 2xx answer."""
    deadline = time.monotonic() + timeout
    while len({r.headers["webhook-id"] for r in rx.delivered()}) < events:
        assert time.monotonic() < deadline, [(r.answered, r.body[:80]) for r in rx.requests]
        time.sleep(0.1)
    out: dict[str, list] = {}
    for r in rx.requests:
        out.setdefault(r.headers["webhook-id"], []).append(r)
    return out


def _paths(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if not k.endswith("url")}


def test_embedded_default_retries_until_the_receiver_recovers(tmp_path: Path) -> None:
    data = write_image_zip(tmp_path / "tiny.zip", per_class=4, seed=5)
    with (
        receiver(script=[500, 500]) as rx,
        serve(env=_env(tmp_path), log=tmp_path / "s.log") as svc,
        httpx.Client(base_url=svc.url, timeout=60) as api,
    ):
        # Loopback targets are allowed on the embedded default.
        made = api.post(
            "/v1/webhooks", json={"url": rx.url, "events": ["dataset.ready", "job.succeeded"]}
        )
        assert made.status_code == 201, made.text
        hook = made.json()
        up = api.post("/v1/datasets", files={"file": ("tiny.zip", data.read_bytes())})
        assert up.status_code == 202, up.text
        assert up.headers["retry-after"] == "2" and up.headers["location"] == up.json()["url"]
        got = _wait_delivered(rx, 1, 60)
        job = api.post("/v1/jobs", json={"dataset_id": up.json()["id"], "params": FAST}).json()
        got = _wait_delivered(rx, 2, 240)
        verifier = Verifier(hook["secret"])
        bodies = {}
        for message, requests in got.items():
            assert [r.answered for r in requests] == [500, 500, 200], message
            for r in requests:
                verifier.verify(r.body, r.headers)
            assert len({r.body for r in requests}) == 1  # the same bytes every time
            body = json.loads(requests[-1].body)
            bodies[body["type"]] = body["data"]
        dataset = api.get(up.headers["location"]).json()
        assert dataset["status"] == "ready"
        assert _paths(bodies["dataset.ready"]) == _paths(dataset)
        final = api.get(job["url"]).json()
        assert final["status"] == "succeeded"
        assert bodies["job.succeeded"] == final  # URLs included: the service's own base
        log = api.get(f"/v1/webhooks/{hook['id']}/deliveries").json()
        assert log["total"] == 2
        for delivery in log["items"]:
            assert delivery["status"] == "delivered"
            assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]


def test_an_event_survives_a_restart_of_the_service(tmp_path: Path) -> None:
    data = write_image_zip(tmp_path / "tiny.zip", per_class=4, seed=6)
    env = _env(tmp_path)
    with receiver(script=[503] * 1000) as rx:
        with (
            serve(env=env, log=tmp_path / "first.log") as svc,
            httpx.Client(base_url=svc.url, timeout=60) as api,
        ):
            hook = api.post("/v1/webhooks", json={"url": rx.url, "events": ["dataset.ready"]})
            hook = hook.json()
            api.post("/v1/datasets", files={"file": ("tiny.zip", data.read_bytes())})
            rx.wait_for(1, 60)  # the event happened; its first attempt failed
        # The service (API and embedded worker) is stopped; the receiver comes back.
        failed_before = len(rx.requests)
        rx.script = []
        with (
            serve(env=env, log=tmp_path / "second.log") as svc,
            httpx.Client(base_url=svc.url, timeout=60) as api,
        ):
            got = _wait_delivered(rx, 1, 60)
            (message,) = got
            assert [r.answered for r in got[message]][:failed_before] == [503] * failed_before
            assert got[message][-1].answered == 200
            Verifier(hook["secret"]).verify(got[message][-1].body, got[message][-1].headers)
            (delivery,) = api.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
            assert delivery["status"] == "delivered" and delivery["id"] == message
            assert delivery["attempts"][-1]["status_code"] == 200
            assert len(delivery["attempts"]) == len(got[message])
