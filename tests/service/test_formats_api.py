"""Issue 14's formats through the service: a Parquet table of image bytes uploaded, and a Parquet
manifest of image paths referenced with file://, each indexed, scored by the worker's own task
code and selected; a WebDataset shard and gzip JSONL upload are indexed."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dlcprune.core.selection import allocate, resolve_keep
from tests.conftest import Api
from tests.problems import problem
from tests.service.data import image_members
from worker.runner import run_job

FAST = {"image_size": 32, "levels": 2}


def parquet_of_bytes(path: Path, per_class: int = 8) -> Path:
    members = image_members(per_class)
    table = pa.table(
        {
            "id": list(members),
            "img": list(members.values()),
            "y": [name.split("/")[0] for name in members],
        }
    )
    pq.write_table(table, path, row_group_size=10)
    return path


def score_and_select(api: Api, dataset: dict, keep: float = 0.5) -> dict:
    job = api.post("/v1/jobs", json={"dataset_id": dataset["id"], "params": FAST})
    assert job.status_code == 202, job.text
    assert run_job(job.json()["id"]) == "succeeded"
    resp = api.post(f"/v1/jobs/{job.json()['id']}/selections", json={"keep": keep, "seed": 3})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_a_parquet_upload_of_image_bytes_is_indexed_scored_and_selected(
    api_a: Api, tmp_path: Path
) -> None:
    path = parquet_of_bytes(tmp_path / "colours.parquet")
    # 'img' is one of the image column's default names, 'y' is no label column's: an upload
    # (which has no column mapping) is refused, naming what is missing.
    resp = api_a.upload(path)
    assert resp.status_code == 422, resp.text
    error = problem(resp)
    assert error["code"] == "missing_field"
    assert error["message"].startswith("colours.parquet: no label column")

    members = image_members(8)
    table = pa.table(
        {
            "id": list(members),
            "image": list(members.values()),
            "label": [name.split("/")[0] for name in members],
        }
    )
    good = tmp_path / "good.parquet"
    pq.write_table(table, good, row_group_size=10)
    ds = api_a.upload(good).json()
    assert (ds["status"], ds["format"], ds["kind"], ds["num_samples"]) == (
        "ready",
        "parquet",
        "image",
        24,
    ), ds
    assert ds["classes"] == {"blue": 8, "green": 8, "red": 8}
    sel = score_and_select(api_a, ds)
    expected = resolve_keep(0.5, 24)
    assert sel["size"] == expected
    assert sel["class_counts"] == dict(
        zip(["blue", "green", "red"], allocate(np.array([8, 8, 8]), expected).tolist(), strict=True)
    )
    kept = [
        i["sample_id"] for i in api_a.get(sel["items_url"], params={"limit": 100}).json()["items"]
    ]
    assert len(set(kept)) == expected and set(kept) <= set(members)
    export = api_a.get(sel["export_url"])
    assert export.status_code == 200
    with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
        assert sorted(zf.namelist()) == sorted(kept)
        assert all(zf.read(name) == members[name] for name in kept)


def test_a_parquet_manifest_referenced_by_file_uri(api_a: Api, service_env: dict[str, str]) -> None:
    root = Path(service_env["DLCPRUNE_FILE_ROOTS"]) / "pq-manifest"
    members = image_members(6, seed=1)
    for name, data in members.items():
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "images" / name).write_bytes(data)
    table = pa.table(
        {"path": [f"images/{n}" for n in members], "label": [n.split("/")[0] for n in members]}
    )
    pq.write_table(table, root / "manifest.parquet")
    resp = api_a.post("/v1/datasets", json={"uri": (root / "manifest.parquet").as_uri()})
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["status"], ds["format"], ds["num_samples"]) == ("ready", "parquet", 18), ds
    sel = score_and_select(api_a, ds, keep=0.5)
    assert sel["size"] == resolve_keep(0.5, 18)
    items = api_a.get(sel["items_url"], params={"limit": 100}).json()["items"]
    assert all(i["sample_id"].startswith("images/") for i in items)

    # A row pointing outside the manifest's root: invalid, naming the row.
    bad = pa.table({"path": ["images/red/000.png", "../elsewhere.png"], "label": ["a", "b"]})
    pq.write_table(bad, root / "bad.parquet")
    resp = api_a.post("/v1/datasets", json={"uri": (root / "bad.parquet").as_uri()})
    assert resp.status_code == 422, resp.text
    error = problem(resp)
    assert error["code"] == "unsafe_path", error
    assert "bad.parquet[../elsewhere.png]:2: image path contains '..'" in error["message"]


def test_a_webdataset_shard_and_gzip_jsonl_uploads_index(api_a: Api, tmp_path: Path) -> None:
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as tf:
        for k, data in enumerate(image_members(2).values()):
            for ext, body in (("png", data), ("cls", str(k % 3).encode())):
                info = tarfile.TarInfo(f"{k:06d}.{ext}")
                info.size = len(body)
                tf.addfile(info, io.BytesIO(body))
    ds = api_a.upload(shard).json()
    assert (ds["status"], ds["format"], ds["num_samples"]) == ("ready", "webdataset", 6), ds
    lines = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(5)]
    gz = tmp_path / "texts.jsonl.gz"
    gz.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in lines).encode()))
    ds = api_a.upload(gz).json()
    assert (ds["status"], ds["format"], ds["kind"], ds["num_samples"]) == (
        "ready",
        "text",
        "text",
        5,
    ), ds


def test_the_manifest_export_uploads_back_as_a_manifest_zip(
    api_a: Api, service_env: dict[str, str], tmp_path: Path
) -> None:
    root = Path(service_env["DLCPRUNE_FILE_ROOTS"]) / "csv-manifest"
    members = image_members(4, seed=2)
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    rows = "".join(f"{name},{name.split('/')[0]}\n" for name in members)
    (root / "m.csv").write_text("path,label\n" + rows)
    ds = api_a.post("/v1/datasets", json={"uri": (root / "m.csv").as_uri()}).json()
    assert (ds["status"], ds["format"], ds["num_samples"]) == ("ready", "manifest", 12), ds
    sel = score_and_select(api_a, ds)
    kept = sorted(i["sample_id"] for i in api_a.get(sel["items_url"]).json()["items"])
    export = api_a.get(sel["export_url"])
    assert export.status_code == 200
    exported = tmp_path / "pruned.zip"
    exported.write_bytes(export.content)
    again = api_a.upload(exported).json()
    assert (again["status"], again["format"], again["num_samples"]) == (
        "ready",
        "manifest_zip",
        len(kept),
    ), again
    items = api_a.get(f"/v1/datasets/{again['id']}").json()
    assert items["classes"] == {
        c: sum(1 for k in kept if k.startswith(c + "/"))
        for c in ("blue", "green", "red")
        if any(k.startswith(c + "/") for k in kept)
    }


def test_references_indexed_inline_keep_their_own_index(
    api_a: Api, service_env: dict[str, str]
) -> None:
    """Each reference's index blob is named after its own id (it was ``datasets/None/...`` for
    every reference indexed at registration, so a later one's index replaced an earlier one's)."""
    from app.db import session_scope
    from app.models import Dataset

    root = Path(service_env["DLCPRUNE_FILE_ROOTS"]) / "two-refs"
    root.mkdir()
    ids = []
    for n in (2, 3):
        table = pa.table({"text": [f"t{i}" for i in range(n)], "label": ["a"] * n})
        pq.write_table(table, root / f"t{n}.parquet")
        ds = api_a.post("/v1/datasets", json={"uri": (root / f"t{n}.parquet").as_uri()}).json()
        assert (ds["status"], ds["kind"], ds["num_samples"]) == ("ready", "text", n), ds
        ids.append(ds["id"])
    with session_scope() as session:
        for dataset_id in ids:
            dataset = session.get(Dataset, uuid.UUID(dataset_id))
            assert dataset is not None and dataset.index_key == f"datasets/{dataset_id}/index.npz"
