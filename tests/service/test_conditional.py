"""202 answers carry Location and Retry-After; job and dataset GETs carry an ETag and answer 304
to a matching If-None-Match, until the resource changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Api
from tests.service.data import write_image_zip


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_zip(tmp_path_factory.mktemp("etag") / "etag.zip", per_class=4, seed=11)


def test_a_polled_job_answers_304_until_it_changes(api_a: Api, images: Path) -> None:
    from worker.runner import run_job

    ds = api_a.upload(images).json()
    created = api_a.post(
        "/v1/jobs", json={"dataset_id": ds["id"], "params": {"image_size": 32, "levels": 3}}
    )
    assert created.status_code == 202
    assert created.headers["location"] == created.json()["url"]
    assert int(created.headers["retry-after"]) == 2  # DLCPRUNE_RETRY_AFTER_S's default
    url = f"/v1/jobs/{created.json()['id']}"

    first = api_a.get(url)
    tag = first.headers["etag"]
    assert tag.startswith('"') and tag.endswith('"')
    same = api_a.get(url, headers={"If-None-Match": tag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == tag
    assert api_a.get(url, headers={"If-None-Match": f"W/{tag}"}).status_code == 304
    assert api_a.get(url, headers={"If-None-Match": f'"other", {tag}'}).status_code == 304
    assert api_a.get(url, headers={"If-None-Match": '"other"'}).status_code == 200

    assert run_job(created.json()["id"]) == "succeeded"
    changed = api_a.get(url, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.json()["status"] == "succeeded"
    assert changed.headers["etag"] != tag
    assert api_a.get(url, headers={"If-None-Match": changed.headers["etag"]}).status_code == 304


def test_cancel_answers_202_and_a_dataset_has_an_etag(api_a: Api, images: Path) -> None:
    ds = api_a.upload(images).json()
    job = api_a.post(
        "/v1/jobs", json={"dataset_id": ds["id"], "params": {"image_size": 32, "levels": 9}}
    ).json()
    cancelled = api_a.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 202
    assert cancelled.headers["location"] == job["url"]
    assert "retry-after" in cancelled.headers
    got = api_a.get(f"/v1/datasets/{ds['id']}")
    again = api_a.get(f"/v1/datasets/{ds['id']}", headers={"If-None-Match": got.headers["etag"]})
    assert again.status_code == 304


def test_a_tag_of_another_tenant_reveals_nothing(api_a: Api, api_b: Api, images: Path) -> None:
    ds = api_a.upload(images).json()
    tag = api_a.get(f"/v1/datasets/{ds['id']}").headers["etag"]
    assert api_b.get(f"/v1/datasets/{ds['id']}", headers={"If-None-Match": tag}).status_code == 404
