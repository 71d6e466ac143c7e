"""Kept embeddings: every scoring job leaves its samples' unmasked features in the blob store;
they download as npy or Parquet, feed label issues and feature strategies, and a job scored
before they were kept answers 409 with a hint to rescore."""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, update

from app.models import ScoreSet
from tests.conftest import Api, finish
from tests.problems import error_code, problem
from tests.service.data import write_image_zip

FAST = {"image_size": 32, "levels": 2}


@pytest.fixture(scope="module")
def scored(app_client, key_a: str, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[no-untyped-def]
    api = Api(app_client, key_a)
    path = write_image_zip(tmp_path_factory.mktemp("emb") / "emb.zip", per_class=10, seed=13)
    ds = api.upload(path).json()
    job = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert finish(job) == "succeeded"
    return {"dataset": ds, "job": api.get(f"/v1/jobs/{job['id']}").json(), "path": path}


def test_embeddings_download_as_npy_and_parquet(api_a: Api, scored: dict) -> None:
    job = scored["job"]
    r = api_a.get(f"/v1/jobs/{job['id']}/embeddings")
    assert r.status_code == 200, r.text
    x = np.load(io.BytesIO(r.content), allow_pickle=False)
    # efficientnet_lite0's pooled features: 1280 wide, one row per sample, float16
    assert x.dtype == np.float16 and x.shape == (30, 1280)
    assert r.headers["x-embedding-dims"] == "1280"
    assert np.all(np.isfinite(x)) and float(np.abs(x).sum()) > 0
    p = api_a.get(f"/v1/jobs/{job['id']}/embeddings", params={"format": "parquet"})
    assert p.status_code == 200
    table = pq.read_table(io.BytesIO(p.content))
    assert table.column_names == ["index", "sample_id", "label", "embedding"]
    assert table.column("index").to_pylist() == list(range(30))
    rows = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert np.array_equal(rows, x)
    scores = api_a.get(f"/v1/jobs/{job['id']}/scores", params={"limit": 1000}).json()
    ids = [item["sample_id"] for item in scores["items"]]
    assert table.column("sample_id").to_pylist() == ids
    assert set(table.column("label").to_pylist()) == {"red", "green", "blue"}


def test_label_issues_list_the_least_confident(api_a: Api, scored: dict) -> None:
    job = scored["job"]
    r = api_a.get(f"/v1/jobs/{job['id']}/label-issues", params={"share": 0.1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 3 and len(body["items"]) == 3 and body["num_samples"] == 30
    conf = [item["self_confidence"] for item in body["items"]]
    assert conf == sorted(conf) and all(0 <= c <= 1 for c in conf)
    again = api_a.get(f"/v1/jobs/{job['id']}/label-issues", params={"share": 0.1}).json()
    assert again == body
    bad = api_a.get(f"/v1/jobs/{job['id']}/label-issues", params={"share": 0.1, "threshold": 0.2})
    assert bad.status_code == 422 and error_code(bad) == "invalid_parameters"


def test_feature_strategies_select_exact_sizes(api_a: Api, scored: dict) -> None:
    job = scored["job"]
    for strategy in ("kcenter", "herding", "moderate"):
        r = api_a.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5, "strategy": strategy})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["size"] == 15 and body["class_counts"] == {"blue": 5, "green": 5, "red": 5}
    excl = api_a.post(
        f"/v1/jobs/{job['id']}/selections",
        json={"keep": 0.5, "strategy": "stratified", "exclude_suspected": {"share": 0.2}},
    )
    assert excl.status_code == 201, excl.text
    suspected = api_a.get(f"/v1/jobs/{job['id']}/label-issues", params={"share": 0.2}).json()
    left_out = {item["sample_id"] for item in suspected["items"]}
    items = api_a.get(f"/v1/selections/{excl.json()['id']}/items", params={"limit": 100}).json()
    kept = {item["sample_id"] for item in items["items"]}
    assert len(kept) == 15 and not kept & left_out


def test_a_job_scored_before_embeddings_were_kept_answers_409_then_rescores(
    api_a: Api, scored: dict, service_env: dict[str, str]
) -> None:
    job = scored["job"]
    engine = create_engine(os.environ["DLCPRUNE_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(
            update(ScoreSet)
            .where(ScoreSet.id == _score_set_id(job["id"], engine))
            .values(embeddings_key=None, embeddings_dims=None, embeddings_projected=None)
        )
    r = api_a.get(f"/v1/jobs/{job['id']}/embeddings")
    assert r.status_code == 409 and error_code(r) == "no_embeddings"
    assert "rescore" in problem(r)["message"]
    s = api_a.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5, "strategy": "kcenter"})
    assert s.status_code == 409 and error_code(s) == "no_embeddings"
    again = api_a.post(
        "/v1/jobs", json={"dataset_id": scored["dataset"]["id"], "params": FAST}
    ).json()
    assert again["status"] == "queued" and not again["cached"]
    assert finish(again) == "succeeded"
    r = api_a.get(f"/v1/jobs/{again['id']}/embeddings")
    assert r.status_code == 200
    assert np.load(io.BytesIO(r.content)).shape == (30, 1280)
    engine.dispose()


def _score_set_id(job_id: str, engine) -> object:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from app.models import Job

    with engine.connect() as conn:
        return conn.execute(select(Job.score_set_id).where(Job.id == job_id)).scalar_one()


def test_unknown_job_and_other_tenant(api_a: Api, api_b: Api, scored: dict) -> None:
    job = scored["job"]
    assert api_b.get(f"/v1/jobs/{job['id']}/embeddings").status_code == 404
    missing = "00000000-0000-4000-8000-000000000000"
    assert api_a.get(f"/v1/jobs/{missing}/label-issues").status_code == 404


@pytest.mark.parametrize("method", ["moderate", "random"])
def test_baseline_jobs_keep_pca_reduced_embeddings(
    api_a: Api, scored: dict, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import reset_settings

    monkeypatch.setenv("DLCPRUNE_EMBEDDINGS_PCA_DIMS", "8")
    reset_settings()
    try:
        body = {
            "dataset_id": scored["dataset"]["id"],
            "method": method,
            "params": {"image_size": 32},
        }
        job = api_a.post("/v1/jobs", json=body).json()
        assert finish(job) == "succeeded"
    finally:
        monkeypatch.undo()
        reset_settings()
    r = api_a.get(f"/v1/jobs/{job['id']}/embeddings")
    assert r.status_code == 200, r.text
    x = np.load(io.BytesIO(r.content))
    assert x.shape == (30, 8) and r.headers["x-embedding-projected"] == "true"
    proj = api_a.get(f"/v1/jobs/{job['id']}/embeddings/projection")
    assert proj.status_code == 200
    with np.load(io.BytesIO(proj.content)) as z:
        assert z["components"].shape == (8, 1280) and z["mean"].shape == (1280,)
    # the first job kept its features whole: no projection
    whole = api_a.get(f"/v1/jobs/{scored['job']['id']}/embeddings/projection")
    assert (whole.status_code, error_code(whole)) == (409, "no_projection")


def test_two_jobs_scoring_one_score_set_leave_one_embeddings_blob(
    app_client, service_env: dict[str, str], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Two jobs for the same scores, both claimed before either stored: the second to store
    finds the score set with the first's embeddings, and its own blobs are deleted."""
    import threading
    import uuid
    from pathlib import Path

    from tests.conftest import make_key
    from worker import runner

    api = Api(app_client, make_key(f"emb-race-{uuid.uuid4().hex[:6]}"))  # an empty cache
    ds = api.upload(write_image_zip(tmp_path / "race.zip", per_class=4, seed=21)).json()
    first, second = (
        api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json() for _ in "12"
    )
    assert first["status"] == second["status"] == "queued" and first["id"] != second["id"]
    written, go_on = threading.Event(), threading.Event()
    keep = runner._keep_embeddings

    def held(job_id, *args):  # type: ignore[no-untyped-def]
        made = keep(job_id, *args)
        if str(job_id) == second["id"]:  # the second job's blobs are written; it stores later
            written.set()
            assert go_on.wait(120)
        return made

    monkeypatch.setattr(runner, "_keep_embeddings", held)
    outcome: list[str] = []
    late = threading.Thread(target=lambda: outcome.append(runner.run_job(second["id"])))
    late.start()
    try:
        assert written.wait(300)
        assert runner.run_job(first["id"]) == "succeeded"
    finally:
        go_on.set()
        late.join(300)
    assert outcome == ["succeeded"]
    blobs = Path(service_env["DLCPRUNE_BLOB_URL"])
    kept = [j["id"] for j in (first, second) if (blobs / "embeddings" / j["id"]).exists()]
    assert kept == [first["id"]]
    losses = [j["id"] for j in (first, second) if (blobs / "losses" / f"{j['id']}.npy").exists()]
    assert losses == [first["id"]]
    # both jobs answer from the one score set's embeddings
    got = [api.get(f"/v1/jobs/{j['id']}/embeddings") for j in (first, second)]
    assert [r.status_code for r in got] == [200, 200] and got[0].content == got[1].content
    assert np.load(io.BytesIO(got[0].content)).shape == (12, 1280)
