"""The HTTP contract an integrator relies on (issue 15): RFC 9457 problem documents, safe retries
(Idempotency-Key on every creating POST, one resource from concurrent retries, upload dedup, a
refused upload keeps nothing), strict inputs, 405 with a complete Allow. Real PostgreSQL, real
files; each tenant is new to its test."""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from tests.conftest import Api, finish
from tests.problems import error_code, problem

FAST = {"image_size": 32, "levels": 2}


def _count(model, tenant_of: Api) -> int:  # type: ignore[no-untyped-def]
    """Rows of ``model`` for the Api's tenant (read from the database itself)."""
    from app.auth import hash_key
    from app.db import session_scope
    from app.models import ApiKey

    key = tenant_of.headers["Authorization"].removeprefix("Bearer ")
    with session_scope() as session:
        tenant = session.scalar(select(ApiKey.tenant_id).where(ApiKey.key_hash == hash_key(key)))
        return int(
            session.scalar(select(func.count()).select_from(model).where(model.tenant_id == tenant))
            or 0
        )


# Problem documents ---------------------------------------------------------------------------


def test_errors_are_problem_documents(api: Api) -> None:
    missing = uuid.uuid4()
    resp = api.get(f"/v1/datasets/{missing}")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["type"] == "urn:dlcprune:problem:not_found"
    assert body["title"] == "Not found" and body["status"] == 404 and body["code"] == "not_found"
    assert body["detail"] == f"dataset {missing} not found"
    assert body["instance"] == f"/v1/datasets/{missing}"
    assert body["request_id"] == resp.headers["x-request-id"]
    assert "error" not in body

    # Validation: details is an object whose errors list names each field.
    bad = api.post("/v1/webhooks", json={"url": 5, "events": "x"})
    err = problem(bad)
    assert bad.status_code == 422 and err["code"] == "validation_error"
    assert {tuple(e["loc"]) for e in err["details"]["errors"]} == {("url",), ("events",)}
    assert all(set(e) == {"loc", "msg", "type"} for e in err["details"]["errors"])

    not_json = api.post("/v1/webhooks", content=b"{", headers={"content-type": "application/json"})
    assert (not_json.status_code, error_code(not_json)) == (400, "malformed_json")


def test_405_names_every_method_of_the_path(api: Api) -> None:
    resp = api.request("PUT", "/v1/datasets")
    assert (resp.status_code, error_code(resp)) == (405, "method_not_allowed")
    assert resp.headers["allow"] == "GET, HEAD, POST"
    one = api.request("PATCH", f"/v1/datasets/{uuid.uuid4()}")
    assert one.status_code == 405 and one.headers["allow"] == "DELETE, GET, HEAD"


def test_readyz_shows_no_exception_text_without_a_key(app_client: TestClient, api: Api) -> None:
    from app import db

    real = db.check_schema

    def broken() -> None:
        raise RuntimeError("secret-host.internal:5432 password authentication failed")

    db.check_schema = broken  # type: ignore[assignment]
    try:
        anonymous = app_client.get("/readyz")
        wrong = app_client.get("/readyz", headers={"X-API-Key": "dlc_nope_nope"})
        keyed = api.get("/readyz")
    finally:
        db.check_schema = real  # type: ignore[assignment]
    for resp in (anonymous, wrong):
        assert resp.status_code == 503 and error_code(resp) == "unavailable"
        assert "secret-host" not in resp.text
        assert resp.json()["checks"]["schema"] == "failed"
    assert keyed.status_code == 503
    assert "secret-host.internal" in keyed.json()["checks"]["schema"]


# Idempotency ---------------------------------------------------------------------------------


def _hook(api: Api, key: str, description: str = "") -> object:
    return api.post(
        "/v1/webhooks",
        json={
            "url": "http://127.0.0.1:9/hook",
            "events": ["job.succeeded"],
            "description": description,
        },
        headers={"Idempotency-Key": key},
    )


def test_twenty_concurrent_posts_with_one_key_make_one_webhook(
    api: Api, hooks_allowed: None
) -> None:
    from app.models import Webhook

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: _hook(api, "hook-once"), range(20)))
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]  # type: ignore[attr-defined]
    assert len({a.json()["id"] for a in answers}) == 1  # type: ignore[attr-defined]
    replayed = [a.headers.get("idempotent-replayed") for a in answers]  # type: ignore[attr-defined]
    assert replayed.count(None) == 1 and replayed.count("true") == 19
    # The replay answers the same secret: the same request, the same answer.
    assert len({a.json()["secret"] for a in answers}) == 1  # type: ignore[attr-defined]
    assert _count(Webhook, api) == 1


def test_a_reused_key_with_another_body_is_409_and_errors_are_not_remembered(
    api: Api, hooks_allowed: None
) -> None:
    first = _hook(api, "k1", "one")
    assert first.status_code == 201  # type: ignore[attr-defined]
    other = _hook(api, "k1", "two")
    assert (other.status_code, error_code(other)) == (409, "idempotency_key_reused")  # type: ignore[attr-defined]
    # The same key on another route is another request too.
    resp = api.post(
        f"/v1/jobs/{uuid.uuid4()}/selections",
        json={"keep_ratio": 0.5},
        headers={"Idempotency-Key": "k1"},
    )
    assert (resp.status_code, error_code(resp)) == (409, "idempotency_key_reused")
    # A refused request releases its key: the corrected retry goes through.
    bad = api.post(
        "/v1/webhooks",
        json={"url": "ftp://x", "events": ["job.succeeded"]},
        headers={"Idempotency-Key": "k2"},
    )
    assert bad.status_code == 422
    assert _hook(api, "k2").status_code == 201  # type: ignore[attr-defined]
    long_key = api.post("/v1/webhooks", json={}, headers={"Idempotency-Key": "x" * 201})
    assert (long_key.status_code, error_code(long_key)) in (
        (400, "bad_idempotency_key"),
        (422, "validation_error"),
    )


def test_a_key_is_forgotten_after_its_expiry(api: Api, hooks_allowed: None) -> None:
    from app.db import session_scope
    from app.models import IdempotencyKey, Webhook, utcnow

    first = _hook(api, "expiring")
    assert _hook(api, "expiring").json()["id"] == first.json()["id"]  # type: ignore[attr-defined]
    with session_scope() as session:
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "expiring")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    again = _hook(api, "expiring")
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]  # type: ignore[attr-defined]
    assert "idempotent-replayed" not in again.headers  # type: ignore[attr-defined]
    assert _count(Webhook, api) == 2


def test_a_claim_is_held_while_its_request_may_run_and_taken_over_once_abandoned(
    api: Api, hooks_allowed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key claimed by a request that never finished (its process died): a retry within
    ``DLCPRUNE_IDEMPOTENCY_CLAIM_STALE_S`` is told to wait (the first may still be uploading),
    one after it creates the resource."""
    from app.config import reset_settings
    from app.db import session_scope
    from app.models import IdempotencyKey, Webhook, utcnow

    monkeypatch.setenv("DLCPRUNE_IDEMPOTENCY_WAIT_S", "0.3")
    monkeypatch.setenv("DLCPRUNE_IDEMPOTENCY_CLAIM_STALE_S", "3600")
    reset_settings()
    try:
        first = _hook(api, "abandoned")
        with session_scope() as session:  # as if that request had died before recording it
            session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.key == "abandoned")
                .values(resource_id=None, created_at=utcnow() - timedelta(minutes=30))
            )
        held = _hook(api, "abandoned")
        assert held.status_code == 409, held.text  # type: ignore[attr-defined]
        assert error_code(held) == "idempotency_key_in_progress"
        assert held.headers["retry-after"] == "1"  # type: ignore[attr-defined]
        with session_scope() as session:
            session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.key == "abandoned")
                .values(created_at=utcnow() - timedelta(seconds=3601))
            )
        taken = _hook(api, "abandoned")
        assert taken.status_code == 201, taken.text  # type: ignore[attr-defined]
        assert taken.json()["id"] != first.json()["id"]  # type: ignore[attr-defined]
        assert _hook(api, "abandoned").json()["id"] == taken.json()["id"]  # type: ignore[attr-defined]
        assert _count(Webhook, api) == 2
    finally:
        monkeypatch.undo()
        reset_settings()


def test_uploads_dedup_by_content_and_copy_forces_a_new_one(api: Api, images: Path) -> None:
    from app.models import Dataset

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: api.upload(images), range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 19 + [201], [a.text for a in answers if a.status_code >= 300]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1 and _count(Dataset, api) == 1
    (only,) = ids
    assert all(a.headers["location"].endswith(f"/v1/datasets/{only}") for a in answers)
    digest = hashlib.sha256(images.read_bytes()).hexdigest()
    assert answers[0].json()["sha256"] == digest
    copy = api.upload(images, copy=True)
    assert copy.status_code == 201 and copy.json()["id"] != only
    assert _count(Dataset, api) == 2
    # The same bytes read another way are another dataset.
    other = api.upload(images, format="zip")
    assert other.status_code == 201 and other.json()["id"] not in (only, copy.json()["id"])


def test_twenty_concurrent_uploads_with_one_key_make_one_dataset(api: Api, images: Path) -> None:
    from app.models import Dataset

    def post(_: int):  # type: ignore[no-untyped-def]
        with open(images, "rb") as fh:
            return api.post(
                "/v1/datasets?copy=true",
                files={"file": (images.name, fh)},
                headers={"Idempotency-Key": "upload-once"},
            )

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1 and _count(Dataset, api) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 19


def test_a_refused_upload_keeps_no_row_and_no_bytes(
    api: Api, tmp_path: Path, service_env: dict[str, str]
) -> None:
    from app.models import Dataset

    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    for _ in range(3):
        resp = api.upload(bad)
        assert (resp.status_code, error_code(resp)) == (422, "corrupt_archive")
        assert "location" not in resp.headers
        shown = problem(resp)["details"]["dataset"]
        assert shown["status"] == "invalid" and shown["filename"] == "bad.zip"
        blobs = Path(service_env["DLCPRUNE_BLOB_URL"]) / "datasets" / shown["id"]
        assert not blobs.exists()
    assert _count(Dataset, api) == 0


def test_jobs_selections_and_weights_replay_by_key(api: Api, images: Path, tmp_path: Path) -> None:
    from app.models import Job, Selection, Weights

    ds = api.upload(images).json()
    body = {"dataset_id": ds["id"], "params": FAST}
    jobs = [api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "job"}) for _ in range(3)]
    assert len({j.json()["id"] for j in jobs}) == 1 and _count(Job, api) == 1
    assert finish(jobs[0].json()) == "succeeded"
    url = f"/v1/jobs/{jobs[0].json()['id']}/selections"
    with ThreadPoolExecutor(20) as pool:
        sels = list(
            pool.map(
                lambda _: api.post(
                    url, json={"keep_ratio": 0.5}, headers={"Idempotency-Key": "sel"}
                ),
                range(20),
            )
        )
    assert {s.status_code for s in sels} == {201}
    assert len({s.json()["id"] for s in sels}) == 1 and _count(Selection, api) == 1
    other = api.post(url, json={"keep_ratio": 0.25}, headers={"Idempotency-Key": "sel"})
    assert (other.status_code, error_code(other)) == (409, "idempotency_key_reused")

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not really weights, stored as they are")

    def post_weights():  # type: ignore[no-untyped-def]
        with open(weights, "rb") as fh:
            return api.post(
                "/v1/weights", files={"file": ("w.pth", fh)}, headers={"Idempotency-Key": "w"}
            )

    first, second = post_weights(), post_weights()
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] and _count(Weights, api) == 1
    assert second.headers["idempotent-replayed"] == "true"


# Strict inputs -------------------------------------------------------------------------------


def test_an_unknown_model_is_named_as_such(api: Api, images: Path) -> None:
    ds = api.upload(images).json()
    resp = api.post("/v1/jobs", json={"dataset_id": ds["id"], "model": "nope"})
    assert (resp.status_code, error_code(resp)) == (422, "unknown_model")
    assert problem(resp)["message"].startswith("unknown model 'nope'")
    # A known form without its weights is another error.
    resp = api.post("/v1/jobs", json={"dataset_id": ds["id"], "model": "timm:resnet18"})
    assert (resp.status_code, error_code(resp)) == (422, "invalid_model")


@pytest.mark.parametrize(
    "body",
    [
        {"keep": True},
        {"keep": "0.3"},
        {"keep_ratio": "0.3"},
        {"keep_ratio": True},
        {"keep_ratio": 0},
        {"keep_ratio": 1.5},
        {"keep_count": 0},
        {"keep_count": 2.0},
        {"keep_count": "2"},
        {"keep": 1.5},
        {"keep_ratio": 0.5, "keep_count": 2},
        {},
        {"keep_ratio": 0.5, "seed": True},
        {"keep_ratio": 0.5, "seed": "1"},
        {"keep_ratio": 0.5, "seed": 2**63},
        {"keep_ratio": 0.5, "split": "0.5"},
    ],
)
def test_selections_take_no_coerced_numbers(api: Api, body: dict) -> None:
    resp = api.post(f"/v1/jobs/{uuid.uuid4()}/selections", json=body)
    assert (resp.status_code, error_code(resp)) == (422, "validation_error"), body


def test_job_params_take_no_coerced_numbers(api: Api) -> None:
    for params in ({"levels": True}, {"levels": "4"}, {"image_size": 32.5}):
        resp = api.post("/v1/jobs", json={"dataset_id": str(uuid.uuid4()), "params": params})
        assert resp.status_code == 422, (params, resp.text)
        assert error_code(resp) in ("validation_error", "invalid_parameter"), params


def test_keep_ratio_and_count_are_told_apart(api: Api, images: Path) -> None:
    ds = api.upload(images).json()
    job = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert finish(job) == "succeeded"
    url = f"/v1/jobs/{job['id']}/selections"
    n = ds["num_samples"]
    one = api.post(url, json={"keep_count": 1, "strategy": "random"}).json()
    assert (one["size"], one["keep_count"], one["keep_ratio"]) == (1, 1, None)
    everything = api.post(url, json={"keep_ratio": 1}).json()
    assert (everything["size"], everything["keep_ratio"], everything["keep_count"]) == (n, 1, None)
    two = api.post(url, json={"keep": 2, "strategy": "random"}).json()
    assert (two["size"], two["keep_count"]) == (2, 2)
    half = api.post(url, json={"keep": 0.5}).json()
    assert (half["size"], half["keep_ratio"]) == (n // 2, 0.5)
    over = api.post(url, json={"keep_count": n + 1})
    assert (over.status_code, error_code(over)) == (422, "invalid_selection")
    assert f"keep_count {n + 1} exceeds the {n} samples" in problem(over)["message"]
    # The largest seed the spec allows is accepted.
    big = api.post(url, json={"keep_ratio": 0.5, "seed": 2**63 - 1})
    assert big.status_code == 201, big.text


def test_multipart_and_json_names_have_the_same_limit(api: Api, images: Path) -> None:
    long = "n" * 501
    resp = api.upload(images, copy=True, name=long)
    assert (resp.status_code, error_code(resp)) == (422, "validation_error")
    assert problem(resp)["details"]["errors"][0]["loc"] == ["name"]
    ref = api.post("/v1/dataset-references", json={"uri": "file:///nowhere", "name": long})
    assert (ref.status_code, error_code(ref)) == (422, "validation_error")
    ok = api.upload(images, copy=True, name="n" * 500)
    assert ok.status_code == 201 and ok.json()["name"] == "n" * 500


def test_the_reaper_forgets_expired_keys(api: Api, hooks_allowed: None) -> None:
    from app.db import session_scope
    from app.idempotency import purge_expired
    from app.models import IdempotencyKey, utcnow

    _hook(api, "to-expire")
    with session_scope() as session:
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "to-expire")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with session_scope() as session:
        assert purge_expired(session) >= 1
        left = session.scalar(
            select(func.count())
            .select_from(IdempotencyKey)
            .where(IdempotencyKey.key == "to-expire")
        )
        assert left == 0


# The spec ------------------------------------------------------------------------------------


def test_the_spec_says_what_the_service_does(app_client: TestClient, api: Api) -> None:
    spec = app_client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    # Integer limits are integers: the largest seed is 2**63 - 1 exactly.
    assert schemas["SelectionCreate"]["properties"]["seed"]["maximum"] == 2**63 - 1
    for path, item in spec["paths"].items():
        for method, op in item.items():
            # A key is required: no optional ({}) security on any /v1 route.
            if path.startswith("/v1/"):
                assert op["security"] == [{"bearer": []}, {"apiKey": []}], (method, path)
            # One request body per operation.
            if "requestBody" in op:
                assert len(op["requestBody"]["content"]) == 1, (method, path)
            for status, answer in op["responses"].items():
                for media, content in answer.get("content", {}).items():
                    # Every answer has a schema; files are strings (bytes), never empty JSON.
                    assert content.get("schema"), (method, path, status, media)
                    if status.startswith(("4", "5")):
                        assert media == "application/problem+json", (method, path, status)
    weights = spec["paths"]["/v1/weights"]["post"]["responses"]
    assert {"201", "409", "413", "415", "422", "429"} <= set(weights)
    # The 415 it declares is what it answers to a JSON body.
    resp = api.post("/v1/weights", json={"file": "x"})
    assert (resp.status_code, error_code(resp)) == (415, "unsupported_media_type")
    export = spec["paths"]["/v1/selections/{selection_id}/export"]["get"]["responses"]["200"]
    assert "application/json" not in export["content"]
    for path in ("/v1/jobs/{job_id}/scores", "/v1/selections/{selection_id}/items"):
        ok = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert set(ok) == {"application/json"}, path


def test_one_key_and_one_upload_make_one_resource_on_the_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: Path
) -> None:
    """SQLite, no broker, auth off: the same guarantees as on PostgreSQL."""
    from app.config import reset_settings
    from app.main import create_app

    for name, value in {
        "DLCPRUNE_DATA_DIR": str(tmp_path),
        "DLCPRUNE_DATABASE_URL": "",
        "DLCPRUNE_BLOB_URL": "",
        "DLCPRUNE_BROKER_URL": "",
        "DLCPRUNE_AUTH_ENABLED": "false",
        "DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    }.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    try:
        with TestClient(create_app()) as local:

            def hook(_: int):  # type: ignore[no-untyped-def]
                return local.post(
                    "/v1/webhooks",
                    json={"url": "http://127.0.0.1:9/h", "events": ["job.succeeded"]},
                    headers={"Idempotency-Key": "embedded"},
                )

            def upload(_: int):  # type: ignore[no-untyped-def]
                return local.post(
                    "/v1/datasets", files={"file": (images.name, images.read_bytes())}
                )

            with ThreadPoolExecutor(20) as pool:
                hooks = list(pool.map(hook, range(20)))
                uploads = list(pool.map(upload, range(20)))
            assert {h.status_code for h in hooks} == {201}
            assert len({h.json()["id"] for h in hooks}) == 1
            assert sorted(u.status_code for u in uploads) == [200] * 19 + [201]
            assert local.get("/v1/webhooks").json()["total"] == 1
            assert local.get("/v1/datasets").json()["total"] == 1
    finally:
        monkeypatch.undo()
        reset_settings()


def test_references_have_their_own_operation_and_the_old_paths_work(api: Api) -> None:
    body = {"uri": "file:///nowhere/at/all", "name": "x"}
    for path in ("/v1/dataset-references", "/v1/datasets/references", "/v1/datasets"):
        resp = api.post(path, json=body)
        assert resp.status_code == 422, (path, resp.text)
        assert error_code(resp) in ("reference_not_allowed", "reference_not_found"), path
