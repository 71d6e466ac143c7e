"""Lifecycle through the API (issue 15): deleting a dataset while its jobs wait or run (409, or
forced: the jobs read ``cancelled`` with the reason, never 404), DELETE for jobs, selections and
weights, the weights list, tags and external ids filtered in lists, cursor pages beside offsets.
Real PostgreSQL and files; each test has a tenant of its own."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Api, finish, make_key
from tests.problems import error_code, problem
from tests.service.data import write_image_zip

FAST = {"image_size": 32, "levels": 2}


@pytest.fixture
def api(app_client: TestClient) -> Api:
    return Api(app_client, make_key(f"lifecycle-{uuid.uuid4().hex[:8]}"))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_zip(tmp_path_factory.mktemp("lifecycle") / "colours.zip", per_class=4)


def test_deleting_a_dataset_with_a_waiting_job_is_409_unless_forced(api: Api, images: Path) -> None:
    from worker.runner import run_job

    ds = api.upload(images).json()
    job = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": {**FAST, "levels": 3}})
    assert job.status_code == 202
    job = job.json()
    busy = api.delete(f"/v1/datasets/{ds['id']}")
    assert (busy.status_code, error_code(busy)) == (409, "dataset_busy")
    assert problem(busy)["details"]["jobs"] == [job["id"]]
    assert api.get(f"/v1/datasets/{ds['id']}").status_code == 200

    assert api.delete(f"/v1/datasets/{ds['id']}", params={"force": "true"}).status_code == 204
    assert error_code(api.get(f"/v1/datasets/{ds['id']}")) == "not_found"
    polled = api.get(f"/v1/jobs/{job['id']}")
    assert polled.status_code == 200
    read = polled.json()
    assert (read["status"], read["dataset_id"]) == ("cancelled", None)
    assert read["error"]["code"] == "dataset_deleted" and ds["id"] in read["error"]["message"]
    # The worker that gets the message later leaves it alone.
    run_job(job["id"])
    assert api.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    # And the cancelled job can be deleted in turn.
    assert api.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert api.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_delete_jobs_and_selections(api: Api, images: Path, service_env: dict[str, str]) -> None:
    ds = api.upload(images).json()
    job = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert finish(job) == "succeeded"
    url = f"/v1/jobs/{job['id']}/selections"
    sel = api.post(url, json={"keep_ratio": 0.5}).json()
    other = api.post(url, json={"keep_ratio": 0.25}).json()
    export = api.get(f"/v1/selections/{sel['id']}/export")
    assert export.status_code == 200
    exports = Path(service_env["DLCPRUNE_BLOB_URL"]) / "exports" / sel["id"]
    assert exports.exists()
    assert api.delete(f"/v1/selections/{sel['id']}").status_code == 204
    assert error_code(api.get(f"/v1/selections/{sel['id']}")) == "not_found"
    assert not exports.exists()
    assert error_code(api.delete(f"/v1/selections/{sel['id']}")) == "not_found"
    assert api.get(url).json()["total"] == 1

    queued = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": {**FAST, "levels": 5}})
    active = api.delete(f"/v1/jobs/{queued.json()['id']}")
    assert (active.status_code, error_code(active)) == (409, "job_active")
    assert api.delete(f"/v1/jobs/{queued.json()['id']}", params={"force": True}).status_code == 204

    assert api.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert api.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert api.get(f"/v1/selections/{other['id']}").status_code == 404
    # The dataset stays, and its scores stay cached: the same job again is answered at once.
    again = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert again["status"] == "succeeded" and again["cached"] is True


def test_weights_list_and_delete(api: Api, images: Path, tmp_path: Path) -> None:
    ids = []
    for i in range(3):
        path = tmp_path / f"w{i}.pth"
        path.write_bytes(f"weights {i}".encode())
        with open(path, "rb") as fh:
            resp = api.post("/v1/weights", files={"file": (path.name, fh)})
        assert resp.status_code == 201
        ids.append(resp.json()["id"])
    listed = api.get("/v1/weights", params={"limit": 2}).json()
    assert listed["total"] == 3 and [w["id"] for w in listed["items"]] == ids[::-1][:2]
    rest = api.get("/v1/weights", params={"limit": 2, "cursor": listed["next_cursor"]}).json()
    assert [w["id"] for w in rest["items"]] == [ids[0]] and rest["next_cursor"] is None

    ds = api.upload(images).json()
    body = {"dataset_id": ds["id"], "model": "timm:resnet18", "weights_id": ids[1], "params": FAST}
    job = api.post("/v1/jobs", json=body)
    assert job.status_code == 202, job.text
    in_use = api.delete(f"/v1/weights/{ids[1]}")
    assert (in_use.status_code, error_code(in_use)) == (409, "weights_in_use")
    assert api.post(f"/v1/jobs/{job.json()['id']}/cancel").status_code == 202
    assert api.delete(f"/v1/weights/{ids[1]}").status_code == 204
    assert error_code(api.get(f"/v1/weights/{ids[1]}")) == "not_found"
    assert api.get(f"/v1/jobs/{job.json()['id']}").json()["weights_id"] is None
    assert api.get("/v1/weights").json()["total"] == 2


def test_tags_and_external_ids_filter_lists(api: Api, images: Path) -> None:
    a = api.upload(images, copy=True, tags="team-a,eval", external_id="ext-1").json()
    b = api.upload(images, copy=True, tags='["team-b"]').json()
    assert (a["tags"], a["external_id"]) == (["team-a", "eval"], "ext-1")
    assert b["tags"] == ["team-b"] and b["external_id"] is None

    def names(params: dict) -> set[str]:
        return {d["id"] for d in api.get("/v1/datasets", params=params).json()["items"]}

    assert names({"tag": "team-a"}) == {a["id"]}
    assert names({"tag": ["team-a", "eval"]}) == {a["id"]}
    assert names({"tag": ["team-a", "team-b"]}) == set()
    assert names({"tag": "team"}) == set()  # whole tags only
    assert names({"external_id": "ext-1"}) == {a["id"]}
    bad = api.upload(images, copy=True, tags="has space")
    assert (bad.status_code, error_code(bad)) == (422, "validation_error")

    body = {"dataset_id": a["id"], "params": FAST, "tags": ["nightly"], "external_id": "run-7"}
    job = api.post("/v1/jobs", json=body).json()
    assert (job["tags"], job["external_id"]) == (["nightly"], "run-7")
    jobs = api.get("/v1/jobs", params={"tag": "nightly", "external_id": "run-7"}).json()
    assert [j["id"] for j in jobs["items"]] == [job["id"]]
    assert api.get("/v1/jobs", params={"tag": "weekly"}).json()["items"] == []


def test_cursor_pages_beside_offsets(api: Api, images: Path) -> None:
    made = [api.upload(images, copy=True).json()["id"] for _ in range(5)]
    by_offset = [
        d["id"]
        for off in (0, 2, 4)
        for d in api.get("/v1/datasets", params={"limit": 2, "offset": off}).json()["items"]
    ]
    assert by_offset == made[::-1]
    seen: list[str] = []
    page = api.get("/v1/datasets", params={"limit": 2}).json()
    seen += [d["id"] for d in page["items"]]
    # A dataset registered meanwhile is newer: it neither repeats nor shifts the next pages.
    api.upload(images, copy=True)
    while page["next_cursor"]:
        page = api.get("/v1/datasets", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [d["id"] for d in page["items"]]
    assert seen == made[::-1]
    bad = api.get("/v1/datasets", params={"cursor": "not-a-cursor"})
    assert (bad.status_code, error_code(bad)) == (422, "bad_cursor")
    # With a cursor the offset is not used.
    first = api.get("/v1/datasets", params={"limit": 2}).json()
    both = api.get("/v1/datasets", params={"limit": 2, "cursor": first["next_cursor"], "offset": 1})
    plain = api.get("/v1/datasets", params={"limit": 2, "cursor": first["next_cursor"]})
    assert both.json()["items"] == plain.json()["items"]
