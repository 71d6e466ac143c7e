"""Every engine parameter is a job parameter: early stopping and precision reach the worker, are
stored with the job and key the score cache (one definition, dlcprune/core/params.py)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Api
from tests.service.data import write_image_zip
from worker.runner import run_job


def test_early_stop_and_precision_run_and_key_the_cache(api_a: Api, tmp_path: Path) -> None:
    ds = api_a.upload(write_image_zip(tmp_path / "colours.zip", per_class=6)).json()
    params = {
        "image_size": 32,
        "levels": 8,
        "early_stop": True,
        "early_stop_tol": 0.9,
        "early_stop_window": 1,
        "early_stop_min": 2,
        "precision": "fp32",
    }
    job = api_a.post("/v1/jobs", json={"dataset_id": ds["id"], "params": params})
    assert job.status_code == 202, job.text
    assert run_job(job.json()["id"]) == "succeeded"
    done = api_a.get(f"/v1/jobs/{job.json()['id']}").json()
    assert {k: done["params"][k] for k in params} == params
    assert "batch_size" not in done["params"]  # the worker's setting, not the job's
    scores = api_a.get(f"/v1/jobs/{done['id']}/scores", params={"limit": 100}).json()
    assert scores["total"] == ds["num_samples"]

    # The same request is answered from the cache; without early stopping it is other scores.
    again = api_a.post("/v1/jobs", json={"dataset_id": ds["id"], "params": params}).json()
    assert again["cached"] is True
    plain = {**params, "early_stop": False}
    other = api_a.post("/v1/jobs", json={"dataset_id": ds["id"], "params": plain}).json()
    assert other["cached"] is False
    api_a.post(f"/v1/jobs/{other['id']}/cancel")


def test_bad_engine_parameters_are_refused_by_name(api_a: Api, tmp_path: Path) -> None:
    ds = api_a.upload(write_image_zip(tmp_path / "colours.zip", per_class=2)).json()
    for bad in ({"precision": "fp16"}, {"early_stop_tol": 0}, {"batch_size": 8}):
        resp = api_a.post("/v1/jobs", json={"dataset_id": ds["id"], "params": bad})
        assert resp.status_code == 422, (bad, resp.text)
        assert next(iter(bad)) in resp.text
