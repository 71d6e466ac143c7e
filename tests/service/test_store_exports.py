"""Exports into an object store (moto's S3 server on loopback): every format written and read
back, Idempotency-Key, a target already holding objects, a cancelled export writing nothing, a
store that is away (the export is queued again and succeeds later), and a changed source
(the export fails and leaves nothing)."""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import Api, free_port
from tests.problems import problem
from tests.service.stores import export, put_images, refer, score


def test_exports_are_written_to_the_store_and_read_back(api_a: Api, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    put_images(s3, f"{bucket}/pets")
    ds = refer(api_a, f"s3://{bucket}/pets/").json()
    job = score(api_a, ds)
    sel = api_a.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5, "seed": 3}).json()
    kept = api_a.get(f"/v1/selections/{sel['id']}").json()
    assert kept["size"] == 12

    done = export(api_a, sel["id"], f"s3://{bucket}/out/original/", "original")
    assert (done["status"], done["objects"], done["progress"]["done"]) == ("succeeded", 12, 12)
    names = sorted(s3.find(f"{bucket}/out/original/"))
    assert len(names) == 12 and not any(".dlcprune-partial" in n for n in names)
    back = refer(api_a, f"s3://{bucket}/out/original/").json()
    assert (back["status"], back["num_samples"]) == ("ready", 12)
    assert sum(back["classes"].values()) == 12

    done = export(api_a, sel["id"], f"s3://{bucket}/out/wds/", "webdataset")
    assert done["objects"] == 1
    back = refer(api_a, f"s3://{bucket}/out/wds/shard-{{000000..000000}}.tar").json()
    assert (back["status"], back["format"], back["num_samples"]) == ("ready", "webdataset", 12)

    done = export(api_a, sel["id"], f"s3://{bucket}/out/hf/", "hf")
    back = refer(api_a, f"s3://{bucket}/out/hf/").json()
    assert (back["status"], back["format"], back["num_samples"]) == ("ready", "hf_dataset", 12)

    done = export(api_a, sel["id"], f"s3://{bucket}/out/pq/", "parquet")
    table = pq.read_table(io.BytesIO(s3.cat_file(f"{bucket}/out/pq/scores.parquet")))
    assert table.num_rows == 24 and sum(table.column("kept").to_pylist()) == 12

    done = export(api_a, sel["id"], f"s3://{bucket}/out/csv/", "manifest-csv")
    lines = s3.cat_file(f"{bucket}/out/csv/manifest.csv").decode().splitlines()
    assert lines[0] == "sample_id,label,score,kept" and len(lines) == 25

    listed = api_a.get("/v1/exports", params={"selection_id": sel["id"]}).json()
    assert listed["total"] == 5

    # Idempotency-Key: the same request again is the same export; another body is a 409.
    url, key = f"/v1/selections/{sel['id']}/exports", {"Idempotency-Key": uuid.uuid4().hex}
    body = {"uri": f"s3://{bucket}/out/again/", "format": "parquet"}
    first = api_a.post(url, json=body, headers=key)
    again = api_a.post(url, json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = api_a.post(url, json={**body, "format": "hf"}, headers=key)
    assert other.status_code == 409 and problem(other)["code"] == "idempotency_key_reused"
    assert api_a.get("/v1/exports", params={"selection_id": sel["id"]}).json()["total"] == 6

    # A target that already holds objects is refused; a queued export cancelled writes nothing.
    resp = api_a.post(
        f"/v1/selections/{sel['id']}/exports", json={"uri": f"s3://{bucket}/out/csv/"}
    )
    assert resp.status_code == 422 and problem(resp)["code"] == "target_not_empty"
    resp = api_a.post(
        f"/v1/selections/{sel['id']}/exports", json={"uri": f"s3://{bucket}/out/never/"}
    )
    cancelled = api_a.post(f"/v1/exports/{resp.json()['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    from worker.runner import run_export

    assert run_export(resp.json()["id"]) == "cancelled"
    assert not s3.exists(f"{bucket}/out/never/")
    other = api_a.post(f"/v1/selections/{sel['id']}/exports", json={"uri": f"gs://{bucket}/out/"})
    assert other.status_code == 422 and problem(other)["code"] == "reference_not_allowed"


def test_an_export_whose_store_is_away_goes_back_to_the_queue_and_succeeds_later(
    api_a: Api, s3, bucket: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A store that refuses connections is a transient error: the export is queued again (not
    failed, not left running) and the worker's retry writes it once the store is back."""
    from moto.server import ThreadedMotoServer

    from app import storage
    from app.config import reset_settings
    from tests.service.data import write_image_zip
    from worker.runner import TransientError, run_export

    ds = api_a.upload(write_image_zip(tmp_path / "c.zip", per_class=2)).json()
    job = score(api_a, ds)
    sel = api_a.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5, "seed": 1}).json()
    # A second S3 endpoint on the same data (moto's state is per process), with few retries.
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {
        "s3": {
            "endpoint_url": f"http://127.0.0.1:{port}",
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
        }
    }
    os.environ["DLCPRUNE_STORAGE_OPTIONS"] = json.dumps(options)
    reset_settings()
    storage._stores.clear()
    try:
        resp = api_a.post(
            f"/v1/selections/{sel['id']}/exports",
            json={"uri": f"s3://{bucket}/away/", "format": "manifest-csv"},
        )
        assert resp.status_code == 202, resp.text
        export_id = resp.json()["id"]
        server.stop()
        with pytest.raises(TransientError):
            run_export(export_id)
        waiting = api_a.get(f"/v1/exports/{export_id}").json()
        assert (waiting["status"], waiting["error"], waiting["finished_at"]) == (
            "queued", None, None,
        )  # fmt: skip
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        assert run_export(export_id) == "succeeded"
        done = api_a.get(f"/v1/exports/{export_id}").json()
        assert (done["status"], done["objects"]) == ("succeeded", 1)
        assert s3.ls(f"{bucket}/away/") == [f"{bucket}/away/manifest.csv"]
    finally:
        os.environ.pop("DLCPRUNE_STORAGE_OPTIONS", None)
        reset_settings()
        storage._stores.clear()
        server.stop()


def test_an_export_of_a_changed_source_fails_and_leaves_nothing(
    api_a: Api, s3, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    from worker.runner import run_export

    members = put_images(s3, f"{bucket}/pets", per_class=4)
    ds = refer(api_a, f"s3://{bucket}/pets/").json()
    job = score(api_a, ds)
    sel = api_a.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5, "seed": 1}).json()
    s3.pipe_file(f"{bucket}/pets/blue/003.png", members["green/000.png"])
    resp = api_a.post(
        f"/v1/selections/{sel['id']}/exports", json={"uri": f"s3://{bucket}/out/", "format": "hf"}
    )
    assert resp.status_code == 202, resp.text
    assert run_export(resp.json()["id"]) == "failed"
    done = api_a.get(f"/v1/exports/{resp.json()['id']}").json()
    assert done["error"]["code"] == "source_changed", done
    assert "'blue/003.png' was changed" in done["error"]["message"]
    assert (done["objects"], done["bytes_written"]) == (0, 0)
    assert not s3.exists(f"{bucket}/out/")
