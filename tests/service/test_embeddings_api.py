"""Kept embeddings: every scoring job leaves its samples' unmasked features in the blob store;
they download as npy or Parquet, feed label issues and feature strategies, and a job scored
before they were kept answers 409 with a hint to rescore."""

from __future__ import annotations

import io
import os
import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, update

from app.models import ScoreSet
from dlcprune.core.evaluation import self_confidence, suspected_mislabels
from tests.conftest import Api, compute_label_issues, embeddings_key, finish
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


def test_label_issues_are_computed_by_the_worker_202_then_200(api_a: Api, scored: dict) -> None:
    job = scored["job"]
    url = f"/v1/jobs/{job['id']}/label-issues"
    r = api_a.get(url, params={"share": 0.1})
    assert r.status_code == 202, r.text
    assert r.headers["location"].endswith(f"{url}?share=0.1")
    assert int(r.headers["retry-after"]) >= 1
    assert r.json() == {"job_id": job["id"], "status": "queued", "url": r.headers["location"]}
    # asked again before the worker ran: still 202, one run
    assert api_a.get(url, params={"threshold": 0.3}).status_code == 202
    assert _runs(job["id"]) == [("queued", 0)]
    assert compute_label_issues(job["id"]) == "succeeded"
    assert compute_label_issues(job["id"]) == "skipped"  # a second delivery does nothing
    r = api_a.get(url, params={"share": 0.1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 3 and len(body["items"]) == 3 and body["num_samples"] == 30
    # exactly what dlcprune.core.evaluation computes from the kept embeddings and the labels
    x = np.load(io.BytesIO(api_a.get(f"/v1/jobs/{job['id']}/embeddings").content))
    conf = self_confidence(x, _label_codes(job["id"]), folds=5, seed=0)
    expected = suspected_mislabels(conf, share=0.1).tolist()
    assert [item["index"] for item in body["items"]] == expected
    assert [item["self_confidence"] for item in body["items"]] == [float(conf[i]) for i in expected]
    everything = api_a.get(url, params={"share": 1, "limit": 1000}).json()
    by_index = {item["index"]: item["self_confidence"] for item in everything["items"]}
    assert by_index == {i: float(c) for i, c in enumerate(conf)}
    again = api_a.get(url, params={"share": 0.1}).json()
    assert again == body
    bad = api_a.get(url, params={"share": 0.1, "threshold": 0.2})
    assert bad.status_code == 422 and error_code(bad) == "invalid_parameters"
    assert _runs(job["id"]) == [("succeeded", 1)]


def _runs(job_id: str) -> list[tuple[str, int]]:
    """(status, attempts) of the label-issue runs of the job's score set."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Job, LabelIssueRun

    with session_scope() as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        rows = session.scalars(
            select(LabelIssueRun).where(LabelIssueRun.score_set_id == job.score_set_id)
        ).all()
        return [(r.status, r.attempts) for r in rows]


def _label_codes(job_id: str) -> np.ndarray:
    from app.blobstore import get_blobstore
    from app.datasets.indexing import load_index
    from app.db import session_scope
    from app.models import Dataset, Job

    with session_scope() as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        dataset = session.get(Dataset, job.dataset_id)
        assert dataset is not None and dataset.index_key is not None
        labels = load_index(get_blobstore(), dataset.index_key).label_array()
    assert labels is not None
    return labels


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


@pytest.fixture(scope="module")
def fresh(app_client, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[no-untyped-def]
    """A job of a tenant of its own: nobody asked for its label issues yet."""
    from tests.conftest import make_key

    api = Api(app_client, make_key(f"emb-fresh-{uuid.uuid4().hex[:6]}"))
    path = write_image_zip(tmp_path_factory.mktemp("fresh") / "fresh.zip", per_class=6, seed=5)
    ds = api.upload(path).json()
    job = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert finish(job) == "succeeded"
    return {"api": api, "job": job}


def test_exclude_suspected_needs_label_issues_computed_first(fresh: dict) -> None:
    api, job = fresh["api"], fresh["job"]
    body = {"keep": 0.5, "strategy": "stratified", "exclude_suspected": {"share": 0.25}}
    early = api.post(f"/v1/jobs/{job['id']}/selections", json=body)
    assert (early.status_code, error_code(early)) == (409, "label_issues_not_ready")
    assert f"/v1/jobs/{job['id']}/label-issues" in problem(early)["message"]
    assert _runs(job["id"]) == [("queued", 0)]  # the refusal queued them
    assert api.get(f"/v1/jobs/{job['id']}/label-issues").status_code == 202
    assert compute_label_issues(job["id"]) == "succeeded"
    made = api.post(f"/v1/jobs/{job['id']}/selections", json=body)
    assert made.status_code == 201, made.text
    issues = api.get(f"/v1/jobs/{job['id']}/label-issues", params={"share": 0.25}).json()
    left_out = {item["sample_id"] for item in issues["items"]}
    assert len(left_out) == 5 and made.json()["excluded"] == 5  # round(18 x 0.25), half up
    items = api.get(f"/v1/selections/{made.json()['id']}/items", params={"limit": 100}).json()
    kept = {item["sample_id"] for item in items["items"]}
    assert len(kept) == made.json()["size"] == 9 and not kept & left_out


def test_the_reaper_requeues_label_issues_whose_worker_died(
    fresh: dict, service_env: dict[str, str]
) -> None:
    from datetime import timedelta
    from pathlib import Path

    from sqlalchemy import update

    from app.config import get_settings
    from app.db import session_factory
    from app.embeddings import issues
    from app.models import Job, LabelIssueRun, utcnow
    from worker.reaper import reap

    api, job = fresh["api"], fresh["job"]
    url = f"/v1/jobs/{job['id']}/label-issues"
    kept = Path(service_env["DLCPRUNE_BLOB_URL"]) / embeddings_key(job["id"])
    (kept / "self_confidence.npy").unlink()  # the result is gone: asked again, computed again
    assert api.get(url).status_code == 202
    settings = get_settings()
    with session_factory(settings)() as session:
        score_set_id = session.get(Job, uuid.UUID(job["id"])).score_set_id  # type: ignore[union-attr]

        def die(attempts: int) -> None:
            assert issues.claim(session, score_set_id, "dead", timedelta(seconds=10)) is not None
            session.execute(
                update(LabelIssueRun)
                .where(LabelIssueRun.score_set_id == score_set_id)
                .values(heartbeat_at=utcnow() - timedelta(hours=1), attempts=attempts)
            )
            session.commit()

        die(attempts=2)
        assert reap(settings)["requeued"] >= 1
        assert _runs(job["id"]) == [("queued", 2)]
        die(attempts=settings.max_attempts)
        assert reap(settings)["failed"] >= 1
    lost = api.get(url)
    assert (lost.status_code, error_code(lost)) == (500, "worker_lost")
    assert api.get(url).status_code == 202  # queued again by that report
    assert compute_label_issues(job["id"]) == "succeeded"
    assert api.get(url).status_code == 200


def test_a_failed_computation_answers_its_problem_document(
    fresh: dict, service_env: dict[str, str]
) -> None:
    """A run that did not finish answers 500 once and is computed again when asked again; a
    failure of the data (422) stays."""
    from pathlib import Path

    from app.embeddings import service

    api, job = fresh["api"], fresh["job"]
    url = f"/v1/jobs/{job['id']}/label-issues"
    kept = Path(service_env["DLCPRUNE_BLOB_URL"]) / embeddings_key(job["id"])
    features = (kept / "features.npy").read_bytes()
    try:
        (kept / "self_confidence.npy").unlink(missing_ok=True)  # the result is gone
        (kept / "features.npy").write_bytes(b"not an array")
        service._features.clear()
        assert api.get(url).status_code == 202  # computed again
        assert compute_label_issues(job["id"]) == "failed"
        broken = api.get(url)
        assert (broken.status_code, error_code(broken)) == (500, "label_issues_failed")
        assert broken.headers["content-type"].startswith("application/problem+json")
        assert "asking again" in problem(broken)["message"]
        assert api.get(url).status_code == 202  # queued again by that report
        # features of another length than the labels: the data's failure, kept
        np.save(kept / "features.npy", np.zeros((3, 4), dtype=np.float16))
        service._features.clear()
        assert compute_label_issues(job["id"]) == "failed"
        for _ in range(2):
            bad = api.get(url)
            assert (bad.status_code, error_code(bad)) == (422, "invalid_dataset"), bad.text
        sel = api.post(
            f"/v1/jobs/{job['id']}/selections",
            json={"keep": 0.5, "exclude_suspected": {"share": 0.25}},
        )
        assert (sel.status_code, error_code(sel)) == (422, "invalid_dataset")
    finally:
        (kept / "features.npy").write_bytes(features)
        service._features.clear()
