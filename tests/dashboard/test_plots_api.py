"""The dashboard's JSON and plot routes, in process on PostgreSQL (the service's test rig), and the
statistics behind them checked against independent computations."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app import plots
from app.dashboard import STATIC_DIR
from dlcprune.core.selection import allocate, resolve_keep
from tests.conftest import Api, finish
from tests.problems import problem
from tests.service.data import (
    TINTS,
    image_bytes,
    write_image_zip,
    write_instructions,
    write_npz,
)

FAST = {"image_size": 32, "levels": 2}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def error_of(resp) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    body = problem(resp)
    assert isinstance(body["message"], str) and body["message"], body
    return resp.status_code, body["code"]


def ks_brute_force(a: np.ndarray, b: np.ndarray) -> float:
    """sup |F_a - F_b| over every pooled value, by counting (quadratic; small inputs only)."""
    grid = np.concatenate([a, b])
    fa = (a[:, None] <= grid[None, :]).mean(axis=0)
    fb = (b[:, None] <= grid[None, :]).mean(axis=0)
    return float(np.abs(fa - fb).max())


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dashboard-files")
    big = d / "big.zip"
    rng = np.random.default_rng(3)
    with zipfile.ZipFile(big, "w") as zf:
        for name, tint in TINTS.items():
            for i in range(2):
                zf.writestr(f"{name}/{i}.png", image_bytes(tint, rng, size=200))
    text = d / "texts.jsonl"
    rows = [{"id": f"t{i}", "text": f"sample number {i} é", "label": "ab"[i % 2]} for i in range(6)]
    rows.append({"id": "long", "text": "word " * 200, "label": "a"})
    text.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return {
        "zip": write_image_zip(d / "colours.zip", per_class=8, seed=11),
        "big": big,
        "text": text,
        "instructions": write_instructions(d / "alpaca.jsonl", n=4, long_input=1),
        "npz": write_npz(d / "arrays.npz"),
    }


@pytest.fixture(scope="module")
def scored(app_client, key_a: str, files: dict[str, Path]) -> dict:  # type: ignore[no-untyped-def]
    """Tenant A's image dataset with a finished DLC job, its scores and one selection."""
    api = Api(app_client, key_a)
    ds = api.upload(files["zip"]).json()
    job = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert finish(job) == "succeeded"
    rows = list(
        csv.DictReader(io.StringIO(api.get(f"/v1/jobs/{job['id']}/scores?format=csv").text))
    )
    sel = api.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5}).json()
    return {
        "dataset": ds,
        "job": api.get(f"/v1/jobs/{job['id']}").json(),
        "ids": [r["sample_id"] for r in rows],
        "labels": [r["label"] for r in rows],
        # The CSV's 9 significant digits give back the stored float32 values exactly.
        "scores": np.array([float(r["score"]) for r in rows], dtype=np.float32),
        "selection": sel,
    }


# Statistics ------------------------------------------------------------------------------------


def test_ks_statistic_matches_independent_computations() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n, m in ((50, 20), (200, 200), (7, 300)):
        a = rng.normal(size=n)
        b = rng.normal(0.4, 1.3, size=m)
        d = plots.ks_statistic(a, b)
        assert d == pytest.approx(ks_brute_force(a, b), abs=1e-12)
        assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    # Ties across and within the samples; a subset of itself; identical samples.
    a = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 5.0])
    b = np.array([1.0, 2.0, 2.0, 4.0])
    assert plots.ks_statistic(a, b) == pytest.approx(ks_brute_force(a, b))
    assert plots.ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert plots.ks_statistic(a, a) == 0.0
    assert plots.ks_statistic(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    # NaN (unscored) values are left out; an empty side gives 0.
    assert plots.ks_statistic(np.array([np.nan, 1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert plots.ks_statistic(np.array([]), np.array([1.0])) == 0.0


def test_tv_distance() -> None:
    assert plots.tv_distance([8, 8, 8], [4, 4, 4]) == 0.0
    assert plots.tv_distance([1, 1], [1, 0]) == pytest.approx(0.5)
    assert plots.tv_distance([10, 0], [0, 3]) == pytest.approx(1.0)
    assert plots.tv_distance([1, 2, 3], [3, 2, 1]) == pytest.approx(0.5 * (2 / 6 + 0 + 2 / 6))
    assert plots.tv_distance([0, 0], [1, 1]) is None
    with pytest.raises(ValueError):
        plots.tv_distance([1], [1, 2])


def test_score_histogram_and_loss_curve_on_synthetic_data() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=500).astype(np.float32)
    scores[:5] = np.nan
    codes = (np.arange(500) % 4).astype(np.int32)
    hist = plots.score_histogram(scores, codes, ["a", "b", "c", "d"], bins=12, max_classes=3)
    finite = scores[np.isfinite(scores)]
    assert (
        len(hist.edges) == 13 and hist.edges[0] == finite.min() and hist.edges[-1] == finite.max()
    )
    assert hist.total.sum() == 495
    assert np.array_equal(hist.total, np.histogram(finite, bins=hist.edges)[0])
    assert hist.classes == ["a", "b", "c"]
    for c in range(3):
        own = scores[(codes == c) & np.isfinite(scores)]
        assert np.array_equal(hist.per_class[c], np.histogram(own, bins=hist.edges)[0])

    losses = rng.gamma(2.0, size=(4, 500)).astype(np.float32)
    losses[:, :5] = np.nan
    curve = plots.loss_curve(losses, [0.0, 0.02, 0.04, 0.06], codes=codes, class_names="abcd")
    ok = losses[:, 5:].astype(np.float64)
    assert curve.samples == 495
    assert np.allclose(curve.mean, ok.mean(axis=1))
    assert np.allclose(curve.median, np.median(ok, axis=1))
    assert np.allclose(curve.low, np.percentile(ok, 10, axis=1))
    assert np.allclose(curve.high, np.percentile(ok, 90, axis=1))
    assert np.allclose(curve.class_mean[1], losses[:, (codes == 1) & np.isfinite(scores)].mean(1))
    # Fractions of another length fall back to row numbers.
    assert plots.loss_curve(losses, [0.0]).fractions.tolist() == [0.0, 1.0, 2.0, 3.0]


# Summary ---------------------------------------------------------------------------------------


def test_summary(api_a: Api, scored: dict, service_env: dict[str, str]) -> None:
    job = scored["job"]
    resp = api_a.get(f"/v1/jobs/{job['id']}/summary", params={"bins": 10, "k": 3})
    assert resp.status_code == 200, resp.text
    s = resp.json()
    assert s["job_id"] == job["id"] and s["dataset_id"] == scored["dataset"]["id"]
    assert (s["num_samples"], s["scored"], s["unscored"]) == (24, 24, 0)
    assert (s["kind"], s["classes_total"], s["classes_shown"], s["k"]) == ("image", 3, 3, 3)
    scores = scored["scores"]
    assert s["score_stats"]["min"] == pytest.approx(scores.min(), rel=1e-6)
    assert s["score_stats"]["max"] == pytest.approx(scores.max(), rel=1e-6)

    hist = s["histogram"]
    assert len(hist["edges"]) == 11 and len(hist["total"]) == 10
    assert np.array_equal(hist["total"], np.histogram(scores, bins=np.array(hist["edges"]))[0])
    assert [c["label"] for c in hist["per_class"]] == ["blue", "green", "red"]
    assert [sum(c["counts"]) for c in hist["per_class"]] == [8, 8, 8]
    assert np.array_equal(np.sum([c["counts"] for c in hist["per_class"]], axis=0), hist["total"])

    labels = np.array(scored["labels"])
    ids = np.array(scored["ids"])
    for group in s["extremes"]:
        members = np.flatnonzero(labels == group["label"])
        order = members[np.lexsort((members, scores[members]))]
        assert group["count"] == 8
        assert [e["sample_id"] for e in group["easiest"]] == ids[order[:3]].tolist()
        assert [e["sample_id"] for e in group["hardest"]] == ids[order[::-1][:3]].tolist()
        for e in group["easiest"] + group["hardest"]:
            assert ids[e["index"]] == e["sample_id"] and e["label"] == group["label"]
            assert e["score"] == pytest.approx(scores[e["index"]], rel=1e-6)

    curve = s["loss_curve"]
    assert curve["levels"] == 3 and curve["samples"] == 24
    fractions = curve["mask_fractions"]
    assert fractions[0] == 0.0 and fractions == sorted(fractions) and fractions[-1] < 1
    losses = np.load(Path(service_env["DLCPRUNE_BLOB_URL"]) / "losses" / f"{job['id']}.npy")
    assert losses.shape == (3, 24)
    assert np.allclose(curve["mean"], losses.astype(np.float64).mean(axis=1))
    for lo, med, hi in zip(curve["low"], curve["median"], curve["high"], strict=True):
        assert lo <= med <= hi
    # A sample's score is its mean over the rows, so the rows' means average to the mean score.
    assert np.mean(curve["mean"]) == pytest.approx(scores.mean(), rel=1e-5)
    assert [c["label"] for c in curve["per_class_mean"]] == ["blue", "green", "red"]

    # max_classes trims the per-class parts; bad parameters are validation errors.
    small = api_a.get(f"/v1/jobs/{job['id']}/summary", params={"max_classes": 2}).json()
    assert small["classes_shown"] == 2 and len(small["extremes"]) == 2
    assert len(small["histogram"]["per_class"]) == 2
    assert error_of(api_a.get(f"/v1/jobs/{job['id']}/summary", params={"bins": 1})) == (
        422,
        "validation_error",
    )


def test_summary_of_a_cached_job_names_that_job(api_a: Api, scored: dict) -> None:
    body = {"dataset_id": scored["dataset"]["id"], "params": FAST}
    again = api_a.post("/v1/jobs", json=body).json()
    assert again["cached"] is True
    first = api_a.get(f"/v1/jobs/{scored['job']['id']}/summary").json()
    second = api_a.get(f"/v1/jobs/{again['id']}/summary").json()
    assert second["job_id"] == again["id"]
    assert {**second, "job_id": None} == {**first, "job_id": None}


# Preview ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"keep": 0.3},
        {"keep": 0.5, "strategy": "easy"},
        {"keep": 0.8, "strategy": "hard", "seed": 3},
        {"keep": 5, "strategy": "random", "seed": 9},
        {"keep": 0.25, "strategy": "stratified", "seed": 1},
        {"keep": 0.4, "strategy": "flexrand", "split": 0.8, "seed": 2},
    ],
)
def test_preview_equals_the_selection_it_previews(api_a: Api, scored: dict, body: dict) -> None:
    job_id = scored["job"]["id"]
    before = api_a.get(f"/v1/jobs/{job_id}/selections").json()["total"]
    resp = api_a.post(f"/v1/jobs/{job_id}/selections/preview", json=body, params={"bins": 8})
    assert resp.status_code == 200, resp.text
    p = resp.json()
    size = resolve_keep(body["keep"], 24)
    assert p["size"] == size and p["num_samples"] == 24 and p["excluded"] == 0
    assert p["class_counts"]["full"] == {"blue": 8, "green": 8, "red": 8}
    if body.get("strategy") != "random":
        assert (
            list(p["class_counts"]["kept"].values()) == allocate(np.array([8, 8, 8]), size).tolist()
        )
    assert [c["label"] for c in p["classes"]] == ["blue", "green", "red"]
    assert [c["kept"] for c in p["classes"]] == list(p["class_counts"]["kept"].values())
    # The preview stored nothing.
    assert api_a.get(f"/v1/jobs/{job_id}/selections").json()["total"] == before

    # The selection made from the same body keeps the same samples: check KS and TV against it.
    sel = api_a.post(f"/v1/jobs/{job_id}/selections", json=body).json()
    assert sel["size"] == p["size"] and sel["class_counts"] == p["class_counts"]["kept"]
    kept_ids = api_a.get(sel["items_url"], params={"format": "csv"}).text.splitlines()[1:]
    position = {sid: i for i, sid in enumerate(scored["ids"])}
    kept = np.array([position[line.split(",")[0]] for line in kept_ids])
    scores = scored["scores"].astype(np.float64)
    assert p["ks_statistic"] == pytest.approx(ks_brute_force(scores, scores[kept]), abs=1e-9)
    full = np.array([8, 8, 8]) / 24
    kept_share = np.array(list(sel["class_counts"].values())) / size
    assert p["tv_distance"] == pytest.approx(0.5 * np.abs(full - kept_share).sum(), abs=1e-12)
    assert p["mean_score"]["kept"] == pytest.approx(scores[kept].mean(), rel=1e-6)

    hist = p["histogram"]
    assert len(hist["edges"]) == 9 and sum(hist["full"]) == 24 and sum(hist["kept"]) == size
    assert np.array_equal(hist["kept"], np.histogram(scores[kept], bins=np.array(hist["edges"]))[0])


def test_preview_errors(api_a: Api, scored: dict) -> None:
    url = f"/v1/jobs/{scored['job']['id']}/selections/preview"
    assert error_of(api_a.post(url, json={"keep": 0})) == (422, "validation_error")
    assert error_of(api_a.post(url, json={"keep": 0.3, "strategy": "best"})) == (
        422,
        "validation_error",
    )
    assert error_of(api_a.post(url, json={"keep": 25})) == (422, "invalid_selection")
    assert error_of(api_a.post(url, json={"keep": 0.01})) == (422, "invalid_selection")
    assert error_of(
        api_a.post(url, content=b"{nope", headers={"content-type": "application/json"})
    ) == (400, "malformed_json")


def test_unfinished_job_answers_job_not_ready(api_a: Api, scored: dict) -> None:
    body = {"dataset_id": scored["dataset"]["id"], "params": {**FAST, "levels": 3}}
    job = api_a.post("/v1/jobs", json=body).json()
    assert job["status"] == "queued"
    jid = job["id"]
    for method, url, kw in [
        ("GET", f"/v1/jobs/{jid}/summary", {}),
        ("POST", f"/v1/jobs/{jid}/selections/preview", {"json": {"keep": 0.5}}),
        ("GET", f"/v1/jobs/{jid}/plots/histogram.png", {}),
        ("GET", f"/v1/jobs/{jid}/plots/loss-curve.svg", {}),
        ("GET", f"/v1/jobs/{jid}/plots/distribution.png?keep=0.5", {}),
    ]:
        assert error_of(api_a.request(method, url, **kw)) == (409, "job_not_ready"), url
    api_a.post(f"/v1/jobs/{jid}/cancel")
    assert error_of(api_a.get(f"/v1/jobs/{jid}/summary")) == (409, "job_not_ready")


# Plots -----------------------------------------------------------------------------------------


def _check_image(resp, fmt: str) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == 200, resp.text
    assert len(resp.content) > 1000
    if fmt == "png":
        assert resp.headers["content-type"] == "image/png"
        assert resp.content.startswith(PNG_MAGIC)
        with Image.open(io.BytesIO(resp.content)) as im:
            assert im.format == "PNG" and im.size[0] >= 300 and im.size[1] >= 200
    else:
        assert resp.headers["content-type"].startswith("image/svg+xml")
        root = ET.fromstring(resp.content)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_plot_endpoints(api_a: Api, scored: dict, fmt: str) -> None:
    jid = scored["job"]["id"]
    sid = scored["selection"]["id"]
    for url in (
        f"/v1/jobs/{jid}/plots/histogram.{fmt}",
        f"/v1/jobs/{jid}/plots/histogram.{fmt}?bins=5",
        f"/v1/jobs/{jid}/plots/loss-curve.{fmt}",
        f"/v1/jobs/{jid}/plots/distribution.{fmt}?keep=0.3&strategy=flexrand&split=0.5&seed=1",
        f"/v1/selections/{sid}/plots/distribution.{fmt}",
    ):
        resp = api_a.get(url)
        _check_image(resp, fmt)
        assert resp.headers["content-disposition"].startswith("inline; filename=")
    # The same data draws the same bytes.
    url = f"/v1/jobs/{jid}/plots/histogram.{fmt}"
    assert api_a.get(url).content == api_a.get(url).content


def test_plot_errors(api_a: Api, scored: dict) -> None:
    jid = scored["job"]["id"]
    assert error_of(api_a.get(f"/v1/jobs/{jid}/plots/histogram.gif")) == (422, "validation_error")
    assert error_of(api_a.get(f"/v1/jobs/{jid}/plots/distribution.png")) == (
        422,
        "validation_error",
    )
    assert error_of(api_a.get(f"/v1/jobs/{jid}/plots/distribution.png?keep=30")) == (
        422,
        "invalid_selection",
    )
    # The query's bounds are the selection body's (SelectionParams), hard_cutoff included.
    ccs = f"/v1/jobs/{jid}/plots/distribution.png?keep=0.5&strategy=ccs"
    assert error_of(api_a.get(ccs + "&hard_cutoff=1")) == (422, "validation_error")
    assert error_of(api_a.get(ccs + "&split=1.5")) == (422, "validation_error")
    cut = api_a.get(ccs + "&hard_cutoff=0.5")
    _check_image(cut, "png")
    assert api_a.get(ccs).content == api_a.get(ccs).content
    assert cut.content != api_a.get(ccs).content  # the cutoff reaches the strategy
    missing = "00000000-0000-0000-0000-000000000000"
    assert error_of(api_a.get(f"/v1/jobs/{missing}/plots/histogram.png")) == (404, "not_found")
    assert error_of(api_a.get(f"/v1/selections/{missing}/plots/distribution.svg")) == (
        404,
        "not_found",
    )


# Samples and thumbnails ------------------------------------------------------------------------


def test_thumbnails_are_small_pngs_cached_in_the_blob_store(
    api_a: Api, files: dict[str, Path], service_env: dict[str, str]
) -> None:
    ds = api_a.upload(files["big"]).json()
    url = f"/v1/datasets/{ds['id']}/samples/1/thumbnail"
    resp = api_a.get(url)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png" and resp.content.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(resp.content)) as im:
        assert im.size == (96, 96)  # 200 x 200 pixels shrunk to fit 96
        assert im.mode == "RGB"
    cached = Path(service_env["DLCPRUNE_BLOB_URL"]) / "thumbs" / ds["id"] / "1.png"
    assert cached.read_bytes() == resp.content
    # Served from the cache afterwards: replace the cached bytes and get them back.
    marker = io.BytesIO()
    Image.new("RGB", (5, 5), (1, 2, 3)).save(marker, format="PNG")
    cached.write_bytes(marker.getvalue())
    assert api_a.get(url).content == marker.getvalue()
    # Small images stay as they are (at most 96 px, never enlarged); arrays of images too.
    small = api_a.upload(files["zip"]).json()
    thumb = api_a.get(f"/v1/datasets/{small['id']}/samples/0/thumbnail")
    with Image.open(io.BytesIO(thumb.content)) as im:
        assert im.size == (16, 16)
    arrays = api_a.upload(files["npz"]).json()
    assert arrays["kind"] == "image"
    thumb = api_a.get(f"/v1/datasets/{arrays['id']}/samples/19/thumbnail")
    assert thumb.status_code == 200, thumb.text
    with Image.open(io.BytesIO(thumb.content)) as im:
        assert im.size == (12, 12)
        x = np.load(files["npz"])["x"][19]
        assert np.array_equal(np.asarray(im.convert("RGB")), x)
    assert error_of(api_a.get(f"/v1/datasets/{ds['id']}/samples/6/thumbnail")) == (
        404,
        "not_found",
    )


def test_sample_json(api_a: Api, scored: dict, files: dict[str, Path]) -> None:
    ds = scored["dataset"]
    resp = api_a.get(f"/v1/datasets/{ds['id']}/samples/3")
    assert resp.status_code == 200, resp.text
    sample = resp.json()
    assert sample["id"] == scored["ids"][3] and sample["label"] == scored["labels"][3]
    assert sample["kind"] == "image" and sample["snippet"] is None
    assert sample["thumbnail_url"].endswith(f"/v1/datasets/{ds['id']}/samples/3/thumbnail")

    text = api_a.upload(files["text"]).json()
    first = api_a.get(f"/v1/datasets/{text['id']}/samples/1").json()
    assert first == {
        "dataset_id": text["id"],
        "index": 1,
        "id": "t1",
        "label": "b",
        "kind": "text",
        "snippet": "sample number 1 é",
        "thumbnail_url": None,
    }
    long = api_a.get(f"/v1/datasets/{text['id']}/samples/6").json()
    assert long["id"] == "long" and len(long["snippet"]) <= 300
    assert long["snippet"].startswith("word word") and long["snippet"].endswith("…")
    assert error_of(api_a.get(f"/v1/datasets/{text['id']}/samples/0/thumbnail")) == (
        422,
        "not_an_image",
    )
    assert error_of(api_a.get(f"/v1/datasets/{text['id']}/samples/7")) == (404, "not_found")
    assert error_of(api_a.get(f"/v1/datasets/{text['id']}/samples/-1")) == (404, "not_found")

    alpaca = api_a.upload(files["instructions"]).json()
    assert alpaca["kind"] == "instruction"
    row = json.loads(files["instructions"].read_text().splitlines()[0])
    snippet = api_a.get(f"/v1/datasets/{alpaca['id']}/samples/0").json()["snippet"]
    assert snippet.startswith(f"Instruction: {row['instruction']}")
    assert f"Response: {row['output']}" in snippet and len(snippet) <= 300
    long_one = api_a.get(f"/v1/datasets/{alpaca['id']}/samples/3").json()["snippet"]
    assert len(long_one) <= 300 and long_one.endswith("…")


# Tenants, auth and the page --------------------------------------------------------------------


def test_other_tenants_get_404(api_b: Api, scored: dict) -> None:
    jid = scored["job"]["id"]
    did = scored["dataset"]["id"]
    sid = scored["selection"]["id"]
    for method, url, kw in [
        ("GET", f"/v1/jobs/{jid}/summary", {}),
        ("POST", f"/v1/jobs/{jid}/selections/preview", {"json": {"keep": 0.5}}),
        ("GET", f"/v1/jobs/{jid}/plots/histogram.png", {}),
        ("GET", f"/v1/jobs/{jid}/plots/loss-curve.svg", {}),
        ("GET", f"/v1/jobs/{jid}/plots/distribution.png?keep=0.5", {}),
        ("GET", f"/v1/selections/{sid}/plots/distribution.svg", {}),
        ("GET", f"/v1/datasets/{did}/samples/0", {}),
        ("GET", f"/v1/datasets/{did}/samples/0/thumbnail", {}),
    ]:
        assert error_of(api_b.request(method, url, **kw)) == (404, "not_found"), url


def test_api_routes_need_a_key_and_the_page_does_not(app_client, scored: dict) -> None:  # type: ignore[no-untyped-def]
    jid = scored["job"]["id"]
    for url in (f"/v1/jobs/{jid}/summary", f"/v1/jobs/{jid}/plots/histogram.png"):
        assert error_of(app_client.get(url)) == (401, "unauthorized")
    page = app_client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>dlcprune</title>" in page.text
    assert '<script type="module" src="dashboard/static/app.js">' in page.text
    css = app_client.get("/dashboard/static/app.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    # The scripts: app.js and the modules it imports, each served as JavaScript, each importing
    # only its neighbours (nothing from elsewhere, no build step).
    seen: set[str] = set()
    todo = ["app.js"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        resp = app_client.get(f"/dashboard/static/{name}")
        assert resp.status_code == 200 and "javascript" in resp.headers["content-type"], name
        assert len(resp.content) > 1000, name
        assert not any(far in resp.text for far in ("http://", "https://", "//cdn")), name
        imports = re.findall(r'^import [^;]*? from "([^"]+)";', resp.text, flags=re.M | re.S)
        assert all(re.fullmatch(r"\./\w+\.js", i) for i in imports), (name, imports)
        todo.extend(i.removeprefix("./") for i in imports)
    on_disk = {p.name for p in STATIC_DIR.glob("*.js")}
    assert seen == on_disk, "every script is loaded by the page, and only those"
    # Nothing is loaded from elsewhere: every script and stylesheet is relative.
    assert "http://" not in page.text and "https://" not in page.text


# Unlabelled data with unscored samples -----------------------------------------------------------


def _fake_scores(tenant_key: str, dataset_id: str, scores: np.ndarray, blob_root: Path) -> str:
    """A succeeded job with the given scores (and per-level losses) for a dataset, written straight
    to the database: instruction data is scored by a language model these tests do not run."""
    import uuid

    from sqlalchemy import select

    from app.auth import hash_key
    from app.db import session_scope
    from app.models import ApiKey, Job, ScoreSet

    n = len(scores)
    losses = np.stack([scores + 0.1 * r for r in (-1, 0, 1)]).astype(np.float32)
    key = f"losses/fake-{uuid.uuid4().hex}.npy"
    (blob_root / "losses").mkdir(parents=True, exist_ok=True)
    np.save(blob_root / key, losses)
    cache_key = uuid.uuid4().hex * 2
    with session_scope() as session:
        tenant = session.scalar(
            select(ApiKey.tenant_id).where(ApiKey.key_hash == hash_key(tenant_key))
        )
        score_set = ScoreSet(
            tenant_id=tenant,
            cache_key=cache_key,
            dataset_id=uuid.UUID(dataset_id),
            method="dlc",
            model="hf",
            params={},
            num_samples=n,
            scores=scores.astype("<f4").tobytes(),
            unscored=int(np.isnan(scores).sum()),
            losses_key=key,
            mask_fractions={"levels": [0.0, 0.2, 0.36]},
        )
        session.add(score_set)
        session.flush()
        job = Job(
            tenant_id=tenant,
            dataset_id=uuid.UUID(dataset_id),
            model="hf",
            method="dlc",
            params={},
            cache_key=cache_key,
            status="succeeded",
            score_set_id=score_set.id,
            stage="done",
        )
        session.add(job)
        session.flush()
        return str(job.id)


def test_unlabelled_data_with_unscored_samples(
    api_a: Api, key_a: str, files: dict[str, Path], service_env: dict[str, str]
) -> None:
    ds = api_a.upload(files["instructions"]).json()
    assert ds["classes"] == {} and ds["num_samples"] == 4
    scores = np.array([0.5, np.nan, 0.25, 2.0], dtype=np.float32)
    jid = _fake_scores(key_a, ds["id"], scores, Path(service_env["DLCPRUNE_BLOB_URL"]))

    s = api_a.get(f"/v1/jobs/{jid}/summary", params={"k": 2, "bins": 4}).json()
    assert (s["kind"], s["num_samples"], s["scored"], s["unscored"]) == ("instruction", 4, 3, 1)
    assert s["classes_total"] == 0 and s["histogram"]["per_class"] == []
    assert sum(s["histogram"]["total"]) == 3
    [group] = s["extremes"]
    assert group["label"] is None and group["count"] == 3
    assert [e["index"] for e in group["easiest"]] == [2, 0]
    assert [e["index"] for e in group["hardest"]] == [3, 0]
    curve = s["loss_curve"]
    assert curve["samples"] == 3 and curve["mask_fractions"] == [0.0, 0.2, 0.36]
    assert np.allclose(curve["mean"], [np.mean([0.5, 0.25, 2.0]) + d for d in (-0.1, 0, 0.1)])
    assert curve["per_class_mean"] == []

    p = api_a.post(f"/v1/jobs/{jid}/selections/preview", json={"keep": 0.5}).json()
    assert (p["size"], p["excluded"], p["tv_distance"]) == (2, 1, None)
    assert p["class_counts"] == {"full": {}, "kept": {}} and p["classes"] == []
    assert 0.0 <= p["ks_statistic"] <= 1.0 and sum(p["histogram"]["full"]) == 3
    for url in (
        f"/v1/jobs/{jid}/plots/histogram.png",
        f"/v1/jobs/{jid}/plots/loss-curve.svg",
        f"/v1/jobs/{jid}/plots/distribution.svg?keep=0.5",
    ):
        _check_image(api_a.get(url), url.rsplit(".", 1)[1].split("?")[0])
