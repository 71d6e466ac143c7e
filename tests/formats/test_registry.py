"""Detection and ``open_dataset``: the registry, format overrides, sniffing errors, and shards
(``iter_range``) for every access pattern."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dlcprune.core.errors import (
    DatasetError,
    EmptyDatasetError,
    MissingFieldError,
    UnknownFormatError,
)
from dlcprune.core.formats import (
    FORMATS,
    Reader,
    ReadLimits,
    TextReader,
    detect_format,
    open_dataset,
    register,
    registry,
)
from tests.formats.builders import check_error, payloads, write_lines

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
        open_dataset(txt, format="orc")
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


# --------------------------------------------------------------------------------------------
# The registry


def test_formats_in_registration_order_each_named_once() -> None:
    assert FORMATS == (
        "folder",
        "zip",
        "tar",
        "manifest",
        "npz",
        "text",
        "alpaca",
        "dolly",
        "sharegpt",
        "chat",
        "parquet",
        "hf_parquet",
        "hf_dataset",
        "webdataset",
        "manifest_zip",
    )
    # The name a reader reports is the one it was registered under.
    assert [registry.spec(name).reader.format for name in FORMATS] == list(FORMATS)
    assert registry.suffixes() == (
        ".zip",
        ".tar",
        ".tar.gz",
        ".tgz",
        ".npz",
        ".parquet",
        ".csv",
        ".jsonl",
        ".json",
        ".jsonl.gz",
        ".json.gz",
    )


def test_detection_messages_name_what_is_expected(tmp_path: Path) -> None:
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    with pytest.raises(UnknownFormatError) as err:
        detect_format(odd)
    assert err.value.message == (
        "unknown dataset format (expected a folder, .zip, .tar, .tar.gz, .tgz, .npz, .parquet, "
        ".csv, .jsonl, .json, .jsonl.gz or .json.gz)"
    )
    path = write_lines(tmp_path / "u.jsonl", [{"question": "?"}])
    with pytest.raises(UnknownFormatError) as err:
        detect_format(path)
    assert err.value.message == (
        "cannot tell the format from the fields ['question']; expected 'conversations', "
        "'messages', 'instruction'+'output', 'instruction'+'response', 'text' or 'path'"
    )
    with pytest.raises(UnknownFormatError) as err:
        open_dataset(path, format="orc")
    assert err.value.message == (
        "unknown format 'orc'; expected one of folder, zip, tar, manifest, npz, text, alpaca, "
        "dolly, sharegpt, chat, parquet, hf_parquet, hf_dataset, webdataset, manifest_zip"
    )


@pytest.mark.parametrize(
    ("keys", "fmt"),
    [
        # A narrower rule wins over a broader one that also matches.
        ({"conversations": [], "text": "t", "path": "p"}, "sharegpt"),
        ({"instruction": "i", "output": "o", "response": "r", "text": "t"}, "alpaca"),
        ({"instruction": "i", "response": "r", "text": "t"}, "dolly"),
        ({"text": "t", "image": "x.png"}, "text"),
        ({"filename": "x.png", "label": "a"}, "manifest"),
    ],
)
def test_json_lines_rules_run_narrowest_first(
    tmp_path: Path, keys: dict[str, object], fmt: str
) -> None:
    assert detect_format(write_lines(tmp_path / "d.jsonl", [keys])) == fmt


def test_register_refuses_a_second_claim() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register("zip")(type("Again", (TextReader,), {}))
    with pytest.raises(ValueError, match="already claimed"):
        register("zip2", suffixes=(".zip",))(type("Again", (TextReader,), {}))
    assert registry.names() == FORMATS


@pytest.fixture
def restore_registry() -> Iterator[None]:
    saved = dict(registry._SPECS)
    yield
    registry._SPECS.clear()
    registry._SPECS.update(saved)


@pytest.mark.usefixtures("restore_registry")
def test_a_new_format_is_one_registered_class(tmp_path: Path) -> None:
    @register("lines", suffixes=(".lines",))
    class LinesReader(Reader):
        """One text sample per line of a ``.lines`` file."""

        kind = "text"

        def __init__(self, path: str, limits: ReadLimits) -> None:
            super().__init__(path, limits)
            with open(path, encoding="utf-8") as f:
                self._texts = f.read().splitlines()
            self.ids = [str(i) for i in range(len(self._texts))]

        def iter_payloads(self) -> Iterator[tuple[int, Any]]:
            yield from enumerate(self._texts)

        def source(self, i: int) -> str:
            return f"line {i + 1}"

    path = tmp_path / "d.lines"
    path.write_text("a\nb\n")
    assert detect_format(path) == "lines"
    with open_dataset(path) as ds:
        assert isinstance(ds, LinesReader) and ds.format == "lines"
        assert payloads(ds) == ["a", "b"]
    assert open_dataset(path, format="lines").format == "lines"
    assert registry.names()[-1] == "lines" and ".lines" in registry.suffixes()
