"""Webhooks through the API on PostgreSQL: registering (the secret once, the SSRF guard, the
events), the outbox written with each state change, sending to a real receiver on loopback
(signatures the standardwebhooks library verifies, retries, the attempt log, replay), and two
senders that never send one delivery twice."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from app.config import Settings, get_settings, reset_settings
from app.webhooks.delivery import deliver_due
from tests.conftest import Api, finish
from tests.problems import error_code, problem
from tests.service.data import write_image_zip
from tests.service.receiver import receiver

FAST = {"image_size": 32, "levels": 2}


@pytest.fixture
def loopback_allowed(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """This process's settings let webhook targets on 127.0.0.0/8 through (the receivers run
    there), as an operator's DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS would."""
    monkeypatch.setenv("DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def sender_settings(**changes: object) -> Settings:
    """This process's settings for calling the sender directly: retries at once by default."""
    update = {"webhook_retry_schedule": [0.0, 0.0, 0.0], "webhook_timeout_s": 5.0, **changes}
    return get_settings().model_copy(update=update)


EVENTS = ["dataset.ready", "dataset.invalid", "job.succeeded", "job.failed", "job.cancelled"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_zip(tmp_path_factory.mktemp("hooks") / "tiny.zip", per_class=4, seed=3)


def _register(api: Api, url: str, events: list[str] = EVENTS) -> dict:
    resp = api.post("/v1/webhooks", json={"url": url, "events": events})
    assert resp.status_code == 201, resp.text
    return resp.json()


def _paths(resource: dict) -> dict:
    """A resource with its absolute URLs cut to their paths (the test client's base differs
    from the public base URL that payloads written outside a request use)."""
    return {k: urlsplit(v).path if k.endswith("url") else v for k, v in resource.items()}


def _deliveries(api: Api, hook: dict, **params: str) -> list[dict]:
    resp = api.get(f"/v1/webhooks/{hook['id']}/deliveries", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


def test_register_shows_the_secret_once_and_only_to_its_tenant(
    api_a: Api, api_b: Api, loopback_allowed: None
) -> None:
    resp = api_a.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["job.succeeded", "job.succeeded"]},
    )
    assert resp.status_code == 201, resp.text
    hook = resp.json()
    assert hook["secret"].startswith("whsec_")
    assert Verifier(hook["secret"])  # a secret the reference library accepts
    assert hook["events"] == ["job.succeeded"]
    assert resp.headers["location"] == hook["location"]
    again = api_a.get(f"/v1/webhooks/{hook['id']}").json()
    assert "secret" not in again and again["url"] == "http://127.0.0.1:9/hook"
    listed = api_a.get("/v1/webhooks").json()["items"]
    assert hook["id"] in [h["id"] for h in listed]
    assert all("secret" not in h for h in listed)
    assert api_b.get(f"/v1/webhooks/{hook['id']}").status_code == 404
    assert api_b.delete(f"/v1/webhooks/{hook['id']}").status_code == 404
    assert api_a.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    assert api_a.get(f"/v1/webhooks/{hook['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code", "names"),
    [
        (
            {"url": "http://127.0.0.1:8000/x", "events": ["job.failed"]},
            422,
            "url_not_allowed",
            "127.0.0.1",
        ),
        (
            {"url": "http://10.1.2.3/x", "events": ["job.failed"]},
            422,
            "url_not_allowed",
            "10.1.2.3",
        ),
        ({"url": "http://[::1]:80/x", "events": ["job.failed"]}, 422, "url_not_allowed", "::1"),
        (
            {"url": "http://169.254.169.254/latest", "events": ["job.failed"]},
            422,
            "url_not_allowed",
            "169.254.169.254",
        ),
        ({"url": "ftp://example.com/x", "events": ["job.failed"]}, 422, "url_not_allowed", "ftp"),
        (
            {"url": "http://u:p@example.com/x", "events": ["job.failed"]},
            422,
            "url_not_allowed",
            "credentials",
        ),
        (
            {"url": "https://example.com/x", "events": ["job.exploded"]},
            422,
            "validation_error",
            "events",
        ),
        ({"url": "https://example.com/x", "events": []}, 422, "validation_error", "events"),
        (
            {"url": "https://example.com/x", "events": ["job.failed"], "x": 1},
            422,
            "validation_error",
            "x",
        ),
    ],
)
def test_bad_targets_and_events_are_refused(
    api_a: Api, body: dict, status: int, code: str, names: str
) -> None:
    """With a broker (not the embedded default) loopback is refused, and so is every private,
    link-local or odd target unless the operator lists its network."""
    resp = api_a.post("/v1/webhooks", json=body)
    assert resp.status_code == status, resp.text
    assert error_code(resp) == code
    assert names in problem(resp)["message"]


def test_a_listed_network_is_let_through(api_a: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS", "10.1.0.0/16")
    reset_settings()
    try:
        ok = api_a.post("/v1/webhooks", json={"url": "http://10.1.2.3/x", "events": ["job.failed"]})
        assert ok.status_code == 201, ok.text
        other = api_a.post(
            "/v1/webhooks", json={"url": "http://10.2.0.1/", "events": ["job.failed"]}
        )
        assert error_code(other) == "url_not_allowed"
        api_a.delete(f"/v1/webhooks/{ok.json()['id']}")
    finally:
        monkeypatch.undo()
        reset_settings()


def test_events_carry_the_resource_signed_and_retried_until_delivered(
    api_a: Api, images: Path, loopback_allowed: None
) -> None:
    """A dataset and a job of the tenant: each state change puts one delivery per subscribed
    endpoint in the outbox; the sender posts it with Standard Webhooks headers; the receiver
    answers 500 twice, then 200, and gets it on the third attempt; each attempt is logged; a
    replay sends the same message again."""

    with receiver(script=[500, 500]) as rx:
        hook = _register(api_a, rx.url)
        only_failed = _register(api_a, rx.url, ["job.failed"])
        ds = api_a.upload(images).json()
        assert ds["status"] == "ready"
        job = api_a.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
        assert finish(job) == "succeeded"
        pending = _deliveries(api_a, hook)
        assert sorted(d["event"] for d in pending) == ["dataset.ready", "job.succeeded"]
        assert all(d["status"] == "pending" and d["attempts"] == [] for d in pending)
        assert _deliveries(api_a, only_failed) == []

        settings = sender_settings()
        for _ in range(3):
            deliver_due(settings)
        sent = [r for r in rx.requests if r.path == "/hook"]
        by_id: dict[str, list] = {}
        for r in sent:
            by_id.setdefault(r.headers["webhook-id"], []).append(r)
        assert len(sent) == 6 and sorted(len(v) for v in by_id.values()) == [3, 3]
        verifier = Verifier(hook["secret"])
        for r in sent:
            verifier.verify(r.body, r.headers)  # raises unless the signature matches
            assert r.headers["content-type"] == "application/json"
        with pytest.raises(Exception, match="signature"):
            verifier.verify(r.body + b" ", r.headers)

        done = {d["event"]: d for d in _deliveries(api_a, hook)}
        assert {d["status"] for d in done.values()} == {"delivered"}
        for delivery in done.values():
            assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
            assert [a["number"] for a in delivery["attempts"]] == [1, 2, 3]
            assert [a["error"] for a in delivery["attempts"]] == ["HTTP 500", "HTTP 500", None]

        # The body is the resource as the API answers it (its URLs on the public base URL).
        body = json.loads(by_id[str(done["job.succeeded"]["id"])][-1].body)
        assert body["type"] == "job.succeeded" and body["timestamp"].endswith("Z")
        current = api_a.get(f"/v1/jobs/{job['id']}").json()
        assert _paths(body["data"]) == _paths(current)
        ready = json.loads(by_id[str(done["dataset.ready"]["id"])][-1].body)["data"]
        assert ready["id"] == ds["id"] and ready["status"] == "ready"
        assert ready["num_samples"] == ds["num_samples"] == 12

        # Replay: 202 with Location and Retry-After; the same webhook-id and body again.
        first = done["job.succeeded"]
        replay = api_a.post(f"/v1/webhooks/{hook['id']}/deliveries/{first['id']}/replay")
        assert replay.status_code == 202, replay.text
        assert replay.headers["location"] == replay.json()["location"]
        assert int(replay.headers["retry-after"]) >= 1
        assert replay.json()["status"] == "pending"
        deliver_due(settings)
        again = rx.requests[-1]
        assert again.headers["webhook-id"] == str(first["id"])
        assert again.body == by_id[str(first["id"])][-1].body
        one = api_a.get(f"/v1/webhooks/{hook['id']}/deliveries/{first['id']}").json()
        assert one["status"] == "delivered" and len(one["attempts"]) == len(first["attempts"]) + 1
        for h in (hook, only_failed):
            api_a.delete(f"/v1/webhooks/{h['id']}")


def test_a_delivery_fails_once_the_schedule_is_used_up(
    api_a: Api, images: Path, loopback_allowed: None
) -> None:
    with receiver(script=[503] * 10) as rx:
        hook = _register(api_a, rx.url, ["dataset.ready"])
        api_a.upload(images, copy=True)
        settings = sender_settings(webhook_retry_schedule=[0.0])
        for _ in range(4):
            deliver_due(settings)
        (only,) = _deliveries(api_a, hook)
        assert only["status"] == "failed" and len(only["attempts"]) == 2
        assert only["last_status_code"] == 503 and only["next_attempt_at"] is None
        assert len(rx.requests) == 2
        failed = _deliveries(api_a, hook, status="failed")
        assert [d["id"] for d in failed] == [only["id"]]
        api_a.delete(f"/v1/webhooks/{hook['id']}")


def test_two_senders_send_each_delivery_once(
    api_a: Api, images: Path, loopback_allowed: None
) -> None:
    with receiver() as rx:
        hook = _register(api_a, rx.url, ["dataset.ready"])
        for _ in range(6):
            api_a.upload(images, copy=True)
        settings = sender_settings()
        threads = [threading.Thread(target=deliver_due, args=(settings,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids = [r.headers["webhook-id"] for r in rx.requests]
        assert len(ids) == 6 and len(set(ids)) == 6
        assert {d["status"] for d in _deliveries(api_a, hook)} == {"delivered"}
        api_a.delete(f"/v1/webhooks/{hook['id']}")


def test_a_cancelled_job_is_an_event_and_a_refused_upload_none(
    api_a: Api, images: Path, tmp_path: Path, loopback_allowed: None
) -> None:
    with receiver() as rx:
        hook = _register(api_a, rx.url, ["job.cancelled", "dataset.invalid"])
        ds = api_a.upload(images).json()
        job = api_a.post(
            "/v1/jobs", json={"dataset_id": ds["id"], "params": {**FAST, "levels": 7}}
        ).json()
        assert api_a.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
        bad = tmp_path / "bad.zip"
        bad.write_bytes(b"PK\x03\x04 not a zip")
        refused = api_a.upload(bad)
        assert refused.status_code == 422 and error_code(refused) == "corrupt_archive"
        # A refused upload registered nothing (no row): the client was answered, no event.
        events = sorted(d["event"] for d in _deliveries(api_a, hook))
        assert events == ["job.cancelled"]
        deliver_due(sender_settings())
        bodies = {json.loads(r.body)["type"]: json.loads(r.body)["data"] for r in rx.requests}
        assert bodies["job.cancelled"]["status"] == "cancelled"
        api_a.delete(f"/v1/webhooks/{hook['id']}")


def test_deleting_a_webhook_deletes_its_deliveries(
    api_a: Api, images: Path, loopback_allowed: None
) -> None:
    hook = _register(api_a, "http://127.0.0.1:9/", ["dataset.ready"])
    api_a.upload(images, copy=True)
    (delivery,) = _deliveries(api_a, hook)
    assert api_a.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    gone = api_a.get(f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}")
    assert gone.status_code == 404
    unknown = api_a.get(f"/v1/webhooks/{uuid.uuid4()}/deliveries")
    assert unknown.status_code == 404 and error_code(unknown) == "not_found"


def test_a_tenant_has_at_most_the_configured_number_of_webhooks(
    api_b: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLCPRUNE_WEBHOOK_MAX_PER_TENANT", "2")
    monkeypatch.setenv("DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    reset_settings()
    made = []
    try:
        body = {"url": "http://127.0.0.1:9/h", "events": ["job.failed"]}
        for _ in range(2 - len(api_b.get("/v1/webhooks").json()["items"])):
            made.append(api_b.post("/v1/webhooks", json=body).json()["id"])
        third = api_b.post("/v1/webhooks", json=body)
        assert third.status_code == 409 and error_code(third) == "too_many_webhooks"
        assert "DLCPRUNE_WEBHOOK_MAX_PER_TENANT" in problem(third)["message"]
    finally:
        for ident in made:
            api_b.delete(f"/v1/webhooks/{ident}")
        monkeypatch.undo()
        reset_settings()
