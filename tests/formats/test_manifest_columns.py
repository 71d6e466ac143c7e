"""Manifests with mapped columns, mixed label types, and the zip holding a CSV manifest and its
images (the shape of the service's own manifest export)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlcprune.core.errors import (
    DatasetError,
    InvalidColumnsError,
    InvalidRecordError,
    MissingFieldError,
    UnknownFormatError,
    UnsafePathError,
)
from dlcprune.core.formats import detect_format, open_dataset
from tests.formats.builders import check_error, payloads, png, write_lines, write_tree, write_zip


def images(root: Path) -> Path:
    return write_tree(root, {"img/a.png": png((2, 2)), "img/b.png": png((3, 3))})


def test_csv_columns_mapped(tmp_path: Path) -> None:
    images(tmp_path)
    path = tmp_path / "m.csv"
    path.write_text("Img,Y,Key\nimg/b.png,dog,k1\nimg/a.png,cat,k2\n")
    with open_dataset(path, columns={"image": "img", "label": "y", "id": "key"}) as ds:
        assert ds.ids == ["k1", "k2"] and ds.labels == ["dog", "cat"]
        assert [im.size for im in payloads(ds)] == [(3, 3), (2, 2)]
    with pytest.raises(MissingFieldError) as err:
        open_dataset(path, columns={"image": "picture", "label": "y"})
    check_error(err, path, line=1)
    assert err.value.message.startswith("column 'picture' (mapped to image) is not in the data")
    with pytest.raises(InvalidColumnsError, match="has no column role 'text'"):
        open_dataset(path, columns={"text": "y"})


def test_jsonl_columns_mapped_and_mixed_label_types(tmp_path: Path) -> None:
    images(tmp_path)
    rows = [{"img": "img/a.png", "y": 1}, {"img": "img/b.png", "y": 2}]
    path = write_lines(tmp_path / "m.jsonl", rows)
    ds = open_dataset(path, format="manifest", columns={"image": "img", "label": "y"})
    assert ds.labels == ["1", "2"] and ds.ids == ["img/a.png", "img/b.png"]
    mixed = write_lines(
        tmp_path / "x.jsonl",
        [{"path": "img/a.png", "label": 1}, {"path": "img/b.png", "label": "cat"}],
    )
    with pytest.raises(InvalidRecordError) as err:
        open_dataset(mixed)
    check_error(err, mixed, line=2)
    assert err.value.message == (
        "column 'label' mixes label types: this row holds strings, earlier rows hold integers"
    )
    unmapped = write_lines(tmp_path / "u.jsonl", [{"path": "img/a.png", "y": 1}])
    with pytest.raises(MissingFieldError) as err:
        open_dataset(unmapped, columns={"label": "target"})
    check_error(err, unmapped, line=1)
    assert "'target'" in err.value.message


def export_shaped_zip(path: Path, rows: str, files: dict[str, bytes], extra=None) -> Path:
    """A zip as the manifest export writes it: the manifest first, then the images at the paths
    its rows name, then provenance.json."""
    return write_zip(path, {"m.csv": ("path,label\n" + rows).encode(), **files, **(extra or {})})


def test_zip_with_a_csv_manifest(tmp_path: Path) -> None:
    path = export_shaped_zip(
        tmp_path / "export.zip",
        "img/b.png,dog\nimg/a.png,cat\n",
        {"img/a.png": png((2, 2)), "img/b.png": png((3, 3)), "img/unused.png": png()},
        {"provenance.json": b"{}"},
    )
    assert detect_format(path) == "manifest_zip"
    with open_dataset(path) as ds:
        assert ds.format == "manifest_zip" and ds.kind == "image"
        assert ds.ids == ["img/b.png", "img/a.png"] and ds.labels == ["dog", "cat"]
        assert ds.source(0) == "img/b.png"
        assert [im.size for im in payloads(ds)] == [(3, 3), (2, 2)]
        assert [i for i, _ in ds.iter_range(1, 2)] == [1]
        assert dict(ds.iter_raw([0])) == {0: png((3, 3))}
        assert not hasattr(ds, "spans")
        ds.verify()
    # Class-folder zips stay zips: no table at the top, or one without a path column.
    plain = write_zip(tmp_path / "plain.zip", {"cat/1.png": png(), "cat/notes.csv": b"x"})
    assert detect_format(plain) == "zip"
    other = write_zip(tmp_path / "o.zip", {"cat/1.png": png(), "stats.csv": b"class,count\n"})
    assert detect_format(other) == "zip"
    jsonl = write_zip(
        tmp_path / "j.zip", {"m.jsonl": b'{"image": "a.png", "label": 1}\n', "a.png": png((4, 1))}
    )
    assert detect_format(jsonl) == "manifest_zip"
    assert [im.size for im in payloads(open_dataset(jsonl))] == [(4, 1)]


@pytest.mark.parametrize(
    ("rows", "files", "error", "line"),
    [
        ("img/a.png,cat\nimg/zzz.png,dog\n", {"img/a.png": png()}, DatasetError, 3),
        ("../a.png,cat\n", {"img/a.png": png()}, UnsafePathError, 2),
        ("img/a.png,\n", {"img/a.png": png()}, MissingFieldError, 2),
    ],
    ids=["missing-member", "dotdot", "empty-label"],
)
def test_zip_manifest_row_errors(
    tmp_path: Path, rows: str, files: dict[str, bytes], error: type[Exception], line: int
) -> None:
    path = export_shaped_zip(tmp_path / "e.zip", rows, files)
    with pytest.raises(error) as err:
        open_dataset(path)
    check_error(err, path, line=line)


def test_zip_manifest_member_rules(tmp_path: Path) -> None:
    path = export_shaped_zip(
        tmp_path / "n.zip", "img/a.png,cat\n", {"img/a.png": png(), "inner.zip": b"PK"}
    )
    with pytest.raises(UnknownFormatError, match="nested archives") as err:
        open_dataset(path)
    assert err.value.member == "inner.zip"
    path = export_shaped_zip(tmp_path / "t.zip", "img/a.png,cat\n", {"../img/a.png": png()})
    with pytest.raises(UnsafePathError) as err:
        open_dataset(path, format="manifest_zip")
    assert err.value.member == "../img/a.png"
    path = export_shaped_zip(tmp_path / "c.zip", "img/a.png,cat\n", {"img/a.png": b"junk"})
    with pytest.raises(DatasetError) as err:
        open_dataset(path).verify()
    assert err.value.code == "corrupt_image" and err.value.member == "img/a.png"
