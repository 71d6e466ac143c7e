"""Hugging Face ``save_to_disk`` directories in an object store (a moto S3 server on loopback,
tests/service/stores.py), written here with the real ``datasets`` library: read where they lie
(their JSON files, then their Arrow files streamed), never copied into the local cache; a
``DatasetDict``'s train split; a corrupt Arrow file named by its URI."""

from __future__ import annotations

from pathlib import Path

import datasets

from tests.conftest import Api
from tests.problems import problem
from tests.service.data import image_members
from tests.service.stores import refer, score

CLASSES = ["blue", "green", "red"]


def saved(members: dict[str, bytes]) -> datasets.Dataset:
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)}
    )
    return datasets.Dataset.from_dict(
        {
            "image": [{"bytes": b, "path": None} for b in members.values()],
            "label": [CLASSES.index(n.split("/")[0]) for n in members],
        },
        features=features,
    )


def upload(s3, local: Path, prefix: str) -> None:  # type: ignore[no-untyped-def]
    s3.put(str(local) + "/", prefix + "/", recursive=True)


def copies(digest: str) -> list[str]:
    """The local copies made of the pin ``digest`` (complete or partial)."""
    from app.config import get_settings

    refs = get_settings().cache_dir / "refs"  # type: ignore[operator]
    return [p.name for p in refs.iterdir() if p.name.startswith(digest)] if refs.exists() else []


def test_a_saved_dataset_is_streamed_from_the_store_not_copied(
    api_a: Api, s3, bucket: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from dlcprune.core.formats import open_dataset
    from dlcprune.core.storage import pin

    members = image_members(4)
    saved(members).save_to_disk(str(tmp_path / "hf"), num_shards=2)
    upload(s3, tmp_path / "hf", f"{bucket}/hf")
    resp = refer(api_a, f"s3://{bucket}/hf/")
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["status"], ds["format"], ds["kind"], ds["num_samples"]) == (
        "ready", "hf_dataset", "image", 12,
    )  # fmt: skip
    assert ds["classes"] == {"blue": 4, "green": 4, "red": 4}
    # Pinned as before: the hash of the objects' listing (paths, sizes, ETags).
    from app import storage
    from app.config import get_settings

    store, path = storage.locate(f"s3://{bucket}/hf/", get_settings())
    assert ds["sha256"] == pin(store.listing(path, limit=1000))
    job = score(api_a, ds)
    assert job["status"] == "succeeded"
    scores = api_a.get(f"/v1/jobs/{job['id']}/scores", params={"limit": 100}).json()
    assert scores["total"] == 12
    assert sorted(s["sample_id"] for s in scores["items"]) == sorted(str(i) for i in range(12))
    # The ids and the image bytes are those of the same directory read from the local disk.
    with open_dataset(tmp_path / "hf") as local:
        assert local.ids == [str(i) for i in range(12)]
        assert dict(local.iter_raw([7]))[7] == list(members.values())[7]
    sample = api_a.get(f"/v1/datasets/{ds['id']}/samples/7")
    assert sample.status_code == 200, sample.text
    assert copies(ds["sha256"]) == []


def test_a_dataset_dict_gives_its_train_split(api_a: Api, s3, bucket: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    train, test = image_members(3), image_members(1, seed=9)
    splits = datasets.DatasetDict({"test": saved(test), "train": saved(train)})
    splits.save_to_disk(str(tmp_path / "dd"))
    upload(s3, tmp_path / "dd", f"{bucket}/dd")
    resp = refer(api_a, f"s3://{bucket}/dd/")
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["format"], ds["num_samples"]) == ("hf_dataset", 9)
    assert ds["classes"] == {"blue": 3, "green": 3, "red": 3}
    assert score(api_a, ds)["status"] == "succeeded"
    assert copies(ds["sha256"]) == []
    # Several splits, none of them train: refused, naming the reference.
    other = datasets.DatasetDict({"a": saved(test), "b": saved(test)})
    other.save_to_disk(str(tmp_path / "ab"))
    upload(s3, tmp_path / "ab", f"{bucket}/ab")
    resp = refer(api_a, f"s3://{bucket}/ab/")
    assert resp.status_code == 422, resp.text
    assert "several splits and none is 'train' (a, b)" in problem(resp)["message"]
    assert f"s3://{bucket}/ab/" in problem(resp)["message"]


def test_a_corrupt_arrow_file_is_a_422_naming_its_uri(
    api_a: Api, s3, bucket: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    saved(image_members(2)).save_to_disk(str(tmp_path / "hf"), num_shards=2)
    victim = tmp_path / "hf" / "data-00001-of-00002.arrow"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    upload(s3, tmp_path / "hf", f"{bucket}/bad")
    resp = refer(api_a, f"s3://{bucket}/bad/")
    assert resp.status_code == 422, resp.text
    err = problem(resp)
    assert err["code"] == "invalid_dataset"
    assert f"s3://{bucket}/bad/data-00001-of-00002.arrow" in err["message"], err
    assert "cannot read the Arrow file" in err["message"]
    listed = api_a.get("/v1/datasets", params={"limit": 100}).json()["items"]
    assert f"s3://{bucket}/bad/" not in [d.get("uri") for d in listed]
