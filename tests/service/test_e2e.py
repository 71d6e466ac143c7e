"""End to end over real HTTP: a running API, a real Celery worker process, PostgreSQL and Redis;
then the same flow on the embedded default (SQLite, no broker, the embedded worker process)."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from dlcprune.core.selection import allocate, resolve_keep
from dlcprune.devserver import Process, Service, clean_env, free_port
from tests.conftest import make_key
from tests.service.data import image_members, write_image_zip

pytestmark = pytest.mark.slow

FAST = {"image_size": 32, "levels": 2}


def wait_for(client: httpx.Client, url: str, states: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(url).json()
        if job["status"] in states:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not reach {states}: {job}")


def prune_flow(client: httpx.Client, archive: Path) -> None:
    """Upload, score, select at three ratios, fetch items and exports, check them."""
    ds = client.post("/v1/datasets", files={"file": (archive.name, archive.read_bytes())})
    assert ds.status_code == 201, ds.text
    ds = ds.json()
    assert ds["status"] == "ready" and ds["num_samples"] == 24
    job = client.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST})
    assert job.status_code == 202, job.text
    job = wait_for(client, job.json()["url"], {"succeeded", "failed", "cancelled"})
    assert job["status"] == "succeeded", job
    assert job["progress"]["done"] == job["progress"]["total"]
    originals = image_members(8)
    for keep in (0.2, 0.5, 0.8):
        sel = client.post(f"/v1/jobs/{job['id']}/selections", json={"keep": keep})
        assert sel.status_code == 201, sel.text
        sel = sel.json()
        size = resolve_keep(keep, 24)
        assert sel["size"] == size
        expected = allocate(np.array([8, 8, 8]), size).tolist()
        assert list(sel["class_counts"].values()) == expected
        items = client.get(sel["items_url"], params={"format": "csv"}).text.splitlines()[1:]
        kept = [line.split(",")[0] for line in items]
        assert len(kept) == len(set(kept)) == size
        for cls, count in sel["class_counts"].items():
            assert sum(k.startswith(cls + "/") for k in kept) == count
        export = client.get(sel["export_url"])
        assert export.status_code == 200
        with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
            assert sorted(zf.namelist()) == sorted(kept)
            assert all(zf.read(k) == originals[k] for k in kept)
    # Label issues: 202 until the worker (the evaluate queue, or the embedded worker) computed them.
    issues = client.get(f"/v1/jobs/{job['id']}/label-issues", params={"share": 0.25})
    assert issues.status_code == 202, issues.text
    deadline = time.monotonic() + 120
    while issues.status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.2)
        issues = client.get(issues.headers["location"])
    assert issues.status_code == 200, issues.text
    assert issues.json()["total"] == 6 and issues.json()["num_samples"] == 24


def test_celery_stack_end_to_end(live_api: str, celery_worker: Process, tmp_path: Path) -> None:
    archive = write_image_zip(tmp_path / "colours.zip", per_class=8)
    key = make_key("e2e-celery")
    with httpx.Client(base_url=live_api, headers={"X-API-Key": key}, timeout=60) as client:
        ready = client.get("/readyz").json()
        assert ready["checks"] == {
            "database": "ok",
            "schema": "ok",
            "broker": "ok",
            "blob_store": "ok",
        }
        prune_flow(client, archive)


def test_cancel_stops_a_running_job_within_seconds(
    live_api: str, celery_worker: Process, tmp_path: Path
) -> None:
    archive = write_image_zip(tmp_path / "colours.zip", per_class=8, seed=5)
    key = make_key("e2e-cancel")
    with httpx.Client(base_url=live_api, headers={"X-API-Key": key}, timeout=60) as client:
        ds = client.post("/v1/datasets", files={"file": (archive.name, archive.read_bytes())})
        long_job = {"dataset_id": ds.json()["id"], "params": {"image_size": 32, "levels": 1000}}
        job = client.post("/v1/jobs", json=long_job).json()
        deadline = time.monotonic() + 60
        while True:
            state = client.get(job["url"]).json()
            if state["status"] == "running" and state["progress"]["done"] > 0:
                break
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        t0 = time.monotonic()
        assert client.post(f"{job['url']}/cancel").json()["cancel_requested"] is True
        final = wait_for(client, job["url"], {"cancelled", "succeeded", "failed"}, timeout=30)
        stopped_in = time.monotonic() - t0
        assert final["status"] == "cancelled"
        assert stopped_in < 10, stopped_in
        assert final["progress"]["done"] < final["progress"]["total"]
        # The worker is free again: a short job runs to the end.
        short = client.post("/v1/jobs", json={**long_job, "params": FAST}).json()
        assert wait_for(client, short["url"], {"succeeded", "failed"})["status"] == "succeeded"


def _embedded(data_dir: Path, port: int, log: Path) -> Service:
    """``dlcprune serve`` on the embedded default, ready."""
    env = clean_env(DLCPRUNE_DATA_DIR=str(data_dir), DLCPRUNE_HEARTBEAT_SECONDS="0.5")
    service = Service(port=port, env=env, log=log, new_session=True)
    try:
        service.wait_ready()
    except BaseException:
        service.stop()
        raise
    return service


def test_embedded_default_end_to_end_and_resume(tmp_path: Path) -> None:
    """SQLite, a local blob directory and the embedded worker; no key needed on loopback. A job
    running when the service stops is finished after it starts again."""
    archive = write_image_zip(tmp_path / "colours.zip", per_class=8)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _embedded(tmp_path / "var", port, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.get("/readyz").json()["broker"] == "embedded"
            prune_flow(client, archive)
            ds = client.get("/v1/datasets").json()["items"][0]
            job = client.post(
                "/v1/jobs",
                json={"dataset_id": ds["id"], "params": {"image_size": 32, "levels": 60}},
            ).json()
            deadline = time.monotonic() + 60
            while client.get(job["url"]).json()["progress"]["done"] == 0:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        proc.stop()
        assert proc.returncode is not None
        proc = _embedded(tmp_path / "var", port, tmp_path / "serve.log")
        with httpx.Client(base_url=url, timeout=60) as client:
            done = wait_for(client, job["url"], {"succeeded", "failed", "cancelled"}, timeout=180)
            assert done["status"] == "succeeded", done
            assert done["attempts"] == 2
            assert (
                len(client.get(f"{job['url']}/scores", params={"format": "csv"}).text.splitlines())
                == 25
            )
    finally:
        proc.stop()
        log = (tmp_path / "serve.log").read_text(errors="replace")
        assert "Traceback" not in log, log[-4000:]


def _children(parent: int) -> list[int]:
    """Pids of embedded workers started for ``parent`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker.embedded" in cmd and str(parent).encode() in cmd:
            found.append(int(entry.name))
    return found


def test_a_killed_service_leaves_no_worker_behind(tmp_path: Path) -> None:
    proc = _embedded(tmp_path / "var", free_port(), tmp_path / "serve.log")
    try:
        deadline = time.monotonic() + 30
        while not _children(proc.pid):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        proc.kill()  # SIGKILL: no cleanup code runs in the service
        deadline = time.monotonic() + 15
        while _children(proc.pid):
            assert time.monotonic() < deadline, "the embedded worker outlived its service"
            time.sleep(0.2)
    finally:
        proc.stop()
