"""Text and instruction datasets through the API: MiniLM on text, a causal LM (uploaded as a
Hugging Face directory archive) on instructions, truncated responses reported, exports byte for
byte."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import Api, finish
from tests.service.data import write_instructions, write_text_jsonl, write_tiny_lm, zip_directory
from tests.service.test_api import error_of
from worker.runner import run_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lm_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lm")
    return zip_directory(write_tiny_lm(root / "dir"), root / "tiny-llama.zip")


def test_text_classification_with_minilm(api_a: Api, tmp_path: Path) -> None:
    path = write_text_jsonl(tmp_path / "texts.jsonl", n=12)
    ds = api_a.upload(path).json()
    assert (ds["kind"], ds["classes"]) == ("text", {"neg": 6, "pos": 6})
    body = {
        "dataset_id": ds["id"],
        "model": "all-minilm-l6-v2",
        "params": {"levels": 2, "max_length": 32},
    }
    job = api_a.post("/v1/jobs", json=body).json()
    assert job["params"]["max_length"] == 32 and job["params"]["step"] == 0.02
    assert finish(job) == "succeeded"
    scores = api_a.get(f"/v1/jobs/{job['id']}/scores").json()["items"]
    assert [s["sample_id"] for s in scores] == [f"t{i}" for i in range(12)]
    assert all(s["score"] > 0 and s["tokens"] is None for s in scores)
    sel = api_a.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5}).json()
    assert sel["class_counts"] == {"neg": 3, "pos": 3}
    kept = [i["sample_id"] for i in api_a.get(sel["items_url"]).json()["items"]]
    export = api_a.get(sel["export_url"])
    assert export.headers["content-type"].startswith("application/jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    assert export.content == b"".join(lines[int(k[1:])] for k in kept)
    # The encoder's features are kept (MiniLM: 384 wide), and evaluations can use them.
    emb = api_a.get(f"/v1/jobs/{job['id']}/embeddings")
    assert emb.status_code == 200
    assert np.load(io.BytesIO(emb.content), allow_pickle=False).shape == (12, 384)
    # MiniLM takes text only.
    refused = api_a.post("/v1/jobs", json={**body, "model": "efficientnet_lite0"})
    assert error_of(refused) == (422, "unsupported_dataset")


def test_instructions_with_an_uploaded_causal_lm(
    api_a: Api, lm_archive: Path, tmp_path: Path
) -> None:
    path = write_instructions(tmp_path / "alpaca.jsonl", n=10, long_input=2)
    ds = api_a.upload(path).json()
    assert (ds["status"], ds["kind"], ds["classes"]) == ("ready", "instruction", {})
    with open(lm_archive, "rb") as fh:
        weights = api_a.post("/v1/weights", files={"file": (lm_archive.name, fh)}).json()
    body = {
        "dataset_id": ds["id"],
        "model": "hf",
        "weights_id": weights["id"],
        "params": {"max_length": 48},
    }
    job = api_a.post("/v1/jobs", json=body).json()
    # Instruction defaults: 3 levels of 20% of the remaining Linear weights.
    assert (job["params"]["levels"], job["params"]["step"]) == (3, 0.2)
    assert finish(job) == "succeeded"
    done = api_a.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["unscored"] == 2
    # No class features for instructions: no embeddings, no evaluation, each saying why.
    none = api_a.get(f"/v1/jobs/{job['id']}/embeddings")
    assert error_of(none) == (409, "no_embeddings") and "instruction" in none.text
    ev = api_a.post(
        f"/v1/jobs/{job['id']}/evaluations", json={"strategies": ["flexrand"], "keep": [0.5]}
    )
    assert error_of(ev) == (422, "unlabelled_dataset") and "no labels" in ev.text
    items = api_a.get(f"/v1/jobs/{job['id']}/scores").json()["items"]
    unscored = {i["sample_id"] for i in items if i["score"] is None}
    assert unscored == {"q8", "q9"}
    assert all(i["tokens"] == 0 for i in items if i["sample_id"] in unscored)
    assert all(i["tokens"] == 5 for i in items if i["sample_id"] not in unscored)  # 4 words+eos
    rows = list(
        csv.reader(
            io.StringIO(api_a.get(f"/v1/jobs/{job['id']}/scores", params={"format": "csv"}).text)
        )
    )
    assert rows[0] == ["sample_id", "label", "score", "tokens"]
    assert [r for r in rows[1:] if r[0] == "q9"] == [["q9", "", "", "0"]]
    # Unscored samples are never selected; keep still counts all 10 samples.
    sel = api_a.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5}).json()
    assert (sel["size"], sel["excluded"], sel["class_counts"]) == (5, 2, {})
    kept = [i["sample_id"] for i in api_a.get(sel["items_url"]).json()["items"]]
    assert not set(kept) & unscored
    lines = path.read_bytes().splitlines(keepends=True)
    assert api_a.get(sel["export_url"]).content == b"".join(lines[int(k[1:])] for k in kept)
    too_many = api_a.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 9})
    assert error_of(too_many) == (422, "invalid_selection")
    # With the prompt truncated first, every sample is scored: another cache entry.
    again = api_a.post(
        "/v1/jobs", json={**body, "params": {"max_length": 48, "truncation": "prompt"}}
    ).json()
    assert again["cached"] is False
    assert run_job(again["id"]) == "succeeded"
    assert api_a.get(f"/v1/jobs/{again['id']}").json()["unscored"] == 0


def test_language_refusals(api_a: Api, lm_archive: Path, tmp_path: Path) -> None:
    ds = api_a.upload(write_instructions(tmp_path / "alpaca.jsonl")).json()
    for body, code in [
        ({"model": "all-minilm-l6-v2"}, "unsupported_dataset"),
        ({"model": "efficientnet_lite0"}, "unsupported_dataset"),
        ({"model": "hf"}, "invalid_model"),
        ({"model": "hf", "params": {"template": "no placeholder"}}, "invalid_model"),
    ]:
        resp = api_a.post("/v1/jobs", json={"dataset_id": ds["id"], **body})
        assert error_of(resp) == (422, code), body
    (tmp_path / "w.pth").write_bytes(b"x")
    with open(tmp_path / "w.pth", "rb") as fh:
        weights = api_a.post("/v1/weights", files={"file": ("w.pth", fh)}).json()
    resp = api_a.post(
        "/v1/jobs", json={"dataset_id": ds["id"], "model": "hf", "weights_id": weights["id"]}
    )
    assert error_of(resp) == (422, "invalid_model")
    template = {
        "dataset_id": ds["id"],
        "model": "hf",
        "weights_id": weights["id"],
        "params": {"template": "{instruction} {nope}"},
    }
    assert error_of(api_a.post("/v1/jobs", json=template)) == (422, "invalid_model")
    assert json.loads(api_a.get(f"/v1/datasets/{ds['id']}").text)["kind"] == "instruction"
