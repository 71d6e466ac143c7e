"""CSV and JSON-lines manifests listing image paths and labels."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dlcprune.core.errors import (
    CorruptImageError,
    DatasetError,
    InvalidRecordError,
    MissingFieldError,
    UnsafePathError,
)
from dlcprune.core.formats import detect_format, open_dataset
from tests.formats.builders import check_error, payloads, png, write_lines, write_tree

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
    rows = [{"image": "img/c.png", "label": 3, "id": 7}, {"file": "img/a.png", "class": 5}]
    path = write_lines(tmp_path / "m.jsonl", rows)
    assert detect_format(path) == "manifest"
    ds = open_dataset(path)
    assert ds.ids == ["7", "img/a.png"]
    assert ds.labels == ["3", "5"]
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
