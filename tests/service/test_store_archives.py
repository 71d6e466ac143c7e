"""Tar archives in an object store (moto's S3 server on loopback, tests/service/stores.py): a
class-folder tar, compressed or not, is streamed from the store (read front to back by ranged
reads, once to index, once to score), never copied to the local cache; a single WebDataset shard
as one ``.tar`` object is still told apart from it (by its first members, read from the store);
a tar cut half-way is a 422 naming the object's URI and the member that was cut."""

from __future__ import annotations

import io
import random
import tarfile

import pytest

from tests.conftest import Api
from tests.problems import problem
from tests.service.data import image_members
from tests.service.stores import refer, score, wds_tar

CLASSES = {"blue": 4, "green": 4, "red": 4}


def class_tar(members: dict[str, bytes], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(f"pets/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def copies(sha256: str) -> list[str]:
    """The local copies made of the pin ``sha256`` (cache_dir/refs/<pin>, and its partials)."""
    from app.config import get_settings

    refs = get_settings().cache_dir / "refs"  # type: ignore[operator]
    return [p.name for p in refs.iterdir() if p.name.startswith(sha256)] if refs.exists() else []


@pytest.mark.parametrize(
    ("name", "mode", "fmt"),
    [("pets.tar.gz", "w:gz", None), ("pets.tar", "w", "tar")],
    ids=["tar.gz-detected", "tar-named"],
)
def test_a_class_folder_tar_in_the_store_is_streamed_not_copied(
    api_a: Api, s3, bucket: str, name: str, mode: str, fmt: str | None
) -> None:  # type: ignore[no-untyped-def]
    members = image_members(4)
    s3.pipe_file(f"{bucket}/t/{name}", class_tar(members, mode))
    uri = f"s3://{bucket}/t/{name}"
    resp = refer(api_a, uri, **({"format": fmt} if fmt else {}))
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["status"], ds["format"], ds["kind"], ds["num_samples"]) == (
        "ready", "tar", "image", 12,
    )  # fmt: skip
    assert ds["classes"] == CLASSES
    job = score(api_a, ds)
    assert job["status"] == "succeeded"
    scores = api_a.get(f"/v1/jobs/{job['id']}/scores", params={"limit": 100}).json()
    # Ids are the member paths below the one top folder, as for a local tar.
    assert sorted(s["sample_id"] for s in scores["items"]) == sorted(members)
    sample = api_a.get(f"/v1/datasets/{ds['id']}/samples/0")
    assert sample.status_code == 200, sample.text
    assert copies(ds["sha256"]) == []
    # A class-folder tar takes no column mapping, as when it is a local file.
    mapped = refer(api_a, uri, columns={"label": "y"})
    assert mapped.status_code == 422, mapped.text
    assert problem(mapped)["code"] == "invalid_columns"
    assert "format 'tar' takes no column mapping" in problem(mapped)["message"]


def test_one_webdataset_shard_object_is_still_webdataset(api_a: Api, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    members = image_members(4)
    cls = {n: sorted(CLASSES).index(n.split("/")[0]) for n in members}
    s3.pipe_file(f"{bucket}/w/one.tar", wds_tar(members, cls=cls))
    uri = f"s3://{bucket}/w/one.tar"
    resp = refer(api_a, uri)
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert (ds["format"], ds["num_samples"]) == ("webdataset", 12)
    assert ds["classes"] == {"0": 4, "1": 4, "2": 4}
    # Named, it is not probed: the same pin and the same dataset.
    named = refer(api_a, uri, format="webdataset").json()
    assert (named["format"], named["num_samples"], named["sha256"]) == (
        "webdataset", 12, ds["sha256"],
    )  # fmt: skip
    job = score(api_a, ds)
    assert job["status"] == "succeeded"
    scores = api_a.get(f"/v1/jobs/{job['id']}/scores", params={"limit": 100}).json()
    assert sorted(s["sample_id"] for s in scores["items"]) == sorted(
        n.rsplit(".", 1)[0].replace("/", "_") for n in members
    )
    assert copies(ds["sha256"]) == []


@pytest.mark.parametrize(("name", "mode"), [("cut.tar", "w"), ("cut.tgz", "w:gz")])
def test_a_tar_cut_half_way_is_a_422_naming_the_uri_and_the_member(
    api_a: Api, s3, bucket: str, name: str, mode: str
) -> None:  # type: ignore[no-untyped-def]
    # Three members of 64 KiB that do not compress: half the archive is inside the second one.
    rng = random.Random(0)
    whole = class_tar({f"red/{i}.png": rng.randbytes(1 << 16) for i in range(3)}, mode)
    s3.pipe_file(f"{bucket}/c/{name}", whole[: len(whole) // 2])
    uri = f"s3://{bucket}/c/{name}"
    resp = refer(api_a, uri)
    assert resp.status_code == 422, resp.text
    err = problem(resp)
    assert err["code"] == "corrupt_archive"
    assert err["message"].startswith(f"{uri}[pets/red/1.png]: "), err


def test_an_object_changed_between_the_check_and_a_pass_is_source_changed(
    api_a: Api, s3, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    """A pass opens its object long after the job checked the listing: if the object was
    replaced in between, the pass fails with source_changed instead of reading other data."""
    from app.blobstore import get_blobstore
    from app.config import get_settings
    from app.datasets.sources import open_source
    from app.db import session_scope
    from app.models import Dataset
    from dlcprune.core.errors import SourceChangedError

    members = image_members(4, seed=21)
    uri = f"s3://{bucket}/mid/pets.tar"
    s3.pipe_file(uri[5:], class_tar(members, "w"))
    ds = refer(api_a, uri).json()
    assert ds["status"] == "ready"
    with session_scope() as session:
        dataset = session.get(Dataset, ds["id"])
        session.expunge(dataset)
    settings = get_settings()
    reader, _ = open_source(dataset, settings, get_blobstore(settings))  # pin checked here
    with reader:
        other = dict(members)
        other["red/000.png"] = members["red/001.png"]
        s3.pipe_file(uri[5:], class_tar(other, "w"))  # replaced before the read pass
        with pytest.raises(SourceChangedError) as err:
            list(reader.iter_raw())
    assert err.value.code == "source_changed" and f"{uri} was changed" in str(err.value)
