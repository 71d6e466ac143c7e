"""Datasets in an object store: a real S3-compatible server on loopback (moto's server mode, as
s3fs's own tests use it), never a mock of fsspec. References to a class-folder prefix, a Parquet
table holding the images, a CSV manifest, WebDataset shards and a Hugging Face directory are
registered, scored and selected; bad input answers a 4xx naming the row, member or object; an
object changed after registration fails the job with ``source_changed``."""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import Api, finish, free_port
from tests.problems import problem
from tests.service.data import image_members
from tests.service.stores import FAST, put_images, refer, score, wds_tar

CLASSES = {"blue": 8, "green": 8, "red": 8}

# Registering, scoring, selecting -------------------------------------------------------------


def test_class_folder_prefix_is_indexed_from_its_listing_scored_and_selected(
    api_a: Api, s3, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    put_images(s3, f"{bucket}/pets")
    resp = refer(api_a, f"s3://{bucket}/pets/")
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["status"], ds["format"], ds["num_samples"]) == ("ready", "folder", 24)
    assert ds["classes"] == CLASSES
    # Pinned by the objects' listing (sizes and ETags), which is its content identity.
    assert len(ds["sha256"]) == 64
    job = score(api_a, ds)
    assert job["status"] == "succeeded"
    sel = api_a.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5, "seed": 3})
    assert sel.status_code == 201, sel.text
    assert sel.json()["size"] == 12
    # The same content under another prefix is the same data: the score cache answers.
    put_images(s3, f"{bucket}/copy")
    again = refer(api_a, f"s3://{bucket}/copy/").json()
    assert again["sha256"] == ds["sha256"]
    cached = api_a.post("/v1/jobs", json={"dataset_id": again["id"], "params": FAST}).json()
    assert cached["cached"] is True


def test_parquet_table_with_image_bytes_is_read_by_row_groups(api_a: Api, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    members = image_members(6)
    table = pa.table(
        {
            "img": pa.array(list(members.values()), pa.binary()),
            "y": [name.split("/")[0] for name in members],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=5)
    s3.pipe_file(f"{bucket}/tables/pets.parquet", buf.getvalue())
    resp = refer(
        api_a, f"s3://{bucket}/tables/pets.parquet", columns={"image": "img", "label": "y"}
    )
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["format"], ds["kind"], ds["num_samples"]) == ("parquet", "image", 18)
    assert score(api_a, ds)["status"] == "succeeded"


def test_csv_manifest_names_images_relative_to_it_and_by_uri(api_a: Api, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    members = put_images(s3, f"{bucket}/imgs", per_class=4)
    rows = ["path,label"]
    for i, name in enumerate(members):
        label = name.split("/")[0]
        rows.append(f"imgs/{name},{label}" if i % 2 else f"s3://{bucket}/imgs/{name},{label}")
    s3.pipe_file(f"{bucket}/train.csv", ("\n".join(rows) + "\n").encode())
    resp = refer(api_a, f"s3://{bucket}/train.csv")
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["format"], ds["num_samples"]) == ("manifest", 12)
    assert ds["classes"] == {"blue": 4, "green": 4, "red": 4}
    sample = api_a.get(f"/v1/datasets/{ds['id']}/samples/0")
    assert sample.status_code == 200, sample.text


def test_webdataset_shards_by_brace_pattern(api_a: Api, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    members = image_members(4)
    names = list(members)
    cls = {n: list(CLASSES).index(n.split("/")[0]) for n in names}
    for k, part in enumerate((names[:6], names[6:])):
        s3.pipe_file(
            f"{bucket}/wds/shard-{k:02d}.tar", wds_tar({n: members[n] for n in part}, cls=cls)
        )
    resp = refer(api_a, f"s3://{bucket}/wds/shard-{{00..01}}.tar")
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["format"], ds["num_samples"]) == ("webdataset", 12)
    assert ds["classes"] == {"0": 4, "1": 4, "2": 4}
    # The folder of the shards is the same dataset.
    folder = refer(api_a, f"s3://{bucket}/wds/").json()
    assert (folder["format"], folder["num_samples"], folder["sha256"]) == (
        "webdataset", 12, ds["sha256"],
    )  # fmt: skip
    from app.config import get_settings

    # Streamed from the store, indexed and scored: nothing copied to the local cache.
    job = score(api_a, ds)
    assert job["status"] == "succeeded"
    refs = get_settings().cache_dir / "refs"  # type: ignore[operator]  # copies, by pin
    assert not refs.exists() or not any(p.name.startswith(ds["sha256"]) for p in refs.iterdir())
    scores = api_a.get(f"/v1/jobs/{job['id']}/scores", params={"limit": 100}).json()
    assert scores["total"] == 12
    assert sorted(s["sample_id"] for s in scores["items"]) == sorted(
        n.rsplit(".", 1)[0].replace("/", "_") for n in names
    )


def test_a_zip_in_the_store_is_read_by_ranges_and_a_manifest_zip_copied(
    api_a: Api, s3, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    import zipfile

    from app.config import get_settings

    members = image_members(4)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(f"pets/{name}", data)
    s3.pipe_file(f"{bucket}/z/pets.zip", buf.getvalue())
    ds = refer(api_a, f"s3://{bucket}/z/pets.zip").json()
    assert (ds["status"], ds["format"], ds["num_samples"]) == ("ready", "zip", 12)
    job = score(api_a, ds)
    assert job["status"] == "succeeded"
    refs = get_settings().cache_dir / "refs"  # type: ignore[operator]  # copies, by pin
    assert not refs.exists() or not any(p.name.startswith(ds["sha256"]) for p in refs.iterdir())
    mapped = refer(api_a, f"s3://{bucket}/z/pets.zip", columns={"label": "y"})
    assert mapped.status_code == 422 and problem(mapped)["code"] == "invalid_columns"
    # The shape of our own manifest export: a CSV naming the images beside it.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.csv", "path,label\n" + "".join(f"{n},{n[:3]}\n" for n in members))
        for name, data in members.items():
            zf.writestr(name, data)
    s3.pipe_file(f"{bucket}/z/with-manifest.zip", buf.getvalue())
    listed = refer(api_a, f"s3://{bucket}/z/with-manifest.zip").json()
    assert (listed["status"], listed["format"], listed["num_samples"]) == (
        "ready", "manifest_zip", 12,
    )  # fmt: skip


def test_hugging_face_directory(api_a: Api, s3, bucket: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import datasets

    members = image_members(3)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES))}
    )
    hf = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": b, "path": None} for b in members.values()],
            "label": [list(CLASSES).index(n.split("/")[0]) for n in members],
        },
        features=features,
    )
    hf.save_to_disk(str(tmp_path / "hf"))
    s3.put(str(tmp_path / "hf") + "/", f"{bucket}/hf/", recursive=True)
    resp = refer(api_a, f"s3://{bucket}/hf/")
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["format"], ds["num_samples"]) == ("hf_dataset", 9)
    assert ds["classes"] == {"blue": 3, "green": 3, "red": 3}


# Bad input -------------------------------------------------------------------------------------


def test_missing_prefix_and_object_are_404(api_a: Api, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    resp = refer(api_a, f"s3://{bucket}/nothing/")
    assert resp.status_code == 404, resp.text
    assert problem(resp)["code"] == "reference_not_found"
    assert f"s3://{bucket}/nothing/" in problem(resp)["message"]
    resp = refer(api_a, f"s3://no-such-bucket-{uuid.uuid4().hex[:6]}/x.parquet")
    assert resp.status_code == 404, resp.text


def test_a_brace_pattern_naming_too_many_shards_is_refused_at_once(
    api_a: Api, s3, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    """A hundred million shard names are counted, not expanded (nor looked up one by one): the
    answer is a 422 limit_exceeded naming the uri and the count, within a second."""
    import time

    s3.pipe_file(f"{bucket}/wds/x-0.tar", b"")
    uri = f"s3://{bucket}/wds/x-{{0..99999999}}.tar"
    started = time.monotonic()
    resp = refer(api_a, uri)
    elapsed = time.monotonic() - started
    assert resp.status_code == 422, resp.text
    err = problem(resp)
    assert err["code"] == "limit_exceeded"
    assert uri in err["message"] and "100,000,000 shards" in err["message"], err
    assert elapsed < 1.0, elapsed
    # Nothing was registered.
    listed = api_a.get("/v1/datasets", params={"limit": 100}).json()["items"]
    assert uri not in [d.get("uri") for d in listed]


def test_many_shards_are_found_by_one_listing_and_a_missing_one_is_named(
    api_a: Api, s3, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    """40 shards (more than are asked for one by one) are found in their folder's listing; the
    same pattern with one shard deleted is a 404 naming that shard, as is a short pattern."""
    members = image_members(14, seed=5)  # 42 images, one sample per shard
    for k, name in enumerate(list(members)[:40]):
        tar = wds_tar({name: members[name]}, cls={name: k % 3})
        s3.pipe_file(f"{bucket}/many/s-{k:03d}.tar", tar)
    uri = f"s3://{bucket}/many/s-{{000..039}}.tar"
    ds = refer(api_a, uri)
    assert ds.status_code == 201, ds.text
    assert (ds.json()["format"], ds.json()["num_samples"]) == ("webdataset", 40)
    s3.rm_file(f"{bucket}/many/s-017.tar")
    gone = refer(api_a, uri)
    assert gone.status_code == 404, gone.text
    assert f"s3://{bucket}/many/s-017.tar" in problem(gone)["message"]
    few = refer(api_a, f"s3://{bucket}/many/s-{{016..017}}.tar")  # asked for one by one
    assert few.status_code == 404, few.text
    assert f"s3://{bucket}/many/s-017.tar" in problem(few)["message"]


def test_workers_copying_one_reference_at_once_share_one_copy(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """Four threads copy the same pinned shards at once: each gets the one complete copy, and
    no temporary copy is left (the later ones find the first in place and drop theirs)."""
    import threading

    from app.config import get_settings
    from app.datasets import sources

    payloads = {f"s-{k}.tar": os.urandom(200_000 + k) for k in range(3)}
    for name, data in payloads.items():
        s3.pipe_file(f"{bucket}/race/{name}", data)
    settings = get_settings()
    # Named as plain tar archives: those are copied (WebDataset shards are streamed instead).
    seen = sources.look(f"s3://{bucket}/race/s-{{0..2}}.tar", settings, "tar", None)
    assert seen.kind == "copy"
    barrier = threading.Barrier(4)
    results: list[Path] = []
    errors: list[BaseException] = []

    def copy() -> None:
        barrier.wait()
        try:
            results.append(sources._copy(seen, settings))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=copy) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 4 and len(set(results)) == 1
    dest = results[0]
    assert (dest / ".complete").exists()
    assert {p.name: p.read_bytes() for p in dest.iterdir() if p.name != ".complete"} == payloads
    refs = dest.parent
    assert [p.name for p in refs.iterdir() if p.name.startswith(seen.digest)] == [seen.digest]
    # Settling a finished copy onto the complete one keeps the one in place.
    spare = refs / f"{seen.digest}.partial-test"
    spare.mkdir()
    (spare / ".complete").touch()
    sources._settle(spare, dest)
    assert spare.exists() and (dest / "s-0.tar").read_bytes() == payloads["s-0.tar"]
    import shutil

    shutil.rmtree(spare)


def test_scheme_not_enabled_says_how_to_enable_it(api_a: Api, service_env: dict[str, str]) -> None:
    resp = refer(api_a, "gs://my-bucket/datasets/")
    assert resp.status_code == 422, resp.text
    assert problem(resp)["code"] == "reference_not_allowed"
    assert "DLCPRUNE_REFERENCE_SCHEMES=gs" in problem(resp)["message"]
    assert "GOOGLE_APPLICATION_CREDENTIALS" in problem(resp)["message"]


def test_manifest_row_outside_the_store_is_refused(api_a: Api, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    put_images(s3, f"{bucket}/imgs", per_class=2)
    body = "path,label\nimgs/red/000.png,red\ns3://other-bucket/red/001.png,red\n"
    s3.pipe_file(f"{bucket}/m.csv", body.encode())
    resp = refer(api_a, f"s3://{bucket}/m.csv")
    assert resp.status_code == 422, resp.text
    err = problem(resp)
    assert err["code"] == "unsafe_path"
    assert f"s3://{bucket}/m.csv[s3://other-bucket/red/001.png]:2" in err["message"]


def test_manifest_mixed_label_types_and_unmapped_column(api_a: Api, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    put_images(s3, f"{bucket}/imgs", per_class=2)
    lines = [{"path": "imgs/red/000.png", "label": 1}, {"path": "imgs/red/001.png", "label": "red"}]
    s3.pipe_file(f"{bucket}/m.jsonl", "\n".join(json.dumps(x) for x in lines).encode())
    resp = refer(api_a, f"s3://{bucket}/m.jsonl")
    assert resp.status_code == 422, resp.text
    assert problem(resp)["code"] == "invalid_record"
    assert problem(resp)["message"].startswith(f"s3://{bucket}/m.jsonl:2: ")
    resp = refer(api_a, f"s3://{bucket}/m.jsonl", columns={"image": "picture"})
    assert resp.status_code == 422, resp.text
    assert problem(resp)["code"] == "missing_field"
    assert "'picture'" in problem(resp)["message"]


def test_shard_corrupt_half_way_and_traversal_in_a_member(api_a: Api, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    members = image_members(4)
    cls = {n: 0 for n in members}
    good = wds_tar(members, cls=cls)
    s3.pipe_file(f"{bucket}/cut/shard-00.tar", good[: len(good) // 2 + 100])
    resp = refer(api_a, f"s3://{bucket}/cut/shard-{{00..00}}.tar")
    assert resp.status_code == 422, resp.text
    assert problem(resp)["code"] in ("corrupt_archive", "corrupt_image")
    assert f"s3://{bucket}/cut/shard-00.tar" in problem(resp)["message"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for member, payload in (("../evil.png", members["red/000.png"]), ("../evil.cls", b"0")):
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    s3.pipe_file(f"{bucket}/evil/shard-00.tar", buf.getvalue())
    resp = refer(api_a, f"s3://{bucket}/evil/shard-{{00..00}}.tar")
    assert resp.status_code == 422, resp.text
    assert problem(resp)["code"] == "unsafe_path"
    assert "../evil" in problem(resp)["message"]


def test_object_changed_after_registration_fails_the_job(api_a: Api, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    members = put_images(s3, f"{bucket}/pets", per_class=4)
    ds = refer(api_a, f"s3://{bucket}/pets/").json()
    assert ds["status"] == "ready"
    s3.pipe_file(f"{bucket}/pets/red/001.png", members["red/002.png"])
    job = api_a.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert finish(job) == "failed"
    done = api_a.get(f"/v1/jobs/{job['id']}").json()
    assert done["error"]["code"] == "source_changed", done
    assert "'red/001.png' was changed" in done["error"]["message"]
    assert done.get("num_scored") in (None, 0)


def test_a_download_from_a_remote_blob_store_streams_and_removes_its_temporary_copy(
    s3, bucket: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import glob
    import tempfile

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from app.blobstore import BlobStore
    from app.selections.export import ExportFile, file_response

    blobs = BlobStore(f"s3://{bucket}/blobs", cache_dir=tmp_path)
    payload = os.urandom(3 * 2**20 + 17)
    blobs.put_bytes("exports/x/data.zip", payload)
    app = FastAPI()

    @app.get("/x")
    def download():  # type: ignore[no-untyped-def]
        return file_response(blobs, ExportFile("exports/x/data.zip", "data.zip", "application/zip"))

    pattern = os.path.join(tempfile.gettempdir(), "dlcprune-export-*")
    before = set(glob.glob(pattern))
    with TestClient(app) as client:
        resp = client.get("/x")
    assert resp.status_code == 200 and resp.content == payload
    assert resp.headers["content-length"] == str(len(payload))
    assert set(glob.glob(pattern)) == before


def test_denied_access_is_403_and_storage_options_are_never_shown(
    api_a: Api, s3, service_env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    """A second S3 server that checks credentials (moto with IAM auth from the first request)
    refuses the service's: 403 access_denied, naming the URI and not the options. The store is
    chosen by DLCPRUNE_STORAGE_OPTIONS, whose secret never appears in the answer."""
    import socket
    import subprocess
    import sys
    import time

    from app import storage
    from app.config import reset_settings

    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    secret = f"secret-{uuid.uuid4().hex}"
    options = {"s3": {"endpoint_url": f"http://127.0.0.1:{port}", "secret": secret, "key": "k"}}
    os.environ["DLCPRUNE_STORAGE_OPTIONS"] = json.dumps(options)
    reset_settings()
    storage._stores.clear()
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        resp = refer(api_a, "s3://locked/pets/")
        assert resp.status_code == 403, resp.text
        err = problem(resp)
        assert err["code"] == "access_denied"
        assert "s3://locked/pets/" in err["message"]
        assert secret not in resp.text
        from app.config import get_settings

        assert secret not in repr(get_settings())
    finally:
        os.environ.pop("DLCPRUNE_STORAGE_OPTIONS", None)
        reset_settings()
        storage._stores.clear()
        proc.terminate()
        proc.wait()


def test_a_large_prefix_is_indexed_by_the_worker_against_its_registration_pin(
    api_a: Api, s3, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    """Above DLCPRUNE_INDEX_SYNC_MAX_OBJECTS the POST answers 202 (pinned, queued); an object
    changed before the worker indexes it makes the dataset invalid with source_changed."""
    from app.config import reset_settings
    from worker.runner import index_dataset

    members = put_images(s3, f"{bucket}/big", per_class=4)
    os.environ["DLCPRUNE_INDEX_SYNC_MAX_OBJECTS"] = "5"
    reset_settings()
    try:
        ok = refer(api_a, f"s3://{bucket}/big/")
        assert ok.status_code == 202, ok.text
        assert ok.json()["status"] == "indexing" and len(ok.json()["sha256"]) == 64
        assert index_dataset(ok.json()["id"]) == "ready"
        changed = refer(api_a, f"s3://{bucket}/big/")
        assert changed.status_code == 202, changed.text
        s3.pipe_file(f"{bucket}/big/red/000.png", members["red/001.png"])
        assert index_dataset(changed.json()["id"]) == "invalid"
        ds = api_a.get(f"/v1/datasets/{changed.json()['id']}").json()
        assert ds["error"]["code"] == "source_changed"
        assert "'red/000.png' was changed" in ds["error"]["message"]
    finally:
        os.environ.pop("DLCPRUNE_INDEX_SYNC_MAX_OBJECTS", None)
        reset_settings()
