"""Directories written by Hugging Face ``datasets``' ``save_to_disk``, made here with the real
library: ``Image`` and ``ClassLabel`` features, a ``DatasetDict``, text, and refusals."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from dlcprune.core.errors import DatasetError, MissingFieldError
from dlcprune.core.formats import Instruction, detect_format, open_dataset
from tests.formats.builders import payloads, png


def image_dataset(n: int = 4) -> datasets.Dataset:
    ds = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": png((i + 1, 2)), "path": None} for i in range(n)],
            "label": [i % 2 for i in range(n)],
        }
    )
    ds = ds.cast_column("image", datasets.Image())
    return ds.cast_column("label", datasets.ClassLabel(names=["cat", "dog"]))


def test_save_to_disk_images_and_class_names(tmp_path: Path) -> None:
    image_dataset().save_to_disk(tmp_path / "saved")
    assert detect_format(tmp_path / "saved") == "hf_dataset"
    with open_dataset(tmp_path / "saved") as ds:
        assert ds.format == "hf_dataset" and ds.kind == "image"
        assert ds.ids == ["0", "1", "2", "3"]
        assert ds.labels == ["cat", "dog", "cat", "dog"]
        assert ds.classes == {"cat": 2, "dog": 2}
        assert [im.size for im in payloads(ds)] == [(1, 2), (2, 2), (3, 2), (4, 2)]
        assert [im.size for _, im in ds.iter_range(2, 3)] == [(3, 2)]
        assert [data for _, data in ds.iter_raw([1])] == [png((2, 2))]
        ds.verify()


def test_dataset_dict_reads_train(tmp_path: Path) -> None:
    datasets.DatasetDict({"train": image_dataset(3), "test": image_dataset(1)}).save_to_disk(
        tmp_path / "dd"
    )
    with open_dataset(tmp_path / "dd") as ds:
        assert ds.split == "train" and len(ds) == 3
    datasets.DatasetDict({"a": image_dataset(1), "b": image_dataset(1)}).save_to_disk(
        tmp_path / "ab"
    )
    with pytest.raises(DatasetError, match=r"several splits and none is 'train' \(a, b\)"):
        open_dataset(tmp_path / "ab")


def test_text_and_instructions_with_mapped_columns(tmp_path: Path) -> None:
    text = datasets.Dataset.from_dict({"sentence": ["good", "bad"], "label": [1, 0]})
    text = text.cast_column("label", datasets.ClassLabel(names=["neg", "pos"]))
    text.save_to_disk(tmp_path / "t")
    with open_dataset(tmp_path / "t", columns={"text": "sentence"}) as ds:
        assert ds.kind == "text" and ds.labels == ["pos", "neg"]
        assert payloads(ds) == ["good", "bad"]
    chat = datasets.Dataset.from_dict(
        {"messages": [[{"role": "user", "content": "2+2"}, {"role": "assistant", "content": "4"}]]}
    )
    chat.save_to_disk(tmp_path / "c")
    assert payloads(open_dataset(tmp_path / "c")) == [Instruction("2+2", "", "4")]


def test_an_unmapped_column_is_named(tmp_path: Path) -> None:
    image_dataset(1).save_to_disk(tmp_path / "saved")
    with pytest.raises(MissingFieldError) as err:
        open_dataset(tmp_path / "saved", columns={"label": "fine_label"})
    assert err.value.message.startswith("column 'fine_label' (mapped to label) is not in the data")
