"""The Reader contract, the same for every format of issue 14: ids and labels line up, a shard
(``iter_range``) equals the same indices of a full pass, two opens read the same, ``verify`` and
``close`` work; and the registry's shard lists and brace patterns."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from dlcprune.core.errors import DatasetError, LimitExceededError
from dlcprune.core.formats import braces, open_dataset, registry
from dlcprune.core.formats.limits import ReadLimits
from tests.formats.builders import write_zip

N = 11


def pngs() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(N):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (5, 4, 3), dtype=np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def build(kind: str, root: Path) -> tuple[object, str]:
    blobs, labels = pngs(), [f"c{i % 3}" for i in range(N)]
    if kind == "parquet":
        path = root / "t.parquet"
        pq.write_table(pa.table({"image": blobs, "label": labels}), path, row_group_size=4)
        return path, "image"
    if kind == "hf_parquet":
        (root / "data").mkdir()
        for k, (lo, hi) in enumerate([(0, 5), (5, N)]):
            table = pa.table({"image": blobs[lo:hi], "label": labels[lo:hi]})
            pq.write_table(table, root / "data" / f"train-0000{k}-of-00002.parquet")
        return root, "image"
    if kind == "hf_dataset":
        ds = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(N)], "label": labels})
        ds.save_to_disk(root / "saved")
        return root / "saved", "text"
    if kind == "webdataset":
        paths = []
        for k, (lo, hi) in enumerate([(0, 4), (4, 8), (8, N)]):
            path = root / f"s-{k:03d}.tar"
            with tarfile.open(path, "w") as tf:
                for i in range(lo, hi):
                    for ext, data in (("png", blobs[i]), ("cls", str(i % 3).encode())):
                        info = tarfile.TarInfo(f"{i:04d}.{ext}")
                        info.size = len(data)
                        tf.addfile(info, io.BytesIO(data))
            paths.append(path)
        return str(root / "s-{000..002}.tar"), "image"
    if kind == "manifest_zip":
        rows = "".join(f"img/{i}.png,{labels[i]}\n" for i in range(N))
        files = {f"img/{i}.png": blobs[i] for i in range(N)}
        return write_zip(root / "m.zip", {"m.csv": ("path,label\n" + rows).encode(), **files}), (
            "image"
        )
    path = root / "c.jsonl.gz"
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(N)
    ]
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    return path, "instruction"


def same(a: object, b: object) -> bool:
    if isinstance(a, Image.Image):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


@pytest.mark.parametrize(
    "kind", ["parquet", "hf_parquet", "hf_dataset", "webdataset", "manifest_zip", "chat"]
)
def test_every_new_format_keeps_the_reader_contract(tmp_path: Path, kind: str) -> None:
    path, payload_kind = build(kind, tmp_path)
    with open_dataset(path) as ds:  # type: ignore[arg-type]
        assert ds.format == kind and ds.kind == payload_kind and len(ds) == N
        assert len(set(ds.ids)) == N
        if ds.labels is not None:
            assert len(ds.labels) == N and sum(ds.classes.values()) == N
        full = list(ds.iter_payloads())
        assert [i for i, _ in full] == list(range(N))
        for start, stop in [(0, 4), (4, 8), (8, N), (3, 3), (9, 100)]:
            part = list(ds.iter_range(start, stop))
            expected = full[start : min(stop, N)]
            assert [i for i, _ in part] == [i for i, _ in expected]
            assert all(same(a, b) for (_, a), (_, b) in zip(part, expected, strict=True))
        assert all(isinstance(ds.source(i), str) and ds.source(i) for i in range(N))
        ds.verify()
    with open_dataset(path) as again:  # type: ignore[arg-type]
        assert again.ids == ds.ids and again.labels == ds.labels
        assert all(same(a, b) for (_, a), (_, b) in zip(again.iter_payloads(), full, strict=True))


@pytest.mark.parametrize(
    "pattern",
    [
        "plain.tar",
        "a-{0..2}.tar",
        "a-{000..010..3}.tar",
        "{5..-2..2}",
        "{a..e}{Z..X..2}",
        "{z..a..5}",
        "{a,b,{c,d}}-{1..3}",
        "x{,.bak}",
        "{1..2}{a,{b..d}}{3,4}",
        "lit\\{0..3\\}{0..1}",
        "esc\\,{1,2\\,3}",
        "{not-a-list}{0..1}",
        "{{0..2}}",
    ],
)
def test_brace_patterns_are_counted_as_braceexpand_expands_them(pattern: str) -> None:
    from braceexpand import braceexpand

    expanded = list(braceexpand(pattern))
    assert braces.count(pattern) == len(expanded)
    assert braces.expand(pattern, len(expanded)) == expanded


def test_shard_lists_and_patterns(tmp_path: Path) -> None:
    assert registry.expand_shards(str(tmp_path / "a-{0..2}.tar")) == [
        str(tmp_path / f"a-{i}.tar") for i in range(3)
    ]
    assert registry.expand_shards(str(tmp_path / "plain.tar")) is None
    odd = tmp_path / "odd-{1,2}.tar"  # a real file whose name has braces is that file
    odd.write_bytes(b"")
    assert registry.expand_shards(str(odd)) is None
    with pytest.raises(DatasetError, match="shard does not exist") as err:
        open_dataset(str(tmp_path / "missing-{0..1}.tar"))
    assert err.value.path == str(tmp_path / "missing-0.tar")
    with pytest.raises(LimitExceededError, match="names 3 shards, more than the limit of 2"):
        registry.expand_shards(str(tmp_path / "a-{0..2}.tar"), 2)
    with pytest.raises(LimitExceededError, match="names 100,000,000 shards"):
        open_dataset(str(tmp_path / "a-{0..99999999}.tar"), limits=ReadLimits(max_members=10))
    with pytest.raises(DatasetError, match="reads one path, not a list of shards"):
        open_dataset([tmp_path / "a.tar"], format="tar")
    with pytest.raises(DatasetError, match="no shard paths given"):
        open_dataset([])
