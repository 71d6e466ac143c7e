"""Properties: archive member names can never escape the dataset; however a job is delivered
(once, repeatedly, concurrently), it runs once and leaves the same scores."""

from __future__ import annotations

import io
import posixpath
import tarfile
import threading
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dlcprune.core.errors import DatasetError, UnsafePathError
from dlcprune.core.formats import open_dataset
from dlcprune.core.formats.limits import split_relative

SEGMENTS = st.sampled_from(["a", "b", "..", ".", "", "C:", "c:x", "\\", "x\\..", "é", " ", "..."])
NAMES = st.lists(SEGMENTS, min_size=1, max_size=6).map("/".join) | st.text(max_size=30)


@given(NAMES)
def test_a_member_name_is_refused_or_stays_inside(name: str) -> None:
    try:
        parts = split_relative(name, path="archive.zip", what="member")
    except UnsafePathError:
        return
    joined = "/".join(parts)
    assert not joined.startswith("/") and "\\" not in joined
    assert ".." not in parts
    # Resolved under a root, the path stays under it.
    assert posixpath.normpath(posixpath.join("/root", joined)).startswith("/root")


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=NAMES, kind=st.sampled_from(["zip", "tar"]))
def test_archives_with_any_member_name_are_refused_or_safe(
    tmp_path: Path, name: str, kind: str
) -> None:
    png = _png()
    path = tmp_path / f"{uuid.uuid4().hex}.{kind}"
    members = {"ok/a.png": png, "ok/b.png": png, "other/c.png": png, name or "x": png}
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for member, data in members.items():
                zf.writestr(member, data)
    else:
        with tarfile.open(path, "w") as tf:
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    try:
        with open_dataset(path) as ds:
            for sid in ds.ids:
                assert not sid.startswith("/") and ".." not in sid.split("/")
                assert "\\" not in sid
    except DatasetError:
        pass  # refused with a typed error: fine


@pytest.fixture(scope="module")
def vector_job_factory(app_client, key_a: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A labelled vector dataset and a TorchScript model uploaded once; makes new jobs."""
    import torch
    from torch import nn

    from tests.conftest import Api

    root = tmp_path_factory.mktemp("vectors")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    x[:20, 0] += 3
    np.savez(root / "v.npz", x=x, y=(np.arange(40) >= 20).astype(int))
    torch.manual_seed(0)
    torch.jit.save(
        torch.jit.script(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))),
        root / "mlp.pt",
    )
    api = Api(app_client, key_a)
    ds = api.upload(root / "v.npz").json()
    with open(root / "mlp.pt", "rb") as fh:
        weights = api.post("/v1/weights", files={"file": ("mlp.pt", fh)}).json()
    counter = iter(range(1, 10**6))

    def new_job() -> str:
        # A different seed each time: a new score set, never answered from the cache.
        body = {
            "dataset_id": ds["id"],
            "model": "torchscript",
            "weights_id": weights["id"],
            "params": {"levels": 3, "masking": "random", "seed": next(counter)},
        }
        job = api.post("/v1/jobs", json=body)
        assert job.status_code == 202, job.text
        return job.json()["id"]

    return api, new_job


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(deliveries=st.integers(1, 4), concurrent=st.booleans())
def test_repeated_deliveries_run_once_with_the_same_scores(
    vector_job_factory,
    deliveries: int,
    concurrent: bool,  # type: ignore[no-untyped-def]
) -> None:
    from worker.runner import run_job

    api, new_job = vector_job_factory
    job_id = new_job()
    results: list[str] = []
    if concurrent:
        threads = [
            threading.Thread(target=lambda: results.append(str(run_job(job_id))))
            for _ in range(deliveries)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        results = [str(run_job(job_id)) for _ in range(deliveries)]
    assert sorted(results) == ["skipped"] * (deliveries - 1) + ["succeeded"]
    first = api.get(f"/v1/jobs/{job_id}/scores", params={"format": "csv"}).text
    assert str(run_job(job_id)) == "skipped"  # a late delivery changes nothing
    assert api.get(f"/v1/jobs/{job_id}/scores", params={"format": "csv"}).text == first
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["attempts"] == 1
