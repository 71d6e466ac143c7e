"""Image datasets in a folder, and the image decoding every image format shares (modes, pixel
limits, renamed files)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcprune.core.errors import (
    CorruptImageError,
    EmptyClassError,
    EmptyDatasetError,
    LimitExceededError,
    MissingFieldError,
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
    write_tree,
)

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


def test_corrupt_image_message_is_the_same_on_every_read(tmp_path: Path) -> None:
    """Pillow names the buffer by its address; the message drops it, so it is reproducible."""
    root = write_tree(tmp_path / "ds", {"cat/1.png": b"not an image at all", "dog/2.png": png()})
    messages = []
    for _ in range(2):
        with pytest.raises(CorruptImageError) as err:
            open_dataset(root).verify()
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "0x" not in messages[0] and "object at" not in messages[0]
    assert "cannot identify image file" in messages[0]


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
