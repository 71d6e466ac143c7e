"""The HTTP contract's auth and limits (issue 15): a wrong key is 401 with auth on or off, admin
keys manage keys and scopes are enforced, per-tenant limits answer 429 with Retry-After and hold
under simultaneous posts. Real PostgreSQL; each tenant is new to its test."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Api, make_key
from tests.problems import error_code

FAST = {"image_size": 32, "levels": 2}


# Auth ----------------------------------------------------------------------------------------


def test_a_wrong_key_is_401_with_auth_on_and_off(
    app_client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for headers in ({"X-API-Key": "dlc_00000000_wrong"}, {"Authorization": "Bearer nope"}):
        resp = app_client.get("/v1/datasets", headers=headers)
        assert (resp.status_code, error_code(resp)) == (401, "unauthorized")
    # The embedded default with auth off: no key is fine, a wrong one is still refused.
    from app.config import reset_settings
    from app.main import create_app

    for name, value in {
        "DLCPRUNE_DATA_DIR": str(tmp_path),
        "DLCPRUNE_DATABASE_URL": "",
        "DLCPRUNE_BLOB_URL": "",
        "DLCPRUNE_BROKER_URL": "",
        "DLCPRUNE_AUTH_ENABLED": "false",
    }.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    try:
        with TestClient(create_app()) as local:
            assert local.get("/v1/datasets").status_code == 200
            wrong = local.get("/v1/datasets", headers={"X-API-Key": "dlc_00000000_wrong"})
            assert (wrong.status_code, error_code(wrong)) == (401, "unauthorized")
            assert wrong.headers["www-authenticate"] == "Bearer"
    finally:
        monkeypatch.undo()
        reset_settings()


def test_admin_keys_manage_keys_and_scopes_are_enforced(app_client: TestClient) -> None:
    from app.auth import hash_key
    from app.db import session_scope
    from app.models import ApiKey

    tenant = f"admin-{uuid.uuid4().hex[:8]}"
    from app.auth import create_key

    with session_scope() as session:
        admin_key, _ = create_key(session, tenant, "root", ("admin",))
    admin = Api(app_client, admin_key)
    plain = Api(app_client, make_key(f"plain-{uuid.uuid4().hex[:8]}"))
    assert error_code(plain.get("/v1/keys")) == "insufficient_scope"
    assert plain.get("/v1/keys").status_code == 403

    made = admin.post("/v1/keys", json={"name": "reader", "scopes": ["read"]})
    assert made.status_code == 201, made.text
    reader_key = made.json()["key"]
    assert reader_key.startswith(f"dlc_{made.json()['prefix']}_")
    with session_scope() as session:
        row = session.get(ApiKey, uuid.UUID(made.json()["id"]))
        assert row is not None and row.key_hash == hash_key(reader_key)
        assert reader_key not in (row.key_hash, row.prefix, row.name)
    reader = Api(app_client, reader_key)
    assert reader.get("/v1/datasets").status_code == 200
    refused = reader.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/", "events": []})
    assert (refused.status_code, error_code(refused)) == (403, "insufficient_scope")
    assert error_code(reader.get("/v1/keys")) == "insufficient_scope"
    bad = admin.post("/v1/keys", json={"scopes": ["root"]})
    assert (bad.status_code, error_code(bad)) == (422, "validation_error")

    listed = admin.get("/v1/keys").json()
    assert {k["name"] for k in listed["items"]} == {"root", "reader"}
    assert all("key" not in k for k in listed["items"])
    # Another tenant's admin sees none of these.
    with session_scope() as session:
        other_key, _ = create_key(session, f"other-{uuid.uuid4().hex[:8]}", "root", ("admin",))
    other = Api(app_client, other_key)
    assert [k["name"] for k in other.get("/v1/keys").json()["items"]] == ["root"]
    for call in (other.get, other.delete):
        hidden = call(f"/v1/keys/{made.json()['id']}")
        assert (hidden.status_code, error_code(hidden)) == (404, "not_found")
    assert admin.delete(f"/v1/keys/{made.json()['id']}").status_code == 204
    gone = reader.get("/v1/datasets")
    assert (gone.status_code, error_code(gone)) == (401, "unauthorized")
    assert admin.get(f"/v1/keys/{made.json()['id']}").json()["revoked_at"] is not None


def test_tenant_limits_answer_429_with_retry_after(
    api: Api, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import reset_settings

    ds = api.upload(images).json()
    monkeypatch.setenv("DLCPRUNE_TENANT_MAX_ACTIVE_JOBS", "1")
    monkeypatch.setenv("DLCPRUNE_TENANT_MAX_STORED_BYTES", str(ds["size_bytes"] + 10))
    reset_settings()
    try:
        first = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": {**FAST, "levels": 3}})
        assert first.status_code == 202
        second = api.post(
            "/v1/jobs", json={"dataset_id": ds["id"], "params": {**FAST, "levels": 5}}
        )
        assert (second.status_code, error_code(second)) == (429, "too_many_jobs")
        assert int(second.headers["retry-after"]) >= 1
        stored = api.upload(images, copy=True)
        assert (stored.status_code, error_code(stored)) == (429, "storage_limit")
        assert int(stored.headers["retry-after"]) >= 1
    finally:
        monkeypatch.undo()
        reset_settings()
    monkeypatch.setenv("DLCPRUNE_RATE_LIMIT_PER_S", "0.5")
    monkeypatch.setenv("DLCPRUNE_RATE_LIMIT_BURST", "3")
    reset_settings()
    try:
        answers = [api.get("/v1/datasets") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert error_code(answers[3]) == "rate_limited"
        assert int(answers[3].headers["retry-after"]) in (1, 2)
    finally:
        monkeypatch.undo()
        reset_settings()


def test_simultaneous_job_posts_do_not_pass_the_active_jobs_limit(
    api: Api, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve posts of different jobs at once against a limit of 3: exactly 3 are accepted."""
    from app.config import reset_settings

    ds = api.upload(images, copy=True).json()
    monkeypatch.setenv("DLCPRUNE_TENANT_MAX_ACTIVE_JOBS", "3")
    reset_settings()
    try:
        with ThreadPoolExecutor(12) as pool:
            answers = list(
                pool.map(
                    lambda n: api.post(
                        "/v1/jobs",
                        json={"dataset_id": ds["id"], "params": {**FAST, "levels": 20 + n}},
                    ),
                    range(12),
                )
            )
    finally:
        monkeypatch.undo()
        reset_settings()
    codes = sorted(a.status_code for a in answers)
    assert codes == [202] * 3 + [429] * 9, [a.text for a in answers if a.status_code >= 300]
    assert {error_code(a) for a in answers if a.status_code == 429} == {"too_many_jobs"}


def test_evaluations_and_exports_count_with_jobs_against_the_active_limit(
    api: Api, images: Path, monkeypatch: pytest.MonkeyPatch, service_env: dict[str, str]
) -> None:
    """DLCPRUNE_TENANT_MAX_ACTIVE_JOBS counts queued or running scoring jobs, evaluations and
    exports together; each POST past it is 429 naming the limit and what is active."""
    from app.config import reset_settings
    from tests.conftest import finish

    ds = api.upload(images).json()
    job = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert finish(job) == "succeeded"
    sel = api.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5}).json()
    refs = Path(service_env["DLCPRUNE_FILE_ROOTS"])
    evaluate = {"strategies": ["flexrand"], "keep": [0.5], "seeds": 2}

    def export(name: str):  # type: ignore[no-untyped-def]
        uri = (refs / f"limit-{uuid.uuid4().hex[:8]}-{name}").as_uri() + "/"
        return api.post(f"/v1/selections/{sel['id']}/exports", json={"uri": uri})

    monkeypatch.setenv("DLCPRUNE_TENANT_MAX_ACTIVE_JOBS", "2")
    reset_settings()
    try:
        ev = api.post(f"/v1/jobs/{job['id']}/evaluations", json=evaluate)
        assert ev.status_code == 202, ev.text
        first_export = export("a")
        assert first_export.status_code == 202, first_export.text
        refused = [
            api.post(f"/v1/jobs/{job['id']}/evaluations", json=evaluate),
            export("b"),
            api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": {**FAST, "levels": 4}}),
        ]
        for resp in refused:
            assert (resp.status_code, error_code(resp)) == (429, "too_many_jobs"), resp.text
            assert int(resp.headers["retry-after"]) >= 1
            body = resp.json()
            assert "DLCPRUNE_TENANT_MAX_ACTIVE_JOBS allows 2" in body["detail"]
            assert body["details"] == {
                "setting": "DLCPRUNE_TENANT_MAX_ACTIVE_JOBS",
                "limit": 2,
                "active": {"jobs": 0, "evaluations": 1, "exports": 1},
            }
        # a cancelled evaluation frees its place: a scoring job takes it
        cancelled = api.post(f"/v1/evaluations/{ev.json()['id']}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        again = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": {**FAST, "levels": 4}})
        assert again.status_code == 202, again.text
        full = api.post(f"/v1/jobs/{job['id']}/evaluations", json=evaluate)
        assert (full.status_code, error_code(full)) == (429, "too_many_jobs")
        assert full.json()["details"]["active"] == {"jobs": 1, "evaluations": 0, "exports": 1}
    finally:
        monkeypatch.undo()
        reset_settings()
