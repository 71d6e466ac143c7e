"""A client generated from the service's own OpenAPI document works as it is (issue 15).

openapi-python-client (the dev extra) generates a package from ``/openapi.json`` of a live
service into a temporary directory; the test imports it and runs the whole flow through it:
upload, a reference, a job, a selection, the JSON pages, the CSV and JSON lines files, the export
zip, a thumbnail and a plot, and an error read as a problem document. Nothing here is written by
hand against the API: every call and every model is the generator's.
"""

from __future__ import annotations

import importlib
import io
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import finish, make_key
from tests.service.data import write_image_zip

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST = {"image_size": 32, "levels": 2}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def generated(live_api: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The generated package, imported (named ``dlcprune_generated``)."""
    out = tmp_path_factory.mktemp("generated")
    spec = out / "openapi.json"
    spec.write_bytes(httpx.get(f"{live_api}/openapi.json", timeout=30).content)
    tool = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    assert tool, "openapi-python-client is in the dev extra"
    target = out / "dlcprune_generated"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [tool, "generate", "--path", str(spec), "--meta", "none", "--output-path", str(target)],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Every operation and every answer made it into the package: the generator warns otherwise.
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("dlcprune_generated")
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m.startswith("dlcprune_generated")]:
            del sys.modules[name]


def _op(generated, tag: str, name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"{generated.__name__}.api.{tag}.{name}")


def test_the_whole_flow_through_a_generated_client(
    generated, live_api: str, service_env: dict[str, str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    models = importlib.import_module(f"{generated.__name__}.models")
    types = importlib.import_module(f"{generated.__name__}.types")
    client = generated.AuthenticatedClient(
        base_url=live_api, token=make_key(f"generated-{uuid.uuid4().hex[:8]}"), timeout=60
    )
    data = write_image_zip(tmp_path / "colours.zip", per_class=4, seed=11)

    # Upload (multipart): the body model and the File type are the generator's.
    with open(data, "rb") as fh:
        created = _op(generated, "datasets", "create_dataset").sync_detailed(
            client=client,
            body=models.CreateDatasetBody(
                file=types.File(payload=fh, file_name="colours.zip"), name="colours"
            ),
            idempotency_key="generated-upload",
        )
    assert created.status_code == 201, created.content
    dataset = created.parsed
    assert isinstance(dataset, models.DatasetRead)
    assert (dataset.status, dataset.num_samples, dataset.name) == ("ready", 12, "colours")

    # A reference (JSON), its own operation.
    refs = Path(service_env["DLCPRUNE_FILE_ROOTS"])
    shutil.copy(data, refs / "generated.zip")
    referred = _op(generated, "datasets", "create_reference").sync_detailed(
        client=client,
        body=models.DatasetReference(uri=(refs / "generated.zip").as_uri(), tags=["gen"]),
    )
    assert referred.status_code == 201, referred.content
    assert referred.parsed.tags == ["gen"] and referred.parsed.num_samples == 12

    # A job, polled to the end.
    posted = _op(generated, "jobs", "create_job").sync_detailed(
        client=client,
        body=models.JobCreate(
            dataset_id=dataset.id, params=models.DLCParamsIn.from_dict(FAST), external_id="g-1"
        ),
    )
    assert posted.status_code == 202, posted.content
    job = posted.parsed
    assert finish({"id": str(job.id), "status": job.status}) == "succeeded"
    polled = _op(generated, "jobs", "get_job").sync(job.id, client=client)
    assert polled.status == "succeeded" and polled.external_id == "g-1"

    # A selection, its pages and files.
    selection = _op(generated, "selections", "create_selection").sync(
        job.id,
        client=client,
        body=models.SelectionCreate(keep_count=5, strategy=models.SelectionCreateStrategy.RANDOM),
    )
    assert isinstance(selection, models.SelectionRead)
    assert (selection.size, selection.keep_count) == (5, 5)
    page = _op(generated, "selections", "get_items").sync(selection.id, client=client, limit=2)
    assert page.total == 5 and len(page.items) == 2
    csv_file = _op(generated, "selections", "get_items_csv").sync(selection.id, client=client)
    lines = csv_file.splitlines()
    assert lines[0] == "sample_id,label" and len(lines) == 6
    cut = _op(generated, "selections", "get_items_csv").sync(
        selection.id, client=client, limit=2, offset=1
    )
    assert cut.splitlines()[1:] == lines[2:4]
    jsonl = _op(generated, "selections", "get_items_jsonl").sync(selection.id, client=client)
    assert len(jsonl.payload.read().decode().splitlines()) == 5
    scores = _op(generated, "jobs", "get_scores_csv").sync(job.id, client=client)
    assert scores.splitlines()[0] == "sample_id,label,score"
    score_page = _op(generated, "jobs", "get_scores").sync(job.id, client=client, limit=3)
    assert score_page.total == 12 and len(score_page.items) == 3

    export = _op(generated, "selections", "get_export").sync(selection.id, client=client)
    with zipfile.ZipFile(io.BytesIO(export.payload.read())) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".png")]) == 5
    thumb = _op(generated, "datasets", "get_thumbnail").sync(dataset.id, 0, client=client)
    assert thumb.payload.read().startswith(PNG_MAGIC)
    fmt = importlib.import_module(
        f"{generated.__name__}.models.histogram_plot_fmt"
    ).HistogramPlotFmt.PNG
    plot = _op(generated, "jobs", "histogram_plot").sync(job.id, fmt, client=client)
    assert plot.payload.read().startswith(PNG_MAGIC)

    # Errors are parsed as the Problem model.
    missing = _op(generated, "datasets", "get_dataset").sync_detailed(uuid.uuid4(), client=client)
    assert missing.status_code == 404
    assert isinstance(missing.parsed, models.Problem) and missing.parsed.code == "not_found"

    # And everything can be deleted through it.
    for tag, name, ident in (
        ("selections", "delete_selection", selection.id),
        ("jobs", "delete_job", job.id),
        ("datasets", "delete_dataset", dataset.id),
    ):
        assert _op(generated, tag, name).sync_detailed(ident, client=client).status_code == 204
