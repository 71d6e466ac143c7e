"""Tests for ``dlcprune.core.formats``: tiny synthetic datasets built in ``tmp_path``."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dlcprune.core import formats as readers
from dlcprune.core.errors import (
    CorruptArchiveError,
    CorruptImageError,
    DatasetError,
    EmptyClassError,
    EmptyDatasetError,
    InvalidRecordError,
    LimitExceededError,
    MissingFieldError,
    UnknownFormatError,
    UnsafePathError,
)
from dlcprune.core.formats import Instruction, ReadLimits, detect_format, open_dataset

# --------------------------------------------------------------------------------------------
# Builders


def png(size: tuple[int, int] = (4, 3), color: Any = (10, 20, 30), mode: str = "RGB") -> bytes:
    """Encoded PNG bytes of a solid image; ``size`` is (width, height)."""
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def jpg(size: tuple[int, int] = (5, 5)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 100, 50)).save(buf, format="JPEG")
    return buf.getvalue()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Create ``files`` (relative posix path -> bytes) under ``root``; returns ``root``."""
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    root.mkdir(parents=True, exist_ok=True)
    return root


def write_zip(path: Path, files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def tar_info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    return info


def write_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            tf.addfile(tar_info(name, len(data)), io.BytesIO(data))
    return path


def write_lines(path: Path, rows: list[Any]) -> Path:
    """JSONL from rows: dicts are dumped, str/bytes written as is (each followed by a newline)."""
    out = bytearray()
    for row in rows:
        if isinstance(row, bytes):
            out += row + b"\n"
        elif isinstance(row, str):
            out += row.encode() + b"\n"
        else:
            out += json.dumps(row, ensure_ascii=False).encode() + b"\n"
    path.write_bytes(bytes(out))
    return path


def check_error(
    err: pytest.ExceptionInfo[Any],
    path: Path,
    *,
    line: int | None = None,
    member: str | None = None,
) -> None:
    """The error names the file and the line/member, both as attributes and in ``str``."""
    exc = err.value
    text = str(exc)
    assert exc.path is not None and Path(exc.path).name == path.name
    assert path.name in text
    if line is not None:
        assert exc.line == line
        assert f":{line}" in text
    if member is not None:
        assert exc.member == member
        assert f"[{member}]" in text


def payloads(ds: readers.Reader) -> list[Any]:
    out = list(ds.iter_payloads())
    assert [i for i, _ in out] == list(range(len(ds)))
    return [p for _, p in out]


BASIC = {
    "cat/2.png": png((2, 2)),
    "cat/10.png": png((3, 2)),
    "cat/sub/x.png": png((4, 4)),
    "dog/a.JPG": jpg((5, 5)),
    "dog/readme.txt": b"not an image",
    "dog/.hidden.png": b"garbage",
    ".git/config.png": b"garbage",
    "__MACOSX/cat/._2.png": b"garbage",
}
BASIC_IDS = ["cat/10.png", "cat/2.png", "cat/sub/x.png", "dog/a.JPG"]
BASIC_LABELS = ["cat", "cat", "cat", "dog"]


# --------------------------------------------------------------------------------------------
# Folder


def test_folder_ids_labels_payloads(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ds", BASIC)
    with open_dataset(root) as ds:
        assert ds.format == "folder" and ds.kind == "image"
        assert ds.ids == BASIC_IDS
        assert ds.labels == BASIC_LABELS
        assert ds.classes == {"cat": 3, "dog": 1}
        assert ds.summary() == {
            "format": "folder",
            "kind": "image",
            "num_samples": 4,
            "classes": {"cat": 3, "dog": 1},
        }
        assert json.loads(json.dumps(ds.summary())) == ds.summary()
        assert ds.source(2) == "cat/sub/x.png"
        images = payloads(ds)
        assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in images)
        assert [im.size for im in images] == [(3, 2), (2, 2), (4, 4), (5, 5)]
        assert images[0].getpixel((0, 0)) == (10, 20, 30)
        ds.verify()


def test_folder_strips_shared_top_folders(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ds", {f"export/data/{k}": v for k, v in BASIC.items()})
    ds = open_dataset(root)
    assert ds.ids == BASIC_IDS
    assert ds.labels == BASIC_LABELS
    assert ds.source(0) == "export/data/cat/10.png"


def test_folder_single_class_keeps_its_label(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ds", {"cat/1.png": png(), "cat/2.png": png()})
    ds = open_dataset(root)
    assert ds.ids == ["cat/1.png", "cat/2.png"]
    assert ds.classes == {"cat": 2}


def test_natural_class_sort(tmp_path: Path) -> None:
    names = ["10", "2", "1", "b", "a", "B"]
    root = write_tree(tmp_path / "ds", {f"{n}/x.png": png() for n in names})
    assert list(open_dataset(root).classes) == ["1", "2", "10", "B", "a", "b"]


def test_folder_image_at_root_is_missing_class(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ds", {"cat/1.png": png(), "stray.png": png()})
    with pytest.raises(MissingFieldError) as err:
        open_dataset(root)
    check_error(err, root, member="stray.png")


def test_folder_empty_class(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ds", {"cat/1.png": png(), "dog/notes.txt": b"x"})
    (root / "emu").mkdir()
    with pytest.raises(EmptyClassError) as err:
        open_dataset(root)
    check_error(err, root, member="dog")


def test_folder_without_images(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ds", {"cat/readme.txt": b"x"})
    with pytest.raises(EmptyDatasetError) as err:
        open_dataset(root)
    check_error(err, root)


def test_folder_corrupt_image_is_reported_at_decode(tmp_path: Path) -> None:
    good = png((8, 8))
    root = write_tree(
        tmp_path / "ds",
        {"cat/1.png": good, "cat/2.png": b"\x89PNG not really", "dog/3.png": good[:-30]},
    )
    ds = open_dataset(root)
    assert len(ds) == 3
    with pytest.raises(CorruptImageError) as err:
        ds.verify()
    check_error(err, root, member="cat/2.png")
    it = ds.iter_payloads()
    assert next(it)[0] == 0
    with pytest.raises(CorruptImageError) as err:
        next(it)
    check_error(err, root, member="cat/2.png")


def test_folder_truncated_image(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ds", {"cat/1.png": png((64, 64), (1, 2, 3))[:-40]})
    with pytest.raises(CorruptImageError) as err:
        payloads(open_dataset(root))
    check_error(err, root, member="cat/1.png")


def test_folder_symlink_outside_is_unsafe(tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    outside.write_bytes(png())
    root = write_tree(tmp_path / "ds", {"cat/1.png": png()})
    os.symlink(outside, root / "cat" / "2.png")
    with pytest.raises(UnsafePathError) as err:
        open_dataset(root)
    check_error(err, root, member="cat/2.png")


def test_folder_symlink_inside_is_followed(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ds", {"cat/1.png": png(), "dog/2.png": png()})
    os.symlink(root / "cat" / "1.png", root / "dog" / "3.png")
    assert open_dataset(root).ids == ["cat/1.png", "dog/2.png", "dog/3.png"]


def test_image_modes_become_rgb(tmp_path: Path) -> None:
    gray16 = Image.fromarray(np.full((3, 3), 51400, dtype=np.uint16))
    buf = io.BytesIO()
    gray16.save(buf, format="PNG")
    root = write_tree(
        tmp_path / "ds",
        {
            "a/gray.png": png(color=77, mode="L"),
            "a/pal.png": png(color=3, mode="P"),
            "a/rgba.png": png(color=(255, 0, 0, 0), mode="RGBA"),
            "a/la.png": png(color=(0, 255), mode="LA"),
            "a/g16.png": buf.getvalue(),
            "a/x.bmp": _encode(Image.new("RGB", (2, 2), (1, 2, 3)), "BMP"),
            "a/x.webp": _encode(Image.new("RGB", (2, 2), (9, 9, 9)), "WEBP"),
            "a/key.png": _encode_key(),
        },
    )
    ds = open_dataset(root)
    got = dict(zip(ds.ids, payloads(ds), strict=True))
    assert all(im.mode == "RGB" for im in got.values())
    assert got["a/gray.png"].getpixel((0, 0)) == (77, 77, 77)
    assert got["a/rgba.png"].getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    assert got["a/la.png"].getpixel((0, 0)) == (0, 0, 0)  # opaque black stays black
    assert got["a/g16.png"].getpixel((0, 0)) == (200, 200, 200)  # 51400 >> 8
    assert got["a/x.bmp"].getpixel((0, 0)) == (1, 2, 3)
    assert got["a/x.webp"].size == (2, 2)
    assert got["a/key.png"].getpixel((0, 0)) == (255, 255, 255)  # colour-key transparency


def _encode_key() -> bytes:
    """An RGB PNG whose only colour is marked transparent by a tRNS colour key."""
    buf = io.BytesIO()
    Image.new("RGB", (2, 2), (1, 2, 3)).save(buf, format="PNG", transparency=(1, 2, 3))
    return buf.getvalue()


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def test_gif_renamed_to_png_is_corrupt(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ds", {"a/x.png": _encode(Image.new("P", (2, 2)), "GIF")})
    with pytest.raises(CorruptImageError):
        open_dataset(root).verify()


def test_pixel_limit(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ds", {"cat/big.png": png((100, 60)), "cat/s.png": png((2, 2))})
    ds = open_dataset(root, limits=ReadLimits(max_image_pixels=5000))
    with pytest.raises(LimitExceededError) as err:
        payloads(ds)
    check_error(err, root, member="cat/big.png")
    with pytest.raises(LimitExceededError):
        ds.verify()


def test_pillow_bomb_guard_becomes_limit_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tree(tmp_path / "ds", {"cat/a.png": png((40, 40)), "cat/b.png": png((80, 80))})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    ds = open_dataset(root)
    with pytest.raises(LimitExceededError) as err:  # 1600 px > 1000: Pillow's warning
        payloads(ds)
    check_error(err, root, member="cat/a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(LimitExceededError) as err:  # 1600 px > 2 * 500: Pillow's error
        payloads(ds)
    check_error(err, root, member="cat/a.png")


def test_max_samples(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ds", BASIC)
    with pytest.raises(LimitExceededError) as err:
        open_dataset(root, limits=ReadLimits(max_samples=3))
    check_error(err, root)


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


# --------------------------------------------------------------------------------------------
# Manifests


def image_dir(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path,
        {"img/a.png": png((2, 2)), "img/b.png": png((3, 3)), "img/c.png": png((4, 4))},
    )


def test_csv_manifest(tmp_path: Path) -> None:
    image_dir(tmp_path)
    body = 'path,label\nimg/b.png,dog\n\n./img/a.png , cat\n"img/c.png",10\n'
    path = tmp_path / "m.csv"
    path.write_text(body)
    with open_dataset(path) as ds:
        assert ds.format == "manifest" and ds.kind == "image"
        assert ds.ids == ["img/b.png", "img/a.png", "img/c.png"]
        assert ds.labels == ["dog", "cat", "10"]
        assert ds.classes == {"10": 1, "cat": 1, "dog": 1}
        assert ds.source(1) == "img/a.png"
        assert [im.size for im in payloads(ds)] == [(3, 3), (2, 2), (4, 4)]
        raw = path.read_bytes()
        rows = [raw[s:e] for s, e in ds.spans.tolist()]
        assert rows == [b"img/b.png,dog\n", b"./img/a.png , cat\n", b'"img/c.png",10\n']
        ds.verify()


def test_csv_manifest_alternative_columns_and_ids(tmp_path: Path) -> None:
    image_dir(tmp_path)
    path = tmp_path / "m.csv"
    path.write_bytes(b"\xef\xbb\xbfId,Image,Class\nx1,img/a.png,cat\nx2,img/a.png,dog\n")
    ds = open_dataset(path)
    assert ds.ids == ["x1", "x2"]
    assert ds.labels == ["cat", "dog"]


def test_jsonl_manifest(tmp_path: Path) -> None:
    image_dir(tmp_path)
    rows = [{"image": "img/c.png", "label": 3, "id": 7}, {"file": "img/a.png", "class": "cat"}]
    path = write_lines(tmp_path / "m.jsonl", rows)
    assert detect_format(path) == "manifest"
    ds = open_dataset(path)
    assert ds.ids == ["7", "img/a.png"]
    assert ds.labels == ["3", "cat"]
    raw = path.read_bytes()
    assert [raw[s:e] for s, e in ds.spans.tolist()] == raw.splitlines(keepends=True)
    assert [im.size for im in payloads(ds)] == [(4, 4), (2, 2)]


def test_manifest_missing_label_column(tmp_path: Path) -> None:
    image_dir(tmp_path)
    path = tmp_path / "m.csv"
    path.write_text("path,category\nimg/a.png,cat\n")
    with pytest.raises(MissingFieldError) as err:
        open_dataset(path)
    check_error(err, path, line=1)
    jpath = write_lines(tmp_path / "m.jsonl", ["", {"path": "img/a.png", "category": "x"}])
    with pytest.raises(MissingFieldError) as err:
        open_dataset(jpath)
    check_error(err, jpath, line=2)


@pytest.mark.parametrize(
    ("rows", "error", "line"),
    [
        ("img/a.png,cat\nimg/b.png,\n", MissingFieldError, 3),
        ("img/a.png,cat\n/etc/passwd,cat\n", UnsafePathError, 3),
        ("../img/a.png,cat\n", UnsafePathError, 2),
        ("img/a.png,cat\nimg/zzz.png,cat\n", DatasetError, 3),
        ("img/a.png,cat\nimg/b.png,dog,extra\n", InvalidRecordError, 3),
        ("img/a.png,cat\nimg/a.png,dog\n", InvalidRecordError, 3),
    ],
    ids=["empty-label", "absolute", "dotdot", "missing-file", "extra-field", "duplicate-id"],
)
def test_csv_manifest_row_errors(
    tmp_path: Path, rows: str, error: type[DatasetError], line: int
) -> None:
    image_dir(tmp_path)
    path = tmp_path / "m.csv"
    path.write_text("path,label\n" + rows)
    with pytest.raises(error) as err:
        open_dataset(path)
    check_error(err, path, line=line)


def test_manifest_symlink_escape(tmp_path: Path) -> None:
    (tmp_path / "outside.png").write_bytes(png())
    (tmp_path / "m").mkdir()
    os.symlink(tmp_path / "outside.png", tmp_path / "m" / "x.png")
    path = tmp_path / "m" / "m.csv"
    path.write_text("path,label\nx.png,cat\n")
    with pytest.raises(UnsafePathError) as err:
        open_dataset(path)
    check_error(err, path, line=2, member="x.png")


def test_manifest_corrupt_image_names_line_and_member(tmp_path: Path) -> None:
    image_dir(tmp_path)
    (tmp_path / "img" / "bad.png").write_bytes(b"bad")
    path = tmp_path / "m.csv"
    path.write_text("path,label\nimg/a.png,cat\nimg/bad.png,cat\n")
    with pytest.raises(CorruptImageError) as err:
        open_dataset(path).verify()
    check_error(err, path, line=3, member="img/bad.png")


# --------------------------------------------------------------------------------------------
# npz


def save_npz(path: Path, compressed: bool, **arrays: np.ndarray) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_gray_images_with_labels(tmp_path: Path, compressed: bool) -> None:
    x = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    path = save_npz(tmp_path / "d.npz", compressed, x=x, y=np.array([2, 10, 2]))
    with open_dataset(path) as ds:
        assert ds.format == "npz" and ds.kind == "image"
        assert ds.ids == ["0", "1", "2"]
        assert ds.labels == ["2", "10", "2"]
        assert ds.classes == {"2": 2, "10": 1}
        assert ds.source(1) == "row 1"
        images = payloads(ds)
        assert all(im.mode == "RGB" and im.size == (5, 4) for im in images)
        assert np.array_equal(np.asarray(images[1])[:, :, 0], x[1])
        assert np.array_equal(np.asarray(images[1])[:, :, 2], x[1])
        np.testing.assert_array_equal(ds.read_rows(1, 3), x[1:3])
        ds.verify()


def test_npz_direct_reads_and_stream_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 6, 7, 3), dtype=np.uint8)
    stored = open_dataset(save_npz(tmp_path / "s.npz", False, x=x))
    packed = open_dataset(save_npz(tmp_path / "c.npz", True, x=x))
    assert isinstance(stored, readers.NpzReader) and isinstance(packed, readers.NpzReader)
    assert stored._fd is not None and packed._fd is None  # the two code paths under test
    for start, stop in [(0, 5), (5, 17), (3, 4), (30, 99), (0, 40)]:
        a, b = stored.read_rows(start, stop), packed.read_rows(start, stop)
        np.testing.assert_array_equal(a, x[start:stop])
        np.testing.assert_array_equal(b, x[start:stop])
        assert type(a) is np.ndarray and a.flags.writeable and b.flags.writeable
    for (i, p), (j, q) in zip(stored.iter_payloads(), packed.iter_payloads(), strict=True):
        assert i == j and p.tobytes() == q.tobytes() == x[i].tobytes()
    stored.close()
    packed.close()


def test_npz_fortran_order(tmp_path: Path) -> None:
    x = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(6, 4))
    for compressed in (False, True):
        ds = open_dataset(save_npz(tmp_path / f"f{compressed}.npz", compressed, x=x))
        np.testing.assert_array_equal(ds.read_rows(2, 5), x[2:5])
        assert [p.tolist() for p in payloads(ds)] == x.tolist()


@pytest.mark.parametrize(
    ("x", "pixel"),
    [
        (np.full((2, 3, 3, 3), 0.5, dtype=np.float32), (128, 128, 128)),
        (np.full((2, 3, 3, 3), 300.0), (255, 255, 255)),
        (np.full((2, 3, 3, 1), 7, dtype=np.uint8), (7, 7, 7)),
        (np.full((2, 3, 3, 4), 9, dtype=np.uint8), (9, 9, 9)),
        (np.full((2, 3, 3), -5, dtype=np.int16), (0, 0, 0)),
        (np.ones((2, 3, 3), dtype=bool), (255, 255, 255)),
    ],
    ids=["float01", "float255", "c1", "rgba", "int16", "bool"],
)
def test_npz_image_conversion(tmp_path: Path, x: np.ndarray, pixel: tuple[int, int, int]) -> None:
    ds = open_dataset(save_npz(tmp_path / "d.npz", False, x=x))
    assert ds.labels is None and ds.classes == {}
    images = payloads(ds)
    assert all(im.mode == "RGB" and im.size == (3, 3) for im in images)
    assert images[0].getpixel((1, 1)) == pixel


def test_npz_vectors_with_ids(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.int64).reshape(4, 3)
    ids = np.array(["d", "c", "b", "a"])
    ds = open_dataset(save_npz(tmp_path / "v.npz", True, x=x, ids=ids, y=np.array(["p"] * 4)))
    assert ds.kind == "vector"
    assert ds.ids == ["d", "c", "b", "a"]
    vecs = payloads(ds)
    assert all(v.dtype == np.float32 and v.shape == (3,) for v in vecs)
    assert vecs[3].tolist() == [9.0, 10.0, 11.0]
    ds2 = open_dataset(save_npz(tmp_path / "w.npz", False, x=x, id=np.array([5, 6, 7, 8])))
    assert ds2.ids == ["5", "6", "7", "8"]


@pytest.mark.parametrize(
    ("arrays", "error", "member"),
    [
        (
            {"x": np.zeros((2, 3)), "y": np.array([{"a": 1}, None], dtype=object)},
            InvalidRecordError,
            "y.npy",
        ),
        ({"x": np.array([[1, "a"]], dtype=object)}, InvalidRecordError, "x.npy"),
        ({"x": np.zeros((2, 3)), "y": np.array([1, 2, 3])}, InvalidRecordError, "y.npy"),
        ({"x": np.zeros((2, 3, 4, 2))}, InvalidRecordError, "x.npy"),
        ({"x": np.zeros((2,))}, InvalidRecordError, "x.npy"),
        ({"x": np.zeros((2, 3), dtype=complex)}, InvalidRecordError, "x.npy"),
        ({"x": np.zeros((2, 3)), "ids": np.array(["a", "a"])}, InvalidRecordError, "ids.npy"),
    ],
    ids=["object-y", "object-x", "y-length", "channels", "ndim", "complex", "dup-ids"],
)
def test_npz_refused_arrays(
    tmp_path: Path, arrays: dict[str, np.ndarray], error: type[Exception], member: str
) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(error) as err:
        open_dataset(path)
    check_error(err, path, member=member)


def test_npz_missing_x_and_empty(tmp_path: Path) -> None:
    path = save_npz(tmp_path / "d.npz", False, features=np.zeros((2, 2)))
    with pytest.raises(MissingFieldError):
        open_dataset(path)
    path = save_npz(tmp_path / "e.npz", False, x=np.zeros((0, 2)))
    with pytest.raises(EmptyDatasetError):
        open_dataset(path)


def test_npz_declared_size_refused_without_allocating(tmp_path: Path) -> None:
    fmt = np.lib.format
    header = io.BytesIO()
    fmt.write_array_header_1_0(
        header,
        {
            "descr": fmt.dtype_to_descr(np.dtype(np.uint8)),
            "fortran_order": False,
            "shape": (10**9, 1000, 1000),
        },
    )
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + bytes(64))
    with pytest.raises(LimitExceededError, match="max_array_bytes") as err:
        open_dataset(path)
    check_error(err, path, member="x.npy")


def test_npz_truncated_data(tmp_path: Path) -> None:
    fmt = np.lib.format
    header = io.BytesIO()
    fmt.write_array_header_1_0(
        header,
        {"descr": fmt.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": (50, 8)},
    )
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        path = tmp_path / f"t{compression}.npz"
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            zf.writestr("x.npy", header.getvalue() + bytes(64))
        with pytest.raises(CorruptArchiveError) as err:
            ds = open_dataset(path)
            ds.verify()
        check_error(err, path, member="x.npy")


def test_npz_garbage(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CorruptArchiveError) as err:
        open_dataset(path)
    check_error(err, path)


# --------------------------------------------------------------------------------------------
# JSONL text and instruction formats


def test_text_jsonl_spans_and_payloads(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [
        b'{"text": "hello", "label": "pos"}\n',
        b"\n",
        b"   \n",
        '{"text": "héllo wörld ✓", "label": 2}\n'.encode(),
        b'{"text": "", "label": "neg"}',  # no final newline
    ]
    path.write_bytes(b"".join(lines))
    assert detect_format(path) == "text"
    with open_dataset(path) as ds:
        assert ds.format == "text" and ds.kind == "text"
        assert ds.ids == ["0", "1", "2"]
        assert ds.labels == ["pos", "2", "neg"]
        assert ds.source(1) == "line 4"
        assert payloads(ds) == ["hello", "héllo wörld ✓", ""]
        raw = path.read_bytes()
        assert ds.spans.dtype == np.int64 and ds.spans.shape == (3, 2)
        assert [raw[s:e] for s, e in ds.spans.tolist()] == [lines[0], lines[3], lines[4]]


def test_text_bom_is_outside_the_first_span(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a", "label": 1}\n')
    ds = open_dataset(path)
    assert ds.spans.tolist() == [[3, path.stat().st_size]]
    assert payloads(ds) == ["a"]


def test_text_ids_from_field(tmp_path: Path) -> None:
    rows = [{"id": "q", "text": "a", "label": "x"}, {"id": 5, "text": "b", "label": "y"}]
    ds = open_dataset(write_lines(tmp_path / "t.jsonl", rows))
    assert ds.ids == ["q", "5"]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(st.text(max_size=20), min_size=1, max_size=6), final_newline=st.booleans())
def test_spans_reproduce_lines(tmp_path: Path, texts: list[str], final_newline: bool) -> None:
    lines = [json.dumps({"text": t, "label": "l"}, ensure_ascii=False).encode() for t in texts]
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if final_newline else b""))
    ds = open_dataset(path)
    raw = path.read_bytes()
    got = [raw[s:e] for s, e in ds.spans.tolist()]
    assert b"".join(got) == raw
    assert payloads(ds) == texts


def test_alpaca(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Add", "input": "1+1", "output": "2", "label": "ignored"},
        {"instruction": "Greet", "output": "hi", "input": None},
    ]
    path = write_lines(tmp_path / "a.json", rows)
    assert detect_format(path) == "alpaca"
    ds = open_dataset(path)
    assert ds.kind == "instruction" and ds.labels is None and ds.classes == {}
    assert payloads(ds) == [Instruction("Add", "1+1", "2"), Instruction("Greet", "", "hi")]


def test_dolly(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Q?", "context": "ctx", "response": "A", "category": "qa"},
        {"instruction": "Q2?", "response": "B"},
    ]
    path = write_lines(tmp_path / "d.jsonl", rows)
    assert detect_format(path) == "dolly"
    assert payloads(open_dataset(path)) == [
        Instruction("Q?", "ctx", "A"),
        Instruction("Q2?", "", "B"),
    ]


def test_sharegpt_first_turn_pair(tmp_path: Path) -> None:
    rows = [
        {
            "id": "c1",
            "conversations": [
                {"from": "system", "value": "be nice"},
                {"from": "gpt", "value": "early reply, no question yet"},
                {"from": "human", "value": "first question"},
                {"from": "system", "value": "reminder"},
                {"from": "gpt", "value": "first answer"},
                {"from": "human", "value": "second question"},
                {"from": "gpt", "value": "second answer"},
            ],
        },
        {
            "conversations": [
                {"role": "user", "content": "u"},
                {"role": "assistant", "content": "a"},
            ]
        },
    ]
    path = write_lines(tmp_path / "s.jsonl", rows)
    assert detect_format(path) == "sharegpt"
    ds = open_dataset(path)
    assert ds.ids == ["c1", "1"]
    assert payloads(ds) == [
        Instruction("first question", "", "first answer"),
        Instruction("u", "", "a"),
    ]


@pytest.mark.parametrize(
    ("fmt", "bad", "error"),
    [
        ("text", b'{"text": "a", "label": "x"', InvalidRecordError),
        ("text", b'{"text": "\xff\xfe", "label": "x"}', InvalidRecordError),
        ("text", b'["not", "an", "object"]', InvalidRecordError),
        ("text", b'{"text": "a"}', MissingFieldError),
        ("text", b'{"label": "a"}', MissingFieldError),
        ("text", b'{"text": "a", "label": true}', InvalidRecordError),
        ("text", b'{"text": "a", "label": 1.5}', InvalidRecordError),
        ("text", b'{"text": "a", "label": null}', InvalidRecordError),
        ("text", b'{"text": "a", "label": ["x"]}', InvalidRecordError),
        ("text", b'{"text": 3, "label": "x"}', InvalidRecordError),
        ("text", b'{"id": "r0", "text": "a", "label": "x"}', InvalidRecordError),
        ("text", b"[" * 100_000, InvalidRecordError),
        ("alpaca", b'{"instruction": "a"}', MissingFieldError),
        ("dolly", b'{"instruction": "a", "context": "c"}', MissingFieldError),
        ("sharegpt", b'{"conversations": [{"from": "human", "value": "q"}]}', MissingFieldError),
        ("sharegpt", b'{"conversations": "nope"}', InvalidRecordError),
        ("sharegpt", b'{"conversations": [{"from": "human"}]}', MissingFieldError),
    ],
    ids=[
        "bad-json",
        "bad-utf8",
        "not-object",
        "no-label",
        "no-text",
        "bool-label",
        "float-label",
        "null-label",
        "list-label",
        "int-text",
        "duplicate-id",
        "deep-nesting",
        "alpaca-no-output",
        "dolly-no-response",
        "sharegpt-no-reply",
        "sharegpt-not-list",
        "sharegpt-no-value",
    ],
)
def test_jsonl_record_errors(tmp_path: Path, fmt: str, bad: bytes, error: type[Exception]) -> None:
    good = {
        "text": {"id": "r0", "text": "ok", "label": "x"},
        "alpaca": {"instruction": "i", "output": "o"},
        "dolly": {"instruction": "i", "response": "r"},
        "sharegpt": {
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
        },
    }[fmt]
    path = write_lines(tmp_path / "d.jsonl", [good, "", bad])
    assert detect_format(path) == fmt
    with pytest.raises(error) as err:
        open_dataset(path)
    check_error(err, path, line=3)


def test_overlong_line(tmp_path: Path) -> None:
    row = {"text": "x" * 100, "label": "a"}
    path = write_lines(tmp_path / "t.jsonl", [{"text": "ok", "label": "a"}, row])
    limit = len(json.dumps(row))
    assert len(open_dataset(path, limits=ReadLimits(max_line_bytes=limit))) == 2
    with pytest.raises(InvalidRecordError, match="max_line_bytes") as err:
        open_dataset(path, limits=ReadLimits(max_line_bytes=limit - 1))
    check_error(err, path, line=2)


def test_jsonl_max_samples(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [{"text": str(i), "label": "a"} for i in range(5)])
    with pytest.raises(LimitExceededError):
        open_dataset(path, limits=ReadLimits(max_samples=4))


# --------------------------------------------------------------------------------------------
# Detection and format override


def test_detect_and_override(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": "x"}]
    txt = write_lines(tmp_path / "data.txt", rows)
    with pytest.raises(UnknownFormatError) as err:
        open_dataset(txt)
    check_error(err, txt)
    assert payloads(open_dataset(txt, format="text")) == ["a"]
    with pytest.raises(UnknownFormatError):
        open_dataset(txt, format="parquet")
    assert detect_format(tmp_path) == "folder"
    for name, fmt in [("a.zip", "zip"), ("a.TAR.GZ", "tar"), ("a.tgz", "tar"), ("a.npz", "npz")]:
        (tmp_path / name).write_bytes(b"")
        assert detect_format(tmp_path / name) == fmt


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nope.zip")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nope.jsonl", format="text")


def test_jsonl_sniffing_errors(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "u.jsonl", ["", {"question": "?", "answer": "!"}])
    with pytest.raises(UnknownFormatError) as err:
        open_dataset(path)
    check_error(err, path, line=2)
    array_file = tmp_path / "a.json"
    array_file.write_text('[{"text": "a", "label": "b"}]')
    with pytest.raises(UnknownFormatError, match="JSON array"):
        open_dataset(array_file)
    empty = write_lines(tmp_path / "e.jsonl", ["", "  "])
    with pytest.raises(EmptyDatasetError):
        open_dataset(empty)
    with pytest.raises(EmptyDatasetError):
        open_dataset(empty, format="alpaca")
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,label\n")
    with pytest.raises(EmptyDatasetError):
        open_dataset(csv_path)


def test_error_to_dict_is_json(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [{"text": "a"}])
    with pytest.raises(MissingFieldError) as err:
        open_dataset(path)
    body = err.value.to_dict()
    assert body["code"] == "missing_field" and body["line"] == 1
    json.dumps(body)


@pytest.mark.parametrize("kind", ["folder", "zip", "tar", "npz", "text"])
def test_iter_range_yields_exactly_a_shard(tmp_path: Path, kind: str) -> None:
    """A shard's payloads equal the same indices of a full pass, for every access pattern."""
    import io
    import json
    import tarfile
    import zipfile

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (11, 6, 6, 3), dtype=np.uint8)
    labels = np.arange(11) % 3
    if kind == "npz":
        path = tmp_path / "x.npz"
        np.savez_compressed(path, x=images, y=labels)
    elif kind == "text":
        path = tmp_path / "t.jsonl"
        path.write_text(
            "".join(
                json.dumps({"text": f"t{i}", "label": int(labels[i])}) + "\n" for i in range(11)
            )
        )
    else:
        blobs = {}
        for i in range(11):
            buf = io.BytesIO()
            Image.fromarray(images[i]).save(buf, format="PNG")
            blobs[f"c{labels[i]}/{i:02d}.png"] = buf.getvalue()
        if kind == "folder":
            path = tmp_path / "f"
            for name, data in blobs.items():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                (path / name).write_bytes(data)
        elif kind == "zip":
            path = tmp_path / "a.zip"
            with zipfile.ZipFile(path, "w") as zf:
                for name, data in reversed(blobs.items()):
                    zf.writestr(name, data)
        else:
            path = tmp_path / "a.tar"
            with tarfile.open(path, "w") as tf:
                for name, data in reversed(blobs.items()):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))

    def same(a: object, b: object) -> bool:
        if isinstance(a, Image.Image):
            return np.array_equal(np.asarray(a), np.asarray(b))
        return a == b

    with open_dataset(path) as ds:
        full = list(ds.iter_payloads())
        for start, stop in [(0, 4), (4, 8), (8, 11), (3, 3), (9, 100)]:
            part = list(ds.iter_range(start, stop))
            expected = full[start : min(stop, 11)]
            assert [i for i, _ in part] == [i for i, _ in expected]
            assert all(same(a, b) for (_, a), (_, b) in zip(part, expected, strict=True))
