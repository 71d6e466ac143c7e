"""The worker keeps a job's decoded inputs for the next job on the same data
(DLCPRUNE_INPUT_CACHE_BYTES, under cache_dir/inputs): a second job with other levels adds no
entry and reads none of the dataset's samples; another image size is a new entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Api, finish
from tests.service.data import write_image_zip


def test_a_second_job_on_the_same_data_reuses_the_decoded_inputs(
    api_a: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings
    from dlcprune.core.formats.ziparchive import ZipReader

    root = Path(get_settings().cache_dir) / "inputs"  # type: ignore[arg-type]
    before = set(root.glob("*.npy")) if root.exists() else set()
    ds = api_a.upload(write_image_zip(tmp_path / "inputs.zip", per_class=5, seed=41)).json()

    def job(params: dict) -> dict:
        posted = api_a.post("/v1/jobs", json={"dataset_id": ds["id"], "params": params}).json()
        assert finish(posted) == "succeeded"
        return api_a.get(f"/v1/jobs/{posted['id']}").json()

    job({"image_size": 32, "levels": 2})
    added = set(root.glob("*.npy")) - before
    assert len(added) == 1
    # The next job on the same data decodes nothing: the samples are never read.
    reads = []
    real = ZipReader._iter_images
    monkeypatch.setattr(
        ZipReader, "_iter_images", lambda self, *a, **k: (reads.append(1), real(self, *a, **k))[1]
    )
    job({"image_size": 32, "levels": 3})
    assert set(root.glob("*.npy")) - before == added and reads == []
    job({"image_size": 40, "levels": 2})
    assert len(set(root.glob("*.npy")) - before) == 2 and reads == [1]
