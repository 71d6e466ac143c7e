"""Exports beside the original format (manifests, Parquet, bundles) and the provenance record of a
selection, in its JSON and in every zip that carries it."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import uuid
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dlcprune.core.selection import DEFAULT_SPLIT
from tests.client.conftest import FAST
from tests.conftest import Api, finish
from tests.problems import problem
from tests.service.data import image_members, write_npz


@pytest.fixture(scope="module")
def selection(app_client, key_a: str, scored: dict) -> dict:  # type: ignore[no-untyped-def]
    api = Api(app_client, key_a)
    url = f"/v1/jobs/{scored['job']['id']}/selections"
    sel = api.post(url, json={"keep": 0.3, "strategy": "flexrand", "seed": 5}).json()
    scores = api.get(f"/v1/jobs/{scored['job']['id']}/scores").json()["items"]
    kept = [i["sample_id"] for i in api.get(sel["items_url"]).json()["items"]]
    return {**scored, "selection": sel, "scores": scores, "kept": kept}


def export(api: Api, sel: dict, **params: str):  # type: ignore[no-untyped-def]
    resp = api.get(sel["export_url"], params=params)
    assert resp.status_code == 200, resp.text
    return resp


def test_manifests_list_every_sample_with_its_score_and_kept_flag(
    api_a: Api, selection: dict
) -> None:
    sel, scores, kept = selection["selection"], selection["scores"], set(selection["kept"])
    resp = export(api_a, sel, format="manifest-csv")
    assert resp.headers["content-type"].startswith("text/csv")
    assert f'filename="colours-{sel["id"][:8]}-manifest.csv"' in resp.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert rows[0] == ["sample_id", "label", "score", "kept"]
    assert len(rows) == 1 + len(scores) == 25
    for row, expected in zip(rows[1:], scores, strict=True):
        assert row[0] == expected["sample_id"] and row[1] == expected["label"]
        assert np.float32(row[2]) == np.float32(expected["score"])
        assert row[3] == ("true" if row[0] in kept else "false")
    assert sum(r[3] == "true" for r in rows[1:]) == sel["size"] == 7

    resp = export(api_a, sel, format="manifest-jsonl")
    assert resp.headers["content-type"].startswith("application/jsonl")
    records = [json.loads(line) for line in resp.text.splitlines()]
    assert [r["sample_id"] for r in records] == [s["sample_id"] for s in scores]
    assert [r["score"] for r in records] == [s["score"] for s in scores]
    assert [r["label"] for r in records] == [s["label"] for s in scores]
    assert {r["sample_id"] for r in records if r["kept"]} == kept
    assert all(isinstance(r["kept"], bool) for r in records)


def test_parquet_holds_the_scores(api_a: Api, selection: dict) -> None:
    sel, scores, kept = selection["selection"], selection["scores"], set(selection["kept"])
    resp = export(api_a, sel, format="parquet")
    assert resp.headers["content-type"] == "application/vnd.apache.parquet"
    assert resp.headers["content-disposition"].endswith(f'-{sel["id"][:8]}-scores.parquet"')
    table = pq.read_table(io.BytesIO(resp.content))
    assert table.column_names == ["sample_id", "label", "score", "kept"]
    assert str(table.schema.field("score").type) == "float"
    assert table.column("sample_id").to_pylist() == [s["sample_id"] for s in scores]
    assert table.column("label").to_pylist() == [s["label"] for s in scores]
    assert np.array_equal(
        table.column("score").to_numpy(), np.array([s["score"] for s in scores], dtype=np.float32)
    )
    assert table.column("kept").to_pylist() == [s["sample_id"] in kept for s in scores]
    meta = json.loads(table.schema.metadata[b"dlcprune.provenance"])
    assert meta == sel["provenance"]


def test_the_bundle_holds_the_export_the_manifest_and_provenance(
    api_a: Api, selection: dict
) -> None:
    sel, kept = selection["selection"], selection["kept"]
    resp = export(api_a, sel, format="bundle")
    assert resp.headers["content-type"] == "application/zip"
    original = f"colours-{sel['id'][:8]}.zip"
    assert f'filename="colours-{sel["id"][:8]}-bundle.zip"' in resp.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        assert sorted(zf.namelist()) == sorted([original, "manifest.csv", "provenance.json"])
        assert zf.read(original) == export(api_a, sel).content
        assert zf.read("manifest.csv") == export(api_a, sel, format="manifest-csv").content
        assert json.loads(zf.read("provenance.json")) == sel["provenance"]
        with zipfile.ZipFile(io.BytesIO(zf.read(original))) as inner:
            assert sorted(inner.namelist()) == sorted(kept)


def test_provenance_records_where_a_selection_came_from(
    api_a: Api, selection: dict, colours: Path
) -> None:
    sel, job = selection["selection"], selection["job"]
    prov = sel["provenance"]
    assert prov["schema"] == "dlcprune.provenance/1"
    assert prov["dataset"]["id"] == selection["dataset"]["id"]
    assert prov["dataset"]["sha256"] == selection["dataset"]["sha256"]
    assert prov["dataset"]["sha256"] == hashlib.sha256(colours.read_bytes()).hexdigest()
    assert prov["model"] == {
        "name": "efficientnet_lite0",
        "weights_id": None,
        "weights_sha256": None,
    }
    assert prov["method"] == {"name": "dlc", "params": job["params"]}
    assert prov["method"]["params"]["levels"] == FAST["levels"]
    assert prov["job"]["id"] == job["id"] and prov["job"]["cached"] is job["cached"]
    assert prov["selection"] == {
        "id": sel["id"],
        "strategy": "flexrand",
        "keep": 0.3,
        "split": DEFAULT_SPLIT,  # the selection named none
        "hard_cutoff": 0.1,
        "seed": 5,
        "size": 7,
        "excluded": 0,
    }
    assert prov["created_at"] == sel["created_at"]
    assert prov["code"]["version"] == metadata.version("dlcprune")
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    assert prov["code"]["commit"] == (head.stdout.strip() if head.returncode == 0 else None)

    # The same record everywhere: read, listed, and inside the zips.
    assert api_a.get(sel["url"]).json()["provenance"] == prov
    listed = api_a.get(f"/v1/jobs/{job['id']}/selections", params={"limit": 1000}).json()
    assert next(s for s in listed["items"] if s["id"] == sel["id"])["provenance"] == prov
    stored = export(api_a, sel, provenance="true")
    with zipfile.ZipFile(io.BytesIO(stored.content)) as zf:
        assert json.loads(zf.read("provenance.json")) == prov
        assert sorted(zf.namelist()) == sorted([*selection["kept"], "provenance.json"])
        originals = image_members(8)
        assert all(zf.read(k) == originals[k] for k in selection["kept"])


def test_the_original_format_is_unchanged_by_default(api_a: Api, selection: dict) -> None:
    sel, kept = selection["selection"], selection["kept"]
    first = export(api_a, sel)
    assert first.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(first.content)) as zf:
        assert sorted(zf.namelist()) == sorted(kept)  # no provenance.json
    assert export(api_a, sel, format="original").content == first.content


def test_npz_exports_carry_provenance_in_the_bundle(app_client, key_a: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]

    api = Api(app_client, key_a)
    src = write_npz(tmp_path / "arrays.npz")
    ds = api.upload(src).json()
    job = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert finish(job) == "succeeded"
    sel = api.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5}).json()
    kept = [int(i["sample_id"]) for i in api.get(sel["items_url"]).json()["items"]]
    plain = export(api, sel, provenance="true").content  # not a zip export: as it was
    out = np.load(io.BytesIO(plain))
    assert sorted(out.files) == ["x", "y"]
    assert np.array_equal(out["x"], np.load(src)["x"][kept])
    bundle = export(api, sel, format="bundle").content
    with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
        npz = f"arrays-{sel['id'][:8]}.npz"
        assert sorted(zf.namelist()) == sorted([npz, "manifest.csv", "provenance.json"])
        assert zf.read(npz) == plain
        assert json.loads(zf.read("provenance.json")) == sel["provenance"]
        rows = zf.read("manifest.csv").decode().splitlines()
        assert len(rows) == 21 and rows[0] == "sample_id,label,score,kept"


def test_export_errors(api_a: Api, api_b: Api, selection: dict) -> None:
    sel = selection["selection"]
    bad = api_a.get(sel["export_url"], params={"format": "xlsx"})
    assert bad.status_code == 422 and problem(bad)["code"] == "validation_error"
    for fmt in ("original", "manifest-csv", "parquet", "bundle"):
        other = api_b.get(sel["export_url"], params={"format": fmt})
        assert other.status_code == 404 and problem(other)["code"] == "not_found"
    missing = api_a.get(f"/v1/selections/{uuid.uuid4()}/export", params={"format": "bundle"})
    assert missing.status_code == 404


def test_writers_on_unscored_unlabelled_and_instruction_data() -> None:
    """The writers alone: a null score for an unscored sample, null labels when there are none,
    and the tokens column of instruction data."""
    import pyarrow as pa

    from app.datasets.indexing import DatasetIndex
    from app.selections.export import write_manifest, write_parquet

    ids = [b"a", b"b,c", b"d\xc3\xa9"]
    offsets = np.cumsum([0, *map(len, ids)]).astype(np.int64)
    index = DatasetIndex(
        ids_utf8=np.frombuffer(b"".join(ids), dtype=np.uint8),
        id_offsets=offsets,
        label_codes=np.full(3, -1, dtype=np.int32),
        class_names=[],
    )
    scores = np.array([0.5, np.nan, 2.25], dtype=np.float32)
    tokens = np.array([4, 0, 7], dtype=np.int32)
    kept = np.array([0, 2])
    buf = io.BytesIO()
    write_manifest(buf, index, scores, kept, "csv")
    assert buf.getvalue().decode() == (
        'sample_id,label,score,kept\na,,0.5,true\n"b,c",,,false\ndé,,2.25,true\n'
    )
    buf = io.BytesIO()
    write_manifest(buf, index, scores, kept, "jsonl")
    records = [json.loads(line) for line in buf.getvalue().decode().splitlines()]
    assert records[1] == {"sample_id": "b,c", "label": None, "score": None, "kept": False}
    buf = io.BytesIO()
    write_parquet(buf, index, scores, tokens, kept, provenance=b"{}")
    table = pq.read_table(io.BytesIO(buf.getvalue()))
    assert table.column_names == ["sample_id", "label", "score", "kept", "tokens"]
    assert table.column("score").to_pylist() == [0.5, None, 2.25]
    assert table.column("label").null_count == 3
    assert table.column("tokens").type == pa.int32()
    assert table.column("tokens").to_pylist() == [4, 0, 7]
    assert table.column("kept").to_pylist() == [True, False, True]
