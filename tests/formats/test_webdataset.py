"""WebDataset shards, written here with webdataset's own ``TarWriter`` (and tarfile for hostile
ones): lists, brace patterns and folders of shards, ``.cls`` and ``.json`` labels, and the tar
safety rules (traversal, links, limits, a shard corrupt half-way)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import webdataset as wds

from dlcprune.core.errors import (
    CorruptArchiveError,
    InvalidRecordError,
    LimitExceededError,
    MissingFieldError,
    UnknownFormatError,
    UnsafePathError,
)
from dlcprune.core.formats import ReadLimits, detect_format, open_dataset
from tests.formats.builders import payloads, png, tar_info


def write_shards(root: Path, shards: int = 2, per: int = 3, label: str = "cls") -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for s in range(shards):
        path = root / f"shards-{s:06d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for k in range(per):
                n = s * per + k
                sample = {"__key__": f"{n:06d}", "png": png((n + 1, 2))}
                if label == "cls":
                    sample["cls"] = n % 2
                else:
                    sample["json"] = {"label": "ab"[n % 2], "y": n}
                sink.write(sample)
        out.append(path)
    return out


def write_raw_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w") as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def test_brace_pattern_list_and_folder_agree(tmp_path: Path) -> None:
    shards = write_shards(tmp_path / "s")
    assert detect_format(shards[0]) == "webdataset"
    assert detect_format(tmp_path / "s") == "webdataset"
    pattern = str(tmp_path / "s" / "shards-{000000..000001}.tar")
    with open_dataset(pattern) as ds:
        assert ds.format == "webdataset" and ds.kind == "image"
        assert ds.ids == ["000000", "000001", "000002", "000003", "000004", "000005"]
        assert ds.labels == ["0", "1", "0", "1", "0", "1"]
        assert [im.size for im in payloads(ds)] == [(n + 1, 2) for n in range(6)]
        assert ds.source(4) == f"{shards[1]}[000004.png]"
        assert [i for i, _ in ds.iter_range(2, 5)] == [2, 3, 4]
        assert [data for _, data in ds.iter_raw([5])] == [png((6, 2))]
        ds.verify()
    for given in (shards, tmp_path / "s"):
        with open_dataset(given) as ds:  # type: ignore[arg-type]
            assert ds.ids == ["000000", "000001", "000002", "000003", "000004", "000005"]


def test_json_labels_and_mapped_field(tmp_path: Path) -> None:
    shards = write_shards(tmp_path / "s", shards=1, label="json")
    with open_dataset(shards) as ds:  # type: ignore[arg-type]
        assert ds.labels == ["a", "b", "a"]
    with open_dataset(shards, columns={"label": "y"}) as ds:  # type: ignore[arg-type]
        assert ds.labels == ["0", "1", "2"]
    with pytest.raises(MissingFieldError) as err:
        open_dataset(shards, columns={"label": "fine"})  # type: ignore[arg-type]
    assert err.value.member == "000000.json" and "'fine'" in err.value.message


def test_a_class_folder_tar_stays_tar(tmp_path: Path) -> None:
    path = write_raw_tar(tmp_path / "c.tar", [(tar_info("cat/1.png"), png())])
    assert detect_format(path) == "tar"


def test_missing_label_and_image(tmp_path: Path) -> None:
    path = write_raw_tar(
        tmp_path / "a.tar",
        [(tar_info("1.png"), png()), (tar_info("1.cls"), b"0"), (tar_info("2.png"), png())],
    )
    with pytest.raises(MissingFieldError) as err:
        open_dataset(path)
    assert (err.value.path, err.value.member) == (str(path), "2.png")
    path = write_raw_tar(
        tmp_path / "b.tar",
        [(tar_info("1.png"), png()), (tar_info("1.cls"), b"0"), (tar_info("2.cls"), b"1")],
    )
    with pytest.raises(MissingFieldError, match="has no image"):
        open_dataset(path, format="webdataset")


def test_mixed_label_types_name_the_member(tmp_path: Path) -> None:
    path = write_raw_tar(
        tmp_path / "a.tar",
        [
            (tar_info("1.png"), png()),
            (tar_info("1.json"), b'{"label": 3}'),
            (tar_info("2.png"), png()),
            (tar_info("2.json"), b'{"label": "cat"}'),
        ],
    )
    with pytest.raises(InvalidRecordError, match="mixes label types") as err:
        open_dataset(path, format="webdataset")
    assert err.value.member == "2.json"


@pytest.mark.parametrize(
    ("info", "error"),
    [
        (tar_info("../1.cls"), UnsafePathError),
        (tar_info("/abs/1.cls"), UnsafePathError),
        (tar_info("1.cls", kind=tarfile.SYMTYPE), UnsafePathError),
        (tar_info("inner.tar"), UnknownFormatError),
    ],
    ids=["dotdot", "absolute", "symlink", "nested"],
)
def test_unsafe_members_are_refused(
    tmp_path: Path, info: tarfile.TarInfo, error: type[Exception]
) -> None:
    if info.issym():
        info.linkname = "/etc/passwd"
    path = write_raw_tar(tmp_path / "a.tar", [(tar_info("1.png"), png()), (info, b"0")])
    with pytest.raises(error) as err:
        open_dataset(path, format="webdataset")
    assert err.value.path == str(path) and err.value.member == info.name


def test_a_shard_corrupt_half_way_names_shard_and_member(tmp_path: Path) -> None:
    shards = write_shards(tmp_path / "s", shards=2, per=3)
    with tarfile.open(shards[1]) as tf:
        cut = tf.getmember("000004.png").offset_data + 30
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[:cut])  # in the middle of 000004.png's data
    with pytest.raises(CorruptArchiveError) as err:
        open_dataset(shards)  # type: ignore[arg-type]
    assert err.value.path == str(shards[1])
    assert err.value.member == "000004.png"
    assert err.value.code == "corrupt_archive"


def test_limits(tmp_path: Path) -> None:
    shards = write_shards(tmp_path / "s", shards=1, per=3)
    with pytest.raises(LimitExceededError, match="max_samples"):
        open_dataset(shards, limits=ReadLimits(max_samples=2))  # type: ignore[arg-type]
    with pytest.raises(LimitExceededError, match="max_members"):
        open_dataset(shards, limits=ReadLimits(max_members=4))  # type: ignore[arg-type]


def test_duplicate_keys_across_shards(tmp_path: Path) -> None:
    a = write_shards(tmp_path / "a", shards=1)
    b = write_shards(tmp_path / "b", shards=1)
    with pytest.raises(InvalidRecordError, match="duplicate sample key '000000'") as err:
        open_dataset([a[0], b[0]])  # type: ignore[list-item]
    assert err.value.path == str(b[0])


def test_shards_streamed_through_an_opener_read_as_local_ones(tmp_path: Path) -> None:
    """Shards that are not local files (objects in a store) are opened through ``opener`` as
    seekable files and streamed: the same ids, labels and bytes; a shard cut half-way names the
    shard by the name it was given; every file opened is closed."""
    import fsspec

    from dlcprune.core.formats.webdataset import WebDatasetReader

    shards = write_shards(tmp_path / "s", shards=2, per=3)
    fs = fsspec.filesystem("file")
    opened: list = []

    def opener(name: str):  # type: ignore[no-untyped-def]
        f = fs.open(name.removeprefix("store://"), "rb", block_size=64)  # many ranged reads
        opened.append(f)
        return f

    names = [f"store://{p}" for p in shards]
    limits = ReadLimits()
    with open_dataset(shards) as local:  # type: ignore[arg-type]
        want = (local.ids, local.labels, dict(local.iter_raw()))
    streamed = WebDatasetReader(names, limits, opener=opener)
    assert (streamed.ids, streamed.labels, dict(streamed.iter_raw())) == want
    assert dict(streamed.iter_raw(keep=[1, 4])) == {1: want[2][1], 4: want[2][4]}
    assert streamed.source(4) == f"{names[1]}[000004.png]"
    assert opened and all(f.closed for f in opened)

    with tarfile.open(shards[1]) as tf:
        cut = tf.getmember("000004.png").offset_data + 30
    shards[1].write_bytes(shards[1].read_bytes()[:cut])
    with pytest.raises(CorruptArchiveError) as err:
        WebDatasetReader(names, limits, opener=opener)
    assert (err.value.path, err.value.member) == (names[1], "000004.png")
    assert all(f.closed for f in opened)
