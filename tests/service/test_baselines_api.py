"""Baselines through the job API (the ``method`` field), and the CCS selection strategy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Api, finish
from tests.service.data import write_image_zip
from tests.service.test_api import error_of


@pytest.fixture(scope="module")
def dataset(app_client, key_a: str, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[no-untyped-def]
    path = write_image_zip(tmp_path_factory.mktemp("b") / "colours.zip", per_class=6)
    return Api(app_client, key_a).upload(path).json()


@pytest.mark.parametrize(
    ("method", "params", "strategy"),
    [
        ("moderate", {"image_size": 32}, "easy"),
        ("herding", {"image_size": 32}, "easy"),
        ("el2n", {"image_size": 32, "epochs": 1, "seeds": 1}, "hard"),
    ],
)
def test_baseline_jobs_score_and_select(
    api_a: Api, dataset: dict, method: str, params: dict, strategy: str
) -> None:
    body = {"dataset_id": dataset["id"], "method": method, "params": params}
    job = api_a.post("/v1/jobs", json=body)
    assert job.status_code == 202, job.text
    job = job.json()
    assert job["method"] == method and job["recommended_strategy"] == strategy
    assert job["params"]["seeds"] == params.get("seeds", 2)
    assert finish(job) == "succeeded"
    done = api_a.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["progress"]["fraction"] == 1.0
    scores = api_a.get(f"/v1/jobs/{job['id']}/scores", params={"limit": 100}).json()
    assert scores["total"] == 18 and all(s["score"] is not None for s in scores["items"])
    sel = api_a.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5, "strategy": strategy})
    assert sel.status_code == 201 and sel.json()["size"] == 9
    # The same method again is answered from the cache; another method is not.
    again = api_a.post("/v1/jobs", json=body).json()
    assert again["cached"] is True


def test_ccs_selection(api_a: Api, dataset: dict) -> None:
    job = api_a.post(
        "/v1/jobs", json={"dataset_id": dataset["id"], "params": {"image_size": 32, "levels": 2}}
    ).json()
    assert finish(job) == "succeeded"
    url = f"/v1/jobs/{job['id']}/selections"
    sel = api_a.post(url, json={"keep": 0.5, "strategy": "ccs", "hard_cutoff": 0.2, "seed": 4})
    assert sel.status_code == 201, sel.text
    sel = sel.json()
    assert sel["size"] == 9 and sel["strategy"] == "ccs" and sel["hard_cutoff"] == 0.2
    assert api_a.get(sel["url"]).json()["hard_cutoff"] == 0.2
    # The hardest 20% (3 of 18) are never kept.
    rows = api_a.get(f"/v1/jobs/{job['id']}/scores", params={"limit": 100}).json()["items"]
    hardest = {r["sample_id"] for r in sorted(rows, key=lambda r: r["score"])[-3:]}
    kept = {i["sample_id"] for i in api_a.get(sel["items_url"]).json()["items"]}
    assert not kept & hardest
    assert error_of(api_a.post(url, json={"keep": 0.5, "strategy": "ccs", "hard_cutoff": 1})) == (
        422,
        "validation_error",
    )


def test_method_parameter_mismatches_are_refused(api_a: Api, dataset: dict, tmp_path: Path) -> None:
    base = {"dataset_id": dataset["id"]}
    cases = [
        ({"method": "dlc", "params": {"epochs": 3}}, "invalid_parameter"),
        ({"method": "el2n", "params": {"levels": 3}}, "invalid_parameter"),
        ({"method": "forgetting", "params": {"epochs": 0}}, "validation_error"),
        ({"method": "cleverness"}, "validation_error"),
    ]
    for body, code in cases:
        assert error_of(api_a.post("/v1/jobs", json={**base, **body})) == (422, code), body
    (tmp_path / "m.pt").write_bytes(b"x")
    with open(tmp_path / "m.pt", "rb") as fh:
        weights = api_a.post("/v1/weights", files={"file": ("m.pt", fh)}).json()
    body = {**base, "method": "el2n", "model": "torchscript", "weights_id": weights["id"]}
    assert error_of(api_a.post("/v1/jobs", json=body)) == (422, "invalid_model")
