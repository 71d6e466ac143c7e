"""Zip and tar datasets: layout, corrupt archives, refused members and the byte/member limits."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from dlcprune.core.errors import (
    CorruptArchiveError,
    CorruptImageError,
    EmptyClassError,
    LimitExceededError,
    UnknownFormatError,
    UnsafePathError,
)
from dlcprune.core.formats import ReadLimits, open_dataset
from tests.formats.builders import (
    BASIC,
    BASIC_IDS,
    BASIC_LABELS,
    check_error,
    payloads,
    png,
    tar_info,
    write_tar,
    write_zip,
)

# --------------------------------------------------------------------------------------------
# Zip


@pytest.mark.parametrize("top", ["", "export/"])
def test_zip_layout(tmp_path: Path, top: str) -> None:
    path = write_zip(tmp_path / "ds.zip", {f"{top}{k}": v for k, v in BASIC.items()})
    with open_dataset(path) as ds:
        assert ds.format == "zip" and ds.kind == "image"
        assert ds.ids == BASIC_IDS
        assert ds.labels == BASIC_LABELS
        assert ds.source(3) == f"{top}dog/a.JPG"
        images = payloads(ds)
        assert [im.size for im in images] == [(3, 2), (2, 2), (4, 4), (5, 5)]
        assert all(im.mode == "RGB" for im in images)
        ds.verify()


def _recording_opener():  # type: ignore[no-untyped-def]
    """An opener as the store readers get one (``store://`` names, fsspec files with small
    blocks, here over the local file system) and the list of the files it opened."""
    import fsspec

    fs = fsspec.filesystem("file")
    opened: list = []

    def opener(name: str):  # type: ignore[no-untyped-def]
        f = fs.open(name.removeprefix("store://"), "rb", block_size=64)
        opened.append(f)
        return f

    return opener, opened


def test_zip_read_by_ranges_through_an_opener(tmp_path: Path) -> None:
    """A zip that is not a local file (an object in a store) is read through ``opener``: the
    central directory and each member by ranges, the same dataset as the local file; the file
    is closed with the reader, and also when the archive is refused."""
    from dlcprune.core.formats.ziparchive import ZipReader

    path = write_zip(tmp_path / "ds.zip", BASIC)
    opener, opened = _recording_opener()

    ds = ZipReader(f"store://{path}", ReadLimits(), opener=opener)
    assert (ds.ids, ds.labels) == (BASIC_IDS, BASIC_LABELS)
    with open_dataset(path) as local:
        assert dict(ds.iter_raw()) == dict(local.iter_raw())
    ds.close()
    assert opened[0].closed
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not a zip at all")
    with pytest.raises(CorruptArchiveError):
        ZipReader(f"store://{tmp_path / 'bad.zip'}", ReadLimits(), opener=opener)
    assert opened[1].closed


def test_zip_with_directory_entries_and_empty_class(tmp_path: Path) -> None:
    path = tmp_path / "ds.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("root/", b"")
        zf.writestr("root/cat/", b"")
        zf.writestr("root/cat/1.png", png())
        zf.writestr("root/dog/", b"")
    with pytest.raises(EmptyClassError) as err:
        open_dataset(path)
    check_error(err, path, member="root/dog")


def test_zip_corrupt_image_member(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "ds.zip", {"cat/1.png": png(), "cat/2.png": b"nope"})
    ds = open_dataset(path)
    with pytest.raises(CorruptImageError) as err:
        ds.verify()
    check_error(err, path, member="cat/2.png")


def test_zip_bad_crc_is_corrupt_archive(tmp_path: Path) -> None:
    data = png((6, 6))
    path = write_zip(tmp_path / "ds.zip", {"cat/1.png": data}, compression=zipfile.ZIP_STORED)
    raw = bytearray(path.read_bytes())
    at = raw.index(data) + len(data) // 2
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptArchiveError) as err:
        payloads(open_dataset(path))
    check_error(err, path, member="cat/1.png")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_zip_corrupt_archive(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "ds.zip"
    if damage == "garbage":
        path.write_bytes(b"this is not a zip file at all" * 10)
    else:
        write_zip(path, BASIC)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptArchiveError) as err:
        open_dataset(path)
    check_error(err, path)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("../evil.png", UnsafePathError),
        ("cat/../../evil.png", UnsafePathError),
        ("/abs/cat/evil.png", UnsafePathError),
        ("C:/cat/evil.png", UnsafePathError),
        ("cat\\evil.png", UnsafePathError),
        ("cat/inner.zip", UnknownFormatError),
        ("cat/inner.tar.gz", UnknownFormatError),
    ],
)
def test_zip_refused_member_names(tmp_path: Path, name: str, error: type[Exception]) -> None:
    path = write_zip(tmp_path / "ds.zip", {"cat/1.png": png(), name: png()})
    with pytest.raises(error) as err:
        open_dataset(path)
    check_error(err, path, member=name)


def test_zip_nested_archive_message(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "ds.zip", {"cat/1.png": png(), "cat/more.zip": b"PK"})
    with pytest.raises(UnknownFormatError, match="nested archives are not supported"):
        open_dataset(path)


def test_zip_symlink_member(tmp_path: Path) -> None:
    path = tmp_path / "ds.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("cat/1.png", png())
        link = zipfile.ZipInfo("cat/2.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafePathError) as err:
        open_dataset(path)
    check_error(err, path, member="cat/2.png")


def test_zip_member_count_limit(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "ds.zip", {f"cat/{i}.png": png() for i in range(5)})
    assert len(open_dataset(path, limits=ReadLimits(max_members=5))) == 5
    with pytest.raises(LimitExceededError) as err:
        open_dataset(path, limits=ReadLimits(max_members=4))
    check_error(err, path)


def test_zip_total_bytes_limit(tmp_path: Path) -> None:
    files = {f"cat/{i}.png": png((8, 8), (i, i, i)) for i in range(4)}
    path = write_zip(tmp_path / "ds.zip", files)
    total = sum(len(v) for v in files.values())
    assert len(open_dataset(path, limits=ReadLimits(max_total_bytes=total))) == 4
    with pytest.raises(LimitExceededError) as err:
        open_dataset(path, limits=ReadLimits(max_total_bytes=total - 1))
    check_error(err, path)


def test_zip_member_bytes_limit(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "ds.zip", {"cat/1.png": png((8, 8))})
    with pytest.raises(LimitExceededError) as err:
        open_dataset(path, limits=ReadLimits(max_member_bytes=10))
    check_error(err, path, member="cat/1.png")


def test_zip_bomb_ratio(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "ds.zip", {"cat/1.png": png(), "cat/zeros.png": bytes(2 << 20)})
    with pytest.raises(LimitExceededError, match="compression ratio") as err:
        open_dataset(path)
    check_error(err, path, member="cat/zeros.png")


# --------------------------------------------------------------------------------------------
# Tar


@pytest.mark.parametrize(("suffix", "mode"), [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar", "w")])
def test_tar_layout(tmp_path: Path, suffix: str, mode: str) -> None:
    path = write_tar(tmp_path / f"ds{suffix}", {f"data/{k}": v for k, v in BASIC.items()}, mode)
    with open_dataset(path) as ds:
        assert ds.format == "tar" and ds.kind == "image"
        assert ds.ids == BASIC_IDS
        assert ds.labels == BASIC_LABELS
        assert ds.source(0) == "data/cat/10.png"
        images = payloads(ds)
        assert [im.size for im in images] == [(3, 2), (2, 2), (4, 4), (5, 5)]
        ds.verify()


def test_tar_out_of_order_members_yield_in_index_order(tmp_path: Path) -> None:
    names = ["z/9.png", "a/3.png", "m/1.png", "a/1.png", "z/0.png"]
    files = {name: png((k + 1, 1)) for k, name in enumerate(names)}
    path = tmp_path / "ds.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(tar_info("a", kind=tarfile.DIRTYPE))
        for name, data in files.items():
            tf.addfile(tar_info(name, len(data)), io.BytesIO(data))
    ds = open_dataset(path)
    assert ds.ids == sorted(names)
    widths = [im.size[0] for im in payloads(ds)]
    assert widths == [names.index(i) + 1 for i in ds.ids]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
@pytest.mark.parametrize(("suffix", "mode"), [(".tar.gz", "w:gz"), (".tar", "w")])
def test_tar_corrupt_archive(tmp_path: Path, damage: str, suffix: str, mode: str) -> None:
    path = tmp_path / f"ds{suffix}"
    if damage == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    else:
        big = {f"cat/{i}.png": png((32, 32), (i, 2 * i, 3 * i)) for i in range(6)}
        write_tar(path, big, mode)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(CorruptArchiveError) as err:
        open_dataset(path)
    check_error(err, path)


@pytest.mark.parametrize(("suffix", "mode"), [(".tar.gz", "w:gz"), (".tar", "w")])
def test_tar_streamed_through_an_opener(tmp_path: Path, suffix: str, mode: str) -> None:
    """A tar that is not a local file (an object in a store) is streamed through ``opener``:
    one file per pass (the index, then each read), the same dataset as the local file, each
    file closed when its pass ends, also a pass left early and an archive cut half-way (the
    error names the archive by the name given and the member that was cut)."""
    import random

    from dlcprune.core.formats.tararchive import TarReader

    path = write_tar(tmp_path / f"ds{suffix}", {f"data/{k}": v for k, v in BASIC.items()}, mode)
    opener, opened = _recording_opener()

    ds = TarReader(f"store://{path}", ReadLimits(), opener=opener)
    assert (ds.ids, ds.labels) == (BASIC_IDS, BASIC_LABELS)
    assert ds.source(0) == "data/cat/10.png"
    assert len(opened) == 1 and opened[0].closed
    with open_dataset(path) as local:
        assert dict(ds.iter_raw()) == dict(local.iter_raw())
        assert [im.tobytes() for im in payloads(ds)] == [im.tobytes() for im in payloads(local)]
    assert len(opened) == 3 and all(f.closed for f in opened)
    first = ds.iter_raw(keep=[0, 3])
    assert next(first)[0] == 0
    first.close()
    assert len(opened) == 4 and opened[3].closed
    # Three members of 64 KiB that do not compress: half the archive is inside the second one.
    rng = random.Random(0)
    big = {f"cat/{i}.png": rng.randbytes(1 << 16) for i in range(3)}
    cut = write_tar(tmp_path / f"cut{suffix}", big, mode)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    with pytest.raises(CorruptArchiveError) as err:
        TarReader(f"store://{cut}", ReadLimits(), opener=opener)
    assert (err.value.path, err.value.member) == (f"store://{cut}", "cat/1.png")
    assert f"store://{cut}[cat/1.png]" in str(err.value)
    assert len(opened) == 5 and opened[4].closed


def test_tar_truncated_at_member_boundary(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "ds.tar", {"cat/1.png": png(), "cat/2.png": png()}, "w")
    first = 512 + ((len(png()) + 511) // 512) * 512
    path.write_bytes(path.read_bytes()[:first])
    with pytest.raises(CorruptArchiveError):
        open_dataset(path)


@pytest.mark.parametrize(
    ("info", "error"),
    [
        (tar_info("../evil.png", 3), UnsafePathError),
        (tar_info("/abs/evil.png", 3), UnsafePathError),
        (tar_info("cat/inner.tgz", 3), UnknownFormatError),
        (tar_info("cat/fifo.png", 0, tarfile.FIFOTYPE), UnsafePathError),
        (tar_info("cat/dev.png", 0, tarfile.CHRTYPE), UnsafePathError),
    ],
    ids=["dotdot", "absolute", "nested", "fifo", "device"],
)
def test_tar_refused_members(tmp_path: Path, info: tarfile.TarInfo, error: type[Exception]) -> None:
    path = tmp_path / "ds.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(tar_info("cat/1.png", len(png())), io.BytesIO(png()))
        tf.addfile(info, io.BytesIO(b"abc") if info.size else None)
    with pytest.raises(error) as err:
        open_dataset(path)
    check_error(err, path, member=info.name)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE], ids=["symlink", "hardlink"])
def test_tar_links_refused(tmp_path: Path, kind: bytes) -> None:
    path = tmp_path / "ds.tar"
    with tarfile.open(path, "w") as tf:
        tf.addfile(tar_info("cat/1.png", len(png())), io.BytesIO(png()))
        link = tar_info("cat/2.png", 0, kind)
        link.linkname = "cat/1.png" if kind == tarfile.LNKTYPE else "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(UnsafePathError) as err:
        open_dataset(path)
    check_error(err, path, member="cat/2.png")


def test_tar_limits(tmp_path: Path) -> None:
    files = {f"cat/{i}.png": png((8, 8)) for i in range(4)}
    path = write_tar(tmp_path / "ds.tar.gz", files)
    with pytest.raises(LimitExceededError) as err:
        open_dataset(path, limits=ReadLimits(max_members=3))
    check_error(err, path)
    total = sum(len(v) for v in files.values())
    assert len(open_dataset(path, limits=ReadLimits(max_total_bytes=total))) == 4
    with pytest.raises(LimitExceededError) as err:
        open_dataset(path, limits=ReadLimits(max_total_bytes=total - 1))
    check_error(err, path)


def test_tar_corrupt_image_member(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "ds.tgz", {"cat/1.png": png(), "cat/2.png": b"junk"})
    with pytest.raises(CorruptImageError) as err:
        payloads(open_dataset(path))
    check_error(err, path, member="cat/2.png")


def test_a_connection_lost_mid_archive_is_not_a_corrupt_archive(tmp_path: Path) -> None:
    """A store's connection reset while an archive streams is raised as it is (the worker
    retries it), not reported as a damaged archive (which would fail the job for good)."""
    from dlcprune.core.formats.tararchive import TarReader

    path = write_tar(tmp_path / "ds.tar", BASIC, mode="w")

    class Dropping(io.BytesIO):
        def read(self, n: int = -1) -> bytes:  # type: ignore[override]
            if self.tell() > 600:
                raise ConnectionResetError(104, "Connection reset by peer")
            return super().read(n)

    with pytest.raises(ConnectionResetError):
        TarReader("store://ds.tar", ReadLimits(), opener=lambda _: Dropping(path.read_bytes()))
