"""A dataset's ``format`` and ``columns``, end to end: named in a JSON reference or as upload form
fields, validated (422 naming the field), stored on the dataset and shown by DatasetRead, used
by every reader of its files (indexing, scoring by the worker's own task code, samples, exports)
and part of the identity the score cache keys on."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from dlcprune.core.selection import allocate, resolve_keep
from tests.conftest import Api
from tests.problems import problem
from tests.service.data import image_members
from worker.runner import run_job

FAST = {"image_size": 32, "levels": 2}
COLUMNS = {"image": "img", "label": "y"}
PER_CLASS = 6
CLASSES = {"blue": PER_CLASS, "green": PER_CLASS, "red": PER_CLASS}


def write_table(path: Path, seed: int = 5) -> dict[str, bytes]:
    """A Parquet manifest of image bytes in ``img`` and labels in ``y`` (no default label name),
    a second label column ``tone`` (light/dark) and a unique ``batch`` (fresh content per run)."""
    members = image_members(PER_CLASS, seed=seed)
    names = list(members)
    table = pa.table(
        {
            "id": names,
            "img": list(members.values()),
            "y": [n.split("/")[0] for n in names],
            "tone": ["light" if i % 2 else "dark" for i in range(len(names))],
            "batch": [uuid.uuid4().hex] * len(names),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=7)
    return members


@pytest.fixture
def table_path(service_env: dict[str, str]) -> tuple[Path, dict[str, bytes]]:
    path = Path(service_env["DLCPRUNE_FILE_ROOTS"]) / f"cols-{uuid.uuid4().hex[:8]}" / "t.parquet"
    return path, write_table(path)


def refer(api: Api, path: Path, **options: object):  # type: ignore[no-untyped-def]
    return api.post("/v1/datasets", json={"uri": path.as_uri(), **options})


def score(api: Api, dataset: dict) -> dict:
    job = api.post("/v1/jobs", json={"dataset_id": dataset["id"], "params": FAST})
    assert job.status_code == 202, job.text
    if not job.json()["cached"]:
        assert run_job(job.json()["id"]) == "succeeded"
    done = api.get(f"/v1/jobs/{job.json()['id']}").json()
    assert done["status"] == "succeeded", done
    return done


def test_a_reference_with_columns_is_indexed_scored_selected_and_exported(
    api_a: Api, table_path: tuple[Path, dict[str, bytes]]
) -> None:
    path, members = table_path
    resp = refer(api_a, path, columns=COLUMNS)
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["status"], ds["format"], ds["kind"], ds["num_samples"]) == (
        "ready",
        "parquet",
        "image",
        3 * PER_CLASS,
    ), ds
    assert ds["classes"] == CLASSES
    assert (ds["requested_format"], ds["columns"]) == (None, COLUMNS)
    assert api_a.get(ds["url"]).json()["columns"] == COLUMNS

    # Samples are read with the mapping too.
    sample = api_a.get(f"/v1/datasets/{ds['id']}/samples/0").json()
    assert (sample["id"], sample["label"]) == ("red/000.png", "red")
    assert api_a.get(f"/v1/datasets/{ds['id']}/samples/0/thumbnail").status_code == 200

    job = score(api_a, ds)
    resp = api_a.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5, "seed": 3})
    assert resp.status_code == 201, resp.text
    sel = resp.json()
    expected = resolve_keep(0.5, 3 * PER_CLASS)
    assert sel["size"] == expected
    assert sel["class_counts"] == dict(
        zip(
            sorted(CLASSES),
            allocate(np.array([PER_CLASS] * 3), expected).tolist(),
            strict=True,
        )
    )
    kept = [
        i["sample_id"] for i in api_a.get(sel["items_url"], params={"limit": 100}).json()["items"]
    ]
    export = api_a.get(sel["export_url"])
    assert export.status_code == 200, export.text
    with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
        assert sorted(zf.namelist()) == sorted(kept)
        assert all(zf.read(name) == members[name] for name in kept)


def test_a_named_format_is_stored_and_shown(
    api_a: Api, table_path: tuple[Path, dict[str, bytes]]
) -> None:
    path, _ = table_path
    ds = refer(api_a, path, format="parquet", columns=COLUMNS).json()
    assert (ds["status"], ds["format"], ds["requested_format"], ds["columns"]) == (
        "ready",
        "parquet",
        "parquet",
        COLUMNS,
    ), ds
    assert ds["num_samples"] == 3 * PER_CLASS


def test_without_columns_or_with_a_missing_one_the_dataset_is_invalid(
    api_a: Api, table_path: tuple[Path, dict[str, bytes]]
) -> None:
    path, _ = table_path
    resp = refer(api_a, path)
    assert resp.status_code == 422, resp.text
    error = problem(resp)
    assert error["code"] == "missing_field"
    assert error["message"].startswith(f"{path.as_uri()}: no label column"), error
    assert "columns={'label': ...}" in error["message"]
    assert problem(resp)["details"]["dataset"]["status"] == "invalid"

    resp = refer(api_a, path, columns={"image": "img", "label": "target"})
    assert resp.status_code == 422, resp.text
    error = problem(resp)
    assert error["code"] == "missing_field"
    assert "column 'target' (mapped to label) is not in the data" in error["message"], error
    assert problem(resp)["details"]["dataset"]["columns"] == {
        "image": "img",
        "label": "target",
    }


def test_a_format_that_does_not_fit_is_invalid_with_a_clear_message(
    api_a: Api, table_path: tuple[Path, dict[str, bytes]]
) -> None:
    path, _ = table_path
    resp = refer(api_a, path, format="npz")
    assert resp.status_code == 422, resp.text
    body = problem(resp)
    assert body["code"] == "corrupt_archive"
    assert body["message"].startswith(f"{path.as_uri()}: "), body
    assert body["message"].endswith("(read as format 'npz', as the request named)")
    assert body["details"]["dataset"]["requested_format"] == "npz"

    # A format without column roles refuses a mapping.
    resp = refer(api_a, path, format="zip", columns=COLUMNS)
    assert resp.status_code == 422, resp.text
    assert problem(resp)["code"] == "invalid_columns"
    assert "format 'zip' takes no column mapping" in problem(resp)["message"]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"columns": {"picture": "img"}}, "columns.picture"),
        ({"columns": {"image": ""}}, "columns.image"),
        ({"columns": {"image": "x" * 257}}, "columns.image"),
        ({"columns": "img"}, "columns"),
        ({"columns": ["img", "y"]}, "columns"),
        ({"columns": {"image": 3}}, "columns.image"),
        ({"format": "csv"}, "format"),
        ({"format": ""}, "format"),
    ],
)
def test_bad_options_in_a_reference_answer_422_naming_the_field(
    api_a: Api, table_path: tuple[Path, dict[str, bytes]], options: dict, field: str
) -> None:
    path, _ = table_path
    before = api_a.get("/v1/datasets", params={"limit": 1}).json()["total"]
    resp = refer(api_a, path, **options)
    assert resp.status_code == 422, resp.text
    error = problem(resp)
    assert error["code"] == "validation_error"
    assert error["message"].startswith(f"{field}"), error
    assert api_a.get("/v1/datasets", params={"limit": 1}).json()["total"] == before


def test_an_upload_takes_format_and_columns_as_form_fields(
    api_a: Api, tmp_path: Path, service_env: dict[str, str]
) -> None:
    path = tmp_path / "table.parquet"
    write_table(path, seed=6)
    resp = api_a.upload(path, columns=json.dumps(COLUMNS), format="parquet")
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["status"], ds["num_samples"], ds["classes"]) == ("ready", 3 * PER_CLASS, CLASSES)
    assert (ds["requested_format"], ds["columns"]) == ("parquet", COLUMNS)
    score(api_a, ds)

    # Empty fields count as not given: the label column is then missing.
    resp = api_a.upload(path, columns="", format="")
    assert resp.status_code == 422, resp.text
    assert problem(resp)["code"] == "missing_field"
    assert problem(resp)["message"].startswith("table.parquet: no label column")

    resp = api_a.upload(path, format="tar")
    assert resp.status_code == 422, resp.text
    assert problem(resp)["message"].endswith("(read as format 'tar', as the request named)")

    blobs = Path(service_env["DLCPRUNE_BLOB_URL"]) / "datasets"
    before_blobs = set(blobs.iterdir())
    before = api_a.get("/v1/datasets", params={"limit": 1}).json()["total"]
    for fields, field in [
        ({"columns": '{"picture": "img"}'}, "columns.picture"),
        ({"columns": '{"image": ""}'}, "columns.image"),
        ({"columns": '["img"]'}, "columns"),
        ({"columns": "img"}, "columns"),
        ({"format": "csv"}, "format"),
    ]:
        resp = api_a.upload(path, **fields)
        assert resp.status_code == 422, (fields, resp.text)
        error = problem(resp)
        assert error["code"] == "validation_error", fields
        assert error["message"].startswith(field), (fields, error)
    # Nothing was kept of the refused uploads.
    assert api_a.get("/v1/datasets", params={"limit": 1}).json()["total"] == before
    assert set(blobs.iterdir()) == before_blobs


def test_the_score_cache_tells_columns_apart(
    api_a: Api, table_path: tuple[Path, dict[str, bytes]]
) -> None:
    """The same bytes read with other columns are other samples: their scores are not shared;
    the same bytes with the same columns are."""
    path, _ = table_path
    by_colour = refer(api_a, path, columns=COLUMNS).json()
    by_tone = refer(api_a, path, columns={"image": "img", "label": "tone"}).json()
    again = refer(api_a, path, columns=COLUMNS).json()
    assert by_colour["sha256"] == by_tone["sha256"] == again["sha256"]
    assert by_tone["classes"] == {"dark": 9, "light": 9}

    first = score(api_a, by_colour)
    assert first["cached"] is False
    assert score(api_a, by_tone)["cached"] is False
    assert score(api_a, again)["cached"] is True


def test_the_migration_adds_and_drops_the_columns_on_sqlite(tmp_path: Path) -> None:
    from alembic import command

    from app.config import Settings
    from app.db import alembic_config, migrate

    settings = Settings(data_dir=tmp_path)
    migrate(settings)
    engine = sa.create_engine(settings.database_url)

    def columns() -> set[str]:
        return {c["name"] for c in sa.inspect(engine).get_columns("datasets")}

    assert {"requested_format", "columns"} <= columns()
    cfg = alembic_config(settings.database_url)
    command.downgrade(cfg, "0005")
    assert not {"requested_format", "columns"} & columns()
    command.upgrade(cfg, "head")
    assert {"requested_format", "columns"} <= columns()
    engine.dispose()
