"""The Python client (``dlcprune.client``) and the CLI's ``remote`` commands.

In process first (the app on PostgreSQL through the client's ``http=`` hook, jobs run by the
worker's task code in a thread), then end to end against a real ``dlcprune serve`` (embedded
default, auth on): the client over HTTP, and ``dlcprune remote ...`` as subprocesses.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import threading
import tracemalloc
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest

from dlcprune.client import (
    Client,
    Dataset,
    DlcpruneError,
    Item,
    Job,
    JobFailed,
    Preview,
    Score,
    Selection,
    filename_from,
)
from dlcprune.names import DEFAULT_HARD_CUTOFF
from tests.client.conftest import DLCPRUNE, FAST, Embedded
from tests.conftest import free_port
from tests.service.data import image_members


def _fractions_recorder() -> tuple[list[float], list[str], object]:
    fractions: list[float] = []
    states: list[str] = []

    def progress(fraction: float, job: Job) -> None:
        assert isinstance(job, Job)
        fractions.append(fraction)
        states.append(job.status)

    return fractions, states, progress


def _assert_progress(fractions: list[float], states: list[str]) -> None:
    assert len(fractions) >= 2, fractions
    assert fractions == sorted(fractions), fractions
    assert fractions[-1] == 1.0 and states[-1] == "succeeded"
    assert len(set(fractions)) >= 2


# In process ------------------------------------------------------------------------------------


def test_the_whole_flow_in_process(client_a: Client, colours: Path, tmp_path: Path) -> None:
    from worker.runner import run_job

    ds = client_a.upload(colours, name="colours")
    assert isinstance(ds, Dataset)
    assert (ds.status, ds.num_samples, ds.name, ds.filename) == (
        "ready",
        24,
        "colours",
        colours.name,
    )
    assert ds.sha256 == hashlib.sha256(colours.read_bytes()).hexdigest()
    assert ds.classes == {"blue": 8, "green": 8, "red": 8}
    assert client_a.dataset(ds.id) == ds
    assert ds.id in {d.id for d in client_a.datasets()}

    job = client_a.start_job(ds.id, params={**FAST, "levels": 3})
    assert isinstance(job, Job) and job.status == "queued" and not job.finished
    assert job.params["levels"] == 3 and job.model == "efficientnet_lite0"

    fractions, states, progress = _fractions_recorder()
    worker = threading.Thread(target=run_job, args=(job.id,))
    worker.start()
    try:
        done = client_a.wait(job.id, poll=0.05, timeout=300, progress=progress)  # type: ignore[arg-type]
    finally:
        worker.join()
    assert done.succeeded and done.progress.fraction == 1.0 and done.finished_at is not None
    _assert_progress(fractions, states)
    assert job.id in {j.id for j in client_a.jobs(dataset_id=ds.id)}
    assert [j.id for j in client_a.jobs(status="succeeded", dataset_id=ds.id)] == [job.id]

    scores = client_a.scores(job.id)
    assert len(scores) == 24 and all(isinstance(s, Score) for s in scores)
    assert all(s.label == s.sample_id.split("/")[0] and s.score is not None for s in scores)
    csv_path = client_a.scores_csv(job.id, tmp_path / "scores.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "sample_id,label,score" and len(lines) == 25
    assert [line.split(",")[0] for line in lines[1:]] == [s.sample_id for s in scores]

    preview = client_a.preview(job.id, keep=0.5, strategy="hard", seed=2)
    assert isinstance(preview, Preview) and preview.size == 12 and preview.num_samples == 24
    sel = client_a.select(job.id, keep=0.5, strategy="hard", seed=2)
    assert isinstance(sel, Selection) and sel.size == preview.size == 12
    assert sel.class_counts == preview.class_counts["kept"]
    assert sel.provenance is not None and sel.provenance["selection"]["id"] == sel.id
    assert client_a.selection(sel.id) == sel
    assert sel.id in {s.id for s in client_a.selections(job.id)}

    items = client_a.items(sel.id)
    assert len(items) == 12 and all(isinstance(i, Item) for i in items)
    assert all(i.label == i.sample_id.split("/")[0] for i in items)
    # "hard" keeps each class's highest scores.
    by_class: dict[str, list[Score]] = {}
    for s in scores:
        by_class.setdefault(s.label or "", []).append(s)
    hardest = {
        s.sample_id
        for group in by_class.values()
        for s in sorted(group, key=lambda s: s.score or 0.0)[4:]
    }
    assert {i.sample_id for i in items} == hardest

    path = client_a.download(sel.id, tmp_path / "out")
    assert path.name == f"colours-{sel.id[:8]}.zip" and path.parent == tmp_path / "out"
    originals = image_members(8)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(i.sample_id for i in items)
        assert all(zf.read(i.sample_id) == originals[i.sample_id] for i in items)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".partial")]

    client_a.delete_dataset(ds.id)
    with pytest.raises(DlcpruneError) as gone:
        client_a.dataset(ds.id)
    assert (gone.value.status, gone.value.code) == (404, "not_found")


def test_errors_carry_the_status_code_and_message(  # type: ignore[no-untyped-def]
    client_a: Client, scored: dict, app_client, tmp_path: Path
) -> None:
    ds, done = scored["dataset"]["id"], scored["job"]["id"]

    with pytest.raises(DlcpruneError) as missing:
        client_a.job(uuid.uuid4())
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert "not found" in missing.value.message and missing.value.request_id

    queued = client_a.start_job(ds, params={**FAST, "levels": 9})
    assert queued.status == "queued"
    for call in (
        lambda: client_a.select(queued.id, keep=0.5),
        lambda: client_a.preview(queued.id, keep=0.5),
        lambda: client_a.scores(queued.id),
    ):
        with pytest.raises(DlcpruneError) as not_ready:
            call()
        assert (not_ready.value.status, not_ready.value.code) == (409, "job_not_ready")
    assert client_a.cancel(queued.id).status == "cancelled"
    with pytest.raises(DlcpruneError) as finished:
        client_a.cancel(queued.id)
    assert (finished.value.status, finished.value.code) == (409, "job_finished")
    with pytest.raises(JobFailed) as cancelled:
        client_a.wait(queued.id, poll=0.01)
    assert cancelled.value.code == "cancelled" and cancelled.value.job.status == "cancelled"

    for call, code in (
        (lambda: client_a.select(done, keep=0), "validation_error"),
        (lambda: client_a.select(done, keep=25), "invalid_selection"),
        (lambda: client_a.select(done, keep=0.5, strategy="best"), "validation_error"),
        (lambda: client_a.start_job(ds, params={"levels": -1}), "validation_error"),
        (lambda: client_a.start_job(ds, model="timm:resnet18"), "invalid_model"),
        (lambda: client_a.download(uuid.uuid4(), tmp_path, format="tarball"), "validation_error"),
    ):
        with pytest.raises(DlcpruneError) as bad:
            call()
        assert (bad.value.status, bad.value.code) == (422, code), call
        assert bad.value.message

    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(DlcpruneError) as invalid:
        client_a.upload(garbage)
    assert (invalid.value.status, invalid.value.code) == (422, "corrupt_archive")
    assert invalid.value.details["dataset"]["status"] == "invalid"

    with (
        Client("http://testserver", http=app_client) as anonymous,
        pytest.raises(DlcpruneError) as unauthorized,
    ):
        anonymous.datasets()
    assert (unauthorized.value.status, unauthorized.value.code) == (401, "unauthorized")

    with (
        Client(f"http://127.0.0.1:{free_port()}", timeout=2) as nowhere,
        pytest.raises(DlcpruneError) as down,
    ):
        nowhere.job(done)
    assert down.value.status is None and down.value.code == "connection_error"
    assert str(down.value).startswith("connection_error: ")


def test_a_ccs_selection_with_a_hard_cutoff(client_a: Client, scored: dict) -> None:
    """hard_cutoff reaches the service from the client: a cutoff of a half with keep a half
    leaves CCS exactly the easier half, and the provenance records what was asked."""
    job = scored["job"]["id"]
    scores = client_a.scores(job)
    order = sorted(range(len(scores)), key=lambda i: (scores[i].score, i))
    easier = sorted(scores[i].sample_id for i in order[:12])

    preview = client_a.preview(job, keep=0.5, strategy="ccs", hard_cutoff=0.5, seed=1)
    assert (preview.size, preview.strategy) == (12, "ccs")
    sel = client_a.select(job, keep=0.5, strategy="ccs", hard_cutoff=0.5, seed=1)
    assert sel.size == 12 and sel.raw["hard_cutoff"] == 0.5
    assert sorted(i.sample_id for i in client_a.items(sel.id)) == easier
    assert sel.provenance is not None
    asked = {k: sel.provenance["selection"][k] for k in ("strategy", "keep", "hard_cutoff", "seed")}
    assert asked == {"strategy": "ccs", "keep": 0.5, "hard_cutoff": 0.5, "seed": 1}
    assert sel.provenance["selection"]["size"] == 12
    # Without it, the service's default (dlcprune.names.DEFAULT_HARD_CUTOFF).
    default = client_a.select(job, keep=0.5, strategy="ccs", seed=1)
    assert default.raw["hard_cutoff"] == DEFAULT_HARD_CUTOFF


def test_idempotency_keys_and_cached_jobs(client_a: Client, scored: dict) -> None:
    ds = scored["dataset"]["id"]
    again = client_a.start_job(ds, params=FAST)
    assert again.cached and again.succeeded
    assert client_a.wait(again.id, poll=0.01).id == again.id
    key = f"client-{uuid.uuid4().hex}"
    first = client_a.start_job(ds, params={**FAST, "levels": 6}, idempotency_key=key)
    second = client_a.start_job(ds, params={**FAST, "levels": 6}, idempotency_key=key)
    assert first.id == second.id
    with pytest.raises(DlcpruneError) as reused:
        client_a.start_job(ds, params=FAST, idempotency_key=key)
    assert (reused.value.status, reused.value.code) == (409, "idempotency_key_reused")
    client_a.cancel(first.id)


def test_weights_upload(client_a: Client, tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(b"not really weights")
    weights = client_a.upload_weights(path)
    assert weights.filename == "w.pth" and weights.size_bytes == 18
    assert weights.sha256 == hashlib.sha256(b"not really weights").hexdigest()
    assert client_a.weights(weights.id) == weights


class _CountingTransport(httpx.BaseTransport):
    """Reads the request body as the client streams it, keeping only sizes."""

    def __init__(self) -> None:
        self.chunks: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for chunk in request.stream:  # type: ignore[union-attr]
            self.chunks.append(len(chunk))
        now = "2026-11-28T00:00:00Z"
        body = {
            "id": str(uuid.uuid4()),
            "name": "big.npz",
            "status": "indexing",
            "source": "upload",
            "filename": "big.npz",
            "created_at": now,
            "updated_at": now,
            "url": "http://testserver/v1/datasets/x",
        }
        return httpx.Response(202, json=body)


def test_uploads_stream_from_disk(tmp_path: Path) -> None:
    big = tmp_path / "big.npz"
    size = 16 * 2**20
    with open(big, "wb") as fh:
        for _ in range(size // 2**20):
            fh.write(os.urandom(2**20))
    transport = _CountingTransport()
    http = httpx.Client(transport=transport)
    with Client("http://testserver", http=http) as client:
        tracemalloc.start()
        try:
            ds = client.upload(big)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert ds.status == "indexing"
    assert sum(transport.chunks) > size and len(transport.chunks) > 16
    assert max(transport.chunks) <= 2**20  # never the whole file in one piece
    assert peak < 4 * 2**20, peak  # the 16 MiB file was never held in memory


def test_filenames_from_content_disposition() -> None:
    assert filename_from('attachment; filename="digits-1a2b.zip"', "x") == "digits-1a2b.zip"
    assert filename_from("attachment; filename*=utf-8''d%C3%A9j%C3%A0.zip", "x") == "déjà.zip"
    assert filename_from('attachment; filename="../../etc/passwd"', "x") == "passwd"
    assert filename_from('attachment; filename=".."', "fallback") == "fallback"
    assert filename_from(None, "fallback") == "fallback"


def test_the_client_never_shows_its_key() -> None:
    client = Client("http://127.0.0.1:1/", api_key="dlc_0123abcd_secretsecretsecret")
    assert "secret" not in repr(client) and client.base_url == "http://127.0.0.1:1"
    client.close()


# A running service -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_client_against_a_running_service(
    embedded: Embedded, colours: Path, tmp_path: Path
) -> None:
    with Client(embedded.url, api_key=embedded.key, timeout=30) as client:
        ds = client.upload(colours)
        assert ds.status == "ready" and ds.num_samples == 24
        job = client.start_job(ds.id, params=FAST)
        fractions, states, progress = _fractions_recorder()
        done = client.wait(job.id, poll=0.1, timeout=300, progress=progress)  # type: ignore[arg-type]
        assert done.succeeded and not done.cached
        _assert_progress(fractions, states)

        sel = client.select(done.id, keep=0.3, seed=4)
        items = client.items(sel.id)
        assert len(items) == sel.size == 7
        path = client.download(sel.id, tmp_path)
        with zipfile.ZipFile(path) as zf:
            assert sorted(zf.namelist()) == sorted(i.sample_id for i in items)
        bundle = client.download(sel.id, tmp_path, format="bundle")
        with zipfile.ZipFile(bundle) as zf:
            assert sorted(zf.namelist()) == sorted([path.name, "manifest.csv", "provenance.json"])
            assert json.loads(zf.read("provenance.json")) == sel.provenance
            assert zf.read(path.name) == path.read_bytes()

        checks = (
            (lambda: client.selection(uuid.uuid4()), 404, "not_found"),
            (lambda: client.select(done.id, keep=30), 422, "invalid_selection"),
            (lambda: client.select(done.id, keep=-1), 422, "validation_error"),
        )
        for call, status, code in checks:
            with pytest.raises(DlcpruneError) as err:
                call()
            assert (err.value.status, err.value.code) == (status, code)
        slow = client.start_job(ds.id, params={**FAST, "levels": 400})
        with pytest.raises(DlcpruneError) as not_ready:
            client.select(slow.id, keep=0.5)
        assert (not_ready.value.status, not_ready.value.code) == (409, "job_not_ready")
        client.cancel(slow.id)
    with Client(embedded.url) as anonymous:
        with pytest.raises(DlcpruneError) as unauthorized:
            anonymous.datasets()
        assert (unauthorized.value.status, unauthorized.value.code) == (401, "unauthorized")


def _cli(
    embedded: Embedded, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DLCPRUNE, "remote", *args],
        env=env or embedded.env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_remote_commands_end_to_end(embedded: Embedded, tmp_path: Path) -> None:
    folder = tmp_path / "colours"
    for name, data in image_members(6, seed=3).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    conn = ["--url", embedded.url, "--key", embedded.key]

    up = _cli(embedded, "upload", str(folder), *conn)
    assert up.returncode == 0, up.stderr
    dataset_id = up.stdout.strip()
    assert uuid.UUID(dataset_id) and "18 samples, 3 classes" in up.stderr

    # --url and --key from the environment; --wait with the progress bar forced on.
    env = {**embedded.env, "DLCPRUNE_URL": embedded.url, "DLCPRUNE_API_KEY": embedded.key}
    score = _cli(
        embedded,
        "score",
        dataset_id,
        "--image-size",
        "32",
        "--levels",
        "2",
        "--wait",
        "--poll",
        "0.2",
        "--progress",
        env=env,
    )
    assert score.returncode == 0, score.stderr
    job_id = score.stdout.strip()
    assert "100%" in score.stderr and f"job {job_id}: succeeded" in score.stderr

    status = _cli(embedded, "status", job_id, env=env)
    assert status.returncode == 0, status.stderr
    fields = status.stdout.strip().split("\t")
    assert fields[:3] == [job_id, "succeeded", "done"] and fields[4] == "100.0%"
    as_json = json.loads(_cli(embedded, "status", job_id, "--json", env=env).stdout)
    assert as_json["id"] == job_id and as_json["params"]["levels"] == 2

    subset = tmp_path / "subset.txt"
    select = _cli(embedded, "select", job_id, "--keep", "0.5", "--out", str(subset), env=env)
    assert select.returncode == 0, select.stderr
    selection_id = select.stdout.strip()
    kept = subset.read_text().splitlines()
    assert len(kept) == 9 and "kept 9 of 18 samples (50.0%)" in select.stderr
    with Client(embedded.url, api_key=embedded.key) as client:
        assert kept == [i.sample_id for i in client.items(selection_id)]

    ccs = _cli(
        embedded, "select", job_id, "--keep", "6", "--strategy", "ccs", "--hard-cutoff", "0.25",
        "--json", env=env,
    )  # fmt: skip
    assert ccs.returncode == 0, ccs.stderr
    made = json.loads(ccs.stdout)
    assert (made["strategy"], made["size"], made["hard_cutoff"]) == ("ccs", 6, 0.25)
    assert made["provenance"]["selection"]["hard_cutoff"] == 0.25

    out = tmp_path / "exports"
    download = _cli(embedded, "download", selection_id, "--out", str(out), env=env)
    assert download.returncode == 0, download.stderr
    path = Path(download.stdout.strip())
    assert path.parent == out and path.name == f"colours-{selection_id[:8]}.zip"
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(kept)
    manifest = _cli(
        embedded, "download", selection_id, "--out", str(out), "--format", "manifest-csv", env=env
    )
    rows = Path(manifest.stdout.strip()).read_text().splitlines()
    assert rows[0] == "sample_id,label,score,kept" and len(rows) == 19
    assert sorted(r.split(",")[0] for r in rows[1:] if r.endswith(",true")) == sorted(kept)

    # Errors: one line, the API's code and message, exit status 1.
    for args, code in (
        (["status", str(uuid.uuid4())], "not_found"),
        (["select", job_id, "--keep", "40"], "invalid_selection"),
        (["download", str(uuid.uuid4()), "--out", str(out)], "not_found"),
    ):
        failed = _cli(embedded, *args, env=env)
        assert failed.returncode == 1, failed
        assert failed.stdout == ""
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"dlcprune: error: {code}: "), lines
    slow = _cli(embedded, "score", dataset_id, "--levels", "400", "--image-size", "32", env=env)
    slow_id = slow.stdout.strip()
    busy = _cli(embedded, "select", slow_id, "--keep", "0.5", env=env)
    assert busy.returncode == 1 and busy.stderr.startswith("dlcprune: error: job_not_ready: ")
    with Client(embedded.url, api_key=embedded.key) as client:
        client.cancel(slow_id)
    wrong_key = _cli(embedded, "status", job_id, "--url", embedded.url, "--key", "dlc_0_nope")
    assert wrong_key.returncode == 1
    assert wrong_key.stderr.startswith("dlcprune: error: unauthorized: ")
    nowhere = _cli(embedded, "status", job_id, "--url", f"http://127.0.0.1:{free_port()}")
    assert nowhere.returncode == 1
    assert nowhere.stderr.startswith("dlcprune: error: connection_error: ")
    no_url = _cli(embedded, "status", job_id)
    assert no_url.returncode == 1 and "DLCPRUNE_URL" in no_url.stderr


def test_the_zip_of_a_folder_upload(tmp_path: Path) -> None:
    """``remote upload FOLDER`` zips the folder's files under their relative paths."""
    from dlcprune.cli.remote import zip_folder

    folder = tmp_path / "pets"
    for name, data in image_members(2).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / ".DS_Store").write_bytes(b"x")
    work = tmp_path / "work"
    work.mkdir()
    path = Path(zip_folder(str(folder), str(work)))
    assert path.name == "pets.zip"
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as zf:
        assert sorted(zf.namelist()) == sorted(image_members(2))


def test_every_request_body_has_examples(app_client) -> None:  # type: ignore[no-untyped-def]
    """JobCreate, SelectionCreate (creating and previewing), DatasetReference, the multipart
    dataset upload and the weights upload: every documented request body shows examples."""
    spec = app_client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    bodies = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody") if isinstance(op, dict) else None
            if not body:
                continue
            for media, content in body["content"].items():
                ref = content.get("schema", {}).get("$ref", "")
                schema = schemas[ref.rsplit("/", 1)[-1]] if ref else content.get("schema", {})
                examples = content.get("examples") or schema.get("examples")
                assert examples, (method, path, media)
                bodies += 1
    assert bodies >= 6
    for name in ("JobCreate", "SelectionCreate"):
        assert schemas[name]["examples"], name
    # One request body per operation: the upload is multipart only, the reference its own JSON.
    assert set(spec["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]) == {
        "multipart/form-data"
    }
    reference = spec["paths"]["/v1/datasets/references"]["post"]["requestBody"]["content"]
    assert set(reference) == {"application/json"}
    ref_schema = schemas[reference["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert ref_schema["examples"]
    assert set(ref_schema["properties"]) == {
        "uri",
        "name",
        "format",
        "columns",
        "tags",
        "external_id",
    }
    for path in ("/v1/datasets", "/v1/weights"):
        multipart = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert multipart["examples"], path
    preview = spec["paths"]["/v1/jobs/{job_id}/selections/preview"]["post"]["requestBody"]
    assert preview["content"]["application/json"]["schema"]["$ref"].endswith("/SelectionCreate")
