"""Parquet tables (one file) and Parquet shards as the Hugging Face Hub stores them, written here
with pyarrow: images as bytes, ``Image`` structs or paths, text and instruction records, column
mappings, ``ClassLabel`` names, and each bad input's error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dlcprune.core.errors import (
    DatasetError,
    InvalidColumnsError,
    InvalidRecordError,
    LimitExceededError,
    MissingFieldError,
    UnsafePathError,
)
from dlcprune.core.formats import Instruction, ReadLimits, detect_format, open_dataset
from tests.formats.builders import check_error, payloads, png, write_tree

HF_META = {
    b"huggingface": json.dumps(
        {
            "info": {
                "features": {
                    "image": {"_type": "Image"},
                    "label": {"names": ["cat", "dog"], "_type": "ClassLabel"},
                }
            }
        }
    ).encode()
}


def write_parquet(path: Path, columns: dict[str, list], meta: dict | None = None, **kw) -> Path:
    table = pa.table(columns)
    if meta:
        table = table.replace_schema_metadata(meta)
    pq.write_table(table, path, **kw)
    return path


def struct_images(sizes: list[tuple[int, int]]) -> pa.Array:
    typ = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return pa.array([{"bytes": png(s), "path": None} for s in sizes], type=typ)


def test_image_bytes_with_mapped_columns(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "m.parquet",
        {
            "img": [png((2, 2)), png((3, 3)), png((4, 4))],
            "y": ["dog", "cat", "dog"],
            "key": ["a", "b", "c"],
        },
        row_group_size=2,
    )
    assert detect_format(path) == "parquet"
    with open_dataset(path, columns={"image": "img", "label": "y", "id": "key"}) as ds:
        assert ds.format == "parquet" and ds.kind == "image"
        assert ds.ids == ["a", "b", "c"] and ds.labels == ["dog", "cat", "dog"]
        assert ds.classes == {"cat": 1, "dog": 2}
        assert [im.size for im in payloads(ds)] == [(2, 2), (3, 3), (4, 4)]
        assert [i for i, _ in ds.iter_range(1, 3)] == [1, 2]
        assert [data for _, data in ds.iter_raw([2])] == [png((4, 4))]
        assert ds.source(2) == "row 3"
        ds.verify()


def test_hf_image_struct_and_classlabel_names(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "train.parquet",
        {"image": struct_images([(2, 2), (5, 1)]), "label": [1, 0]},
        meta=HF_META,
    )
    with open_dataset(path) as ds:
        assert ds.ids == ["0", "1"] and ds.labels == ["dog", "cat"]
        assert [im.size for im in payloads(ds)] == [(2, 2), (5, 1)]


def test_image_paths_relative_to_the_file(tmp_path: Path) -> None:
    write_tree(tmp_path, {"img/a.png": png((2, 2)), "img/b.png": png((3, 3))})
    path = write_parquet(
        tmp_path / "m.parquet", {"path": ["img/b.png", "./img/a.png"], "label": [7, 8]}
    )
    with open_dataset(path) as ds:
        assert ds.ids == ["img/b.png", "img/a.png"] and ds.labels == ["7", "8"]
        assert ds.source(1) == "img/a.png"
        assert [im.size for im in payloads(ds)] == [(3, 3), (2, 2)]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("../outside.png", UnsafePathError),
        ("/etc/passwd", UnsafePathError),
        ("img/none.png", DatasetError),
    ],
)
def test_a_path_escaping_the_root_names_the_row(
    tmp_path: Path, value: str, error: type[Exception]
) -> None:
    write_tree(tmp_path / "d", {"img/a.png": png()})
    (tmp_path / "outside.png").write_bytes(png())
    path = write_parquet(
        tmp_path / "d" / "m.parquet", {"path": ["img/a.png", value], "label": ["a", "b"]}
    )
    with pytest.raises(error) as err:
        open_dataset(path)
    check_error(err, path, line=2)


def test_missing_and_unmapped_columns_are_named(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "m.parquet", {"img": [png()], "y": ["a"]})
    with pytest.raises(MissingFieldError) as err:
        open_dataset(path)
    assert err.value.code == "missing_field"
    assert "no label column: expected 'label' or 'labels' or 'class'" in err.value.message
    with pytest.raises(MissingFieldError) as err:
        open_dataset(path, columns={"image": "img", "label": "target"})
    assert (
        err.value.message == "column 'target' (mapped to label) is not in the data; columns: img, y"
    )
    with pytest.raises(InvalidColumnsError) as err:
        open_dataset(path, columns={"picture": "img"})
    assert err.value.code == "invalid_columns" and "'picture'" in err.value.message
    with pytest.raises(InvalidColumnsError, match="takes no column mapping"):
        open_dataset(tmp_path, format="folder", columns={"label": "y"})
    bare = write_parquet(tmp_path / "b.parquet", {"a": [1], "b": [2]})
    with pytest.raises(MissingFieldError, match="cannot tell what the table holds"):
        open_dataset(bare)


def test_bad_cells_name_the_row_and_column(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "m.parquet", {"image": [png(), png()], "label": ["a", None]})
    with pytest.raises(MissingFieldError) as err:
        open_dataset(path)
    check_error(err, path, line=2)
    assert "column 'label' is empty" in err.value.message
    path = write_parquet(tmp_path / "f.parquet", {"image": [png()], "label": [0.5]})
    with pytest.raises(InvalidRecordError, match="column 'label' must hold strings or integers"):
        open_dataset(path)
    path = write_parquet(
        tmp_path / "c.parquet", {"image": [png(), b"not an image"], "label": ["a", "b"]}
    )
    with pytest.raises(DatasetError) as err:
        open_dataset(path).verify()
    assert err.value.code == "corrupt_image"
    check_error(err, path, line=2)
    path = write_parquet(
        tmp_path / "k.parquet", {"image": struct_images([(2, 2)]), "label": [5]}, meta=HF_META
    )
    with pytest.raises(InvalidRecordError, match="not a class of its ClassLabel"):
        open_dataset(path)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(DatasetError, match="cannot read Parquet file") as err:
        open_dataset(tmp_path / "bad.parquet")
    check_error(err, tmp_path / "bad.parquet")


def test_text_and_instruction_tables(tmp_path: Path) -> None:
    text = write_parquet(tmp_path / "t.parquet", {"sentence": ["hi", "yo"], "y": [1, 0]})
    with open_dataset(text, columns={"text": "sentence", "label": "y"}) as ds:
        assert ds.kind == "text" and ds.labels == ["1", "0"] and payloads(ds) == ["hi", "yo"]
    alpaca = write_parquet(
        tmp_path / "a.parquet",
        {"instruction": ["add", "sub"], "input": ["1 2", None], "output": ["3", "0"]},
    )
    with open_dataset(alpaca) as ds:
        assert ds.kind == "instruction" and ds.labels is None
        assert payloads(ds) == [Instruction("add", "1 2", "3"), Instruction("sub", "", "0")]
    chat = write_parquet(
        tmp_path / "c.parquet",
        {
            "messages": [
                [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                ]
            ]
        },
    )
    assert payloads(open_dataset(chat)) == [Instruction("hi", "", "hello")]
    mapped = write_parquet(tmp_path / "m.parquet", {"q": ["why"], "a": ["because"]})
    ds = open_dataset(mapped, columns={"instruction": "q", "response": "a"})
    assert payloads(ds) == [Instruction("why", "", "because")]


def test_hub_parquet_shards(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text("# a dataset card")
    for k in range(2):
        write_parquet(
            root / "data" / f"train-0000{k}-of-00002.parquet",
            {"image": struct_images([(k + 1, 1), (k + 1, 2)]), "label": [k, 1 - k]},
            meta=HF_META,
        )
    write_parquet(
        root / "data" / "test-00000-of-00001.parquet",
        {"image": struct_images([(9, 9)]), "label": [0]},
        meta=HF_META,
    )
    assert detect_format(root) == "hf_parquet"
    with open_dataset(root) as ds:
        assert ds.format == "hf_parquet" and ds.split == "train"
        assert ds.ids == ["0", "1", "2", "3"]
        assert ds.labels == ["cat", "dog", "dog", "cat"]
        assert [im.size for im in payloads(ds)] == [(1, 1), (1, 2), (2, 1), (2, 2)]
        assert ds.source(3) == "data/train-00001-of-00002.parquet row 2"
        assert [im.size for _, im in ds.iter_range(1, 3)] == [(1, 2), (2, 1)]


def test_hub_shards_must_share_a_schema(tmp_path: Path) -> None:
    root = tmp_path / "hub" / "data"
    root.mkdir(parents=True)
    write_parquet(root / "train-00000-of-00002.parquet", {"text": ["a"], "label": ["x"]})
    write_parquet(root / "train-00001-of-00002.parquet", {"text": ["a"], "label": [1]})
    with pytest.raises(DatasetError) as err:
        open_dataset(tmp_path / "hub")
    assert err.value.member == "data/train-00001-of-00002.parquet"
    assert "columns differ" in err.value.message


def test_hub_bad_row_names_the_shard_and_row(tmp_path: Path) -> None:
    root = tmp_path / "hub" / "data"
    root.mkdir(parents=True)
    write_parquet(root / "train-00000-of-00002.parquet", {"text": ["a"], "label": ["x"]})
    write_parquet(root / "train-00001-of-00002.parquet", {"text": ["b", "c"], "label": ["y", ""]})
    with pytest.raises(MissingFieldError) as err:
        open_dataset(tmp_path / "hub")
    assert (err.value.member, err.value.line) == ("data/train-00001-of-00002.parquet", 2)


def test_reading_is_deterministic(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    import io

    from PIL import Image

    blobs = []
    for _ in range(7):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(buf, format="PNG")
        blobs.append(buf.getvalue())
    path = write_parquet(
        tmp_path / "m.parquet",
        {"image": blobs, "label": [i % 2 for i in range(7)]},
        row_group_size=3,
    )
    first = [np.asarray(im) for im in payloads(open_dataset(path))]
    again = [np.asarray(im) for im in payloads(open_dataset(path))]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    part = [np.asarray(im) for _, im in open_dataset(path).iter_range(2, 6)]
    assert all(np.array_equal(a, b) for a, b in zip(part, first[2:6], strict=True))


def test_an_image_struct_without_bytes_reads_its_path_inside_the_root(tmp_path: Path) -> None:
    write_tree(tmp_path / "d", {"img/a.png": png((3, 1))})
    (tmp_path / "x.png").write_bytes(png())
    typ = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = pa.array(
        [{"bytes": None, "path": "img/a.png"}, {"bytes": None, "path": "../x.png"}], type=typ
    )
    path = write_parquet(tmp_path / "d" / "m.parquet", {"image": cells, "label": ["a", "b"]})
    with open_dataset(path) as ds:
        assert next(ds.iter_payloads())[1].size == (3, 1)
        with pytest.raises(UnsafePathError) as err:
            ds.verify()
    check_error(err, path, line=2)


def test_a_pixel_bomb_in_a_table_names_its_row(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "m.parquet", {"image": [png((2, 2)), png((300, 300))], "label": ["a", "b"]}
    )
    with pytest.raises(LimitExceededError, match="max_image_pixels") as err:
        open_dataset(path, limits=ReadLimits(max_image_pixels=10_000)).verify()
    check_error(err, path, line=2)
    with pytest.raises(LimitExceededError, match="max_samples"):
        open_dataset(path, limits=ReadLimits(max_samples=1))


def test_a_class_folder_with_a_parquet_file_stays_a_folder(tmp_path: Path) -> None:
    write_tree(tmp_path / "f", {"cat/1.png": png(), "dog/2.png": png()})
    write_parquet(tmp_path / "f" / "scores.parquet", {"a": [1]})
    assert detect_format(tmp_path / "f") == "folder"
    write_parquet(tmp_path / "f" / "train-00000-of-00001.parquet", {"text": ["x"], "label": ["y"]})
    assert detect_format(tmp_path / "f") == "hf_parquet"
