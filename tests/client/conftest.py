"""Rig of the client, CLI, metrics, export and log tests.

- The service's own fixtures (``app_client`` on PostgreSQL, ``key_a``/``key_b``; tests/conftest.py):
  in-process tests run jobs with the worker's task code, as ``tests/service`` does.
- ``client_a``: ``dlcprune.client.Client`` bound to the in-process app (``http=app_client``).
- ``embedded``: a real ``dlcprune serve`` on the embedded default (SQLite, blobs and the embedded
  worker in a temporary directory) with auth on and a key made by ``dlcprune keys create``, its
  JSON log in a file; the slow end-to-end tests of the client, the CLI and the logs share it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlcprune.client import Client
from dlcprune.devserver import clean_env, serve
from tests.conftest import DLCPRUNE, Api
from tests.service.data import write_image_zip

FAST = {"image_size": 32, "levels": 2}


@pytest.fixture(scope="session")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 tinted-noise PNGs in three class folders, zipped."""
    return write_image_zip(tmp_path_factory.mktemp("data") / "colours.zip", per_class=8)


@pytest.fixture
def client_a(app_client, key_a: str) -> Iterator[Client]:  # type: ignore[no-untyped-def]
    with Client("http://testserver", api_key=key_a, http=app_client) as client:
        yield client


@pytest.fixture(scope="module")
def scored(app_client, key_a: str, colours: Path) -> dict:  # type: ignore[no-untyped-def]
    """Tenant A's upload of ``colours`` with a finished job (run in this process)."""
    from worker.runner import run_job

    api = Api(app_client, key_a)
    ds = api.upload(colours).json()
    job = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    run_job(job["id"])
    return {"dataset": ds, "job": api.get(f"/v1/jobs/{job['id']}").json()}


@dataclass
class Embedded:
    """A running ``dlcprune serve`` (embedded default, auth on)."""

    url: str
    key: str
    env: dict[str, str]
    log: Path
    root: Path

    def log_lines(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if line]


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    root = tmp_path_factory.mktemp("embedded")
    env = clean_env(
        DLCPRUNE_DATA_DIR=str(root / "var"),
        DLCPRUNE_HEARTBEAT_SECONDS="0.5",
        DLCPRUNE_POLL_SECONDS="0.2",
        DLCPRUNE_AUTH_ENABLED="true",
        DLCPRUNE_LOG_FORMAT="json",
    )
    key = subprocess.run(
        [DLCPRUNE, "keys", "create", "--tenant", "client-tests"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    log = root / "serve.log"
    with serve(env=env, log=log, new_session=True) as service:
        yield Embedded(url=service.url, key=key, env=env, log=log, root=root)
