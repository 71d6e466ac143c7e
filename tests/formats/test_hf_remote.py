"""A ``save_to_disk`` directory read in place through an opener (``hfremote``), here fsspec's local
file system standing for a store: the same ids, labels, classes and image bytes as ``hfdisk``
gives for the same directory, the index kept without the image bytes, and the limits and errors
naming the Arrow file."""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path
from typing import Any

import datasets
import fsspec
import pytest

from dlcprune.core.errors import DatasetError, LimitExceededError
from dlcprune.core.formats import ReadLimits, open_dataset
from dlcprune.core.formats.hfremote import HfRemoteReader, StreamPart
from tests.formats.builders import png


class Counted:
    """A file whose reads are counted (``Opened.read``)."""

    def __init__(self, f: Any, opened: Opened) -> None:
        self._f = f
        self._opened = opened

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._opened.read += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> Counted:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


class Opened:
    """fsspec's local file system as the opener, remembering the names opened and counting the
    bytes read."""

    def __init__(self) -> None:
        self.fs = fsspec.filesystem("file")
        self.names: list[str] = []
        self.read = 0

    def __call__(self, name: str) -> Any:
        self.names.append(name)
        return Counted(self.fs.open(name, "rb", block_size=4096), self)


def picture(i: int) -> bytes:
    return png((i % 7 + 1, i % 5 + 1), color=(i % 256, 3 * i % 256, 40))


def images(n: int, classes: list[str], offset: int = 0) -> datasets.Dataset:
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=classes)}
    )
    return datasets.Dataset.from_dict(
        {
            "image": [{"bytes": picture(i + offset), "path": None} for i in range(n)],
            "label": [(i * 7) % len(classes) for i in range(n)],
        },
        features=features,
    )


def remote(path: Path, **kw: Any) -> HfRemoteReader:
    return HfRemoteReader(str(path), kw.pop("limits", ReadLimits()), opener=Opened(), **kw)


def test_the_remote_reader_and_hfdisk_agree(tmp_path: Path) -> None:
    # Several Arrow files of several batches each, in the train split of a DatasetDict.
    train = images(23, ["cat", "dog", "fox"])
    test = images(4, ["cat", "dog", "fox"], offset=100)
    splits = datasets.DatasetDict({"test": test, "train": train})
    splits.save_to_disk(str(tmp_path / "dd"), num_shards={"train": 3, "test": 1})
    arrow = sorted(p.name for p in (tmp_path / "dd" / "train").glob("*.arrow"))
    assert len(arrow) == 3
    opener = Opened()
    with open_dataset(tmp_path / "dd") as local:
        ours = HfRemoteReader(str(tmp_path / "dd") + "/", ReadLimits(), opener=opener)
        with ours:
            assert (ours.format, ours.kind, ours.split) == ("hf_dataset", "image", "train")
            assert ours.ids == local.ids == [str(i) for i in range(23)]
            assert ours.labels == local.labels
            assert ours.classes == local.classes == {"cat": 8, "dog": 8, "fox": 7}
            raw = dict(ours.iter_raw())
            assert raw == dict(local.iter_raw())
            assert raw == {i: picture(i) for i in range(23)}
            assert dict(ours.iter_raw([3, 17])) == {3: raw[3], 17: raw[17]}
            ranged = [(i, im.size) for i, im in ours.iter_range(6, 11)]
            assert ranged == [(i, im.size) for i, im in local.iter_range(6, 11)]
            assert [i for i, _ in ranged] == [6, 7, 8, 9, 10]
            sizes = [im.size for _, im in ours.iter_payloads()]
            assert sizes == [im.size for _, im in local.iter_payloads()]
            assert [ours.source(i) for i in (0, 22)] == [local.source(i) for i in (0, 22)]
            ours.verify()
    # Only the train split's files were opened, each by its name below the directory.
    base = str(tmp_path / "dd")
    assert set(opener.names) == {
        f"{base}/dataset_dict.json",
        f"{base}/train/state.json",
        f"{base}/train/dataset_info.json",
        *(f"{base}/train/{name}" for name in arrow),
    }


def test_the_index_holds_no_image_bytes(tmp_path: Path) -> None:
    big = datasets.Dataset.from_dict(
        {"image": [{"bytes": os.urandom(200_000), "path": None}] * 40, "label": [1] * 40},
        features=datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])}
        ),
    )
    big.save_to_disk(str(tmp_path / "big"), num_shards=2)  # 8 MB of (undecodable) images
    ds = remote(tmp_path / "big")
    assert ds.labels == ["b"] * 40
    # The first pass over a file keeps the label column copied out of the batches read (a
    # slice of a batch would keep its whole body, images included, alive).
    part = StreamPart(str(tmp_path / "big" / "data-00000-of-00002.arrow"), Opened(), ReadLimits())
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        part.count(["label"], 0, "big")
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert part.num_rows == 20 and part._kept.column("label").to_pylist() == [1] * 20
    assert held < 200_000, held
    part.close()
    ds.close()


def test_a_corrupt_arrow_file_names_it(tmp_path: Path) -> None:
    images(6, ["a", "b"]).save_to_disk(str(tmp_path / "hf"), num_shards=2)
    victim = tmp_path / "hf" / "data-00001-of-00002.arrow"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="cannot read the Arrow file") as err:
        remote(tmp_path / "hf")
    assert err.value.path == str(victim)
    victim.write_bytes(b"not arrow at all")
    with pytest.raises(DatasetError, match="cannot read the Arrow file") as err:
        remote(tmp_path / "hf")
    assert err.value.path == str(victim)
    victim.unlink()
    with pytest.raises(DatasetError, match="not there") as err:
        remote(tmp_path / "hf")
    assert err.value.path == str(victim)


def test_limits_samples_image_bytes_and_pixels(tmp_path: Path) -> None:
    images(12, ["a", "b"]).save_to_disk(str(tmp_path / "hf"), num_shards=3)
    with pytest.raises(LimitExceededError, match="max_samples") as err:
        remote(tmp_path / "hf", limits=ReadLimits(max_samples=5))
    assert err.value.path == str(tmp_path / "hf")
    ds = remote(tmp_path / "hf", limits=ReadLimits(max_member_bytes=60))
    with pytest.raises(LimitExceededError, match="max_member_bytes"):
        list(ds.iter_raw())
    ds = remote(tmp_path / "hf", limits=ReadLimits(max_image_pixels=3))
    with pytest.raises(LimitExceededError):
        ds.verify()
    with pytest.raises(LimitExceededError, match="max_total_bytes"):
        remote(tmp_path / "hf", limits=ReadLimits(max_total_bytes=100))


def test_splits_and_images_stored_by_path(tmp_path: Path) -> None:
    datasets.DatasetDict({"a": images(1, ["x"]), "b": images(1, ["x"])}).save_to_disk(
        str(tmp_path / "ab")
    )
    with pytest.raises(DatasetError, match=r"several splits and none is 'train' \(a, b\)"):
        remote(tmp_path / "ab")
    datasets.DatasetDict({"val": images(2, ["x"])}).save_to_disk(str(tmp_path / "one"))
    assert remote(tmp_path / "one").split == "val"
    (tmp_path / "pic.png").write_bytes(png((2, 2)))
    by_path = datasets.Dataset.from_dict(
        {"image": [{"bytes": None, "path": "pic.png"}], "label": ["x"]}
    )
    by_path.save_to_disk(str(tmp_path / "p"))
    ds = remote(tmp_path / "p")
    with pytest.raises(DatasetError, match="stored by path without its bytes"):
        list(ds.iter_raw())


def test_a_later_pass_seeks_to_the_batch_holding_its_first_row(tmp_path: Path) -> None:
    many = images(250, ["a", "b"])  # one file of three batches (100, 100, 50 rows)
    many.save_to_disk(str(tmp_path / "hf"))
    arrow = tmp_path / "hf" / "data-00000-of-00001.arrow"
    opener = Opened()
    with open_dataset(tmp_path / "hf") as local:
        ds = HfRemoteReader(str(tmp_path / "hf"), ReadLimits(), opener=opener)
        assert [s[0] for s in ds._parts[0]._starts] == [0, 100, 200]  # type: ignore[attr-defined]
        opener.read = 0
        assert dict(ds.iter_raw([230, 249])) == dict(local.iter_raw([230, 249]))
        # The schema and the last batch only: not the two batches before it.
        assert opener.read < arrow.stat().st_size / 2, (opener.read, arrow.stat().st_size)
        opener.read = 0
        got = [(i, im.size) for i, im in ds.iter_range(150, 205)]
        assert got == [(i, im.size) for i, im in local.iter_range(150, 205)]
        assert [i for i, _ in got] == list(range(150, 205))
        assert opener.read < arrow.stat().st_size
        assert dict(ds.iter_raw()) == dict(local.iter_raw())
        ds.close()
