"""Builders of tiny synthetic datasets for the format tests, written in ``tmp_path``."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from dlcprune.core.formats import Reader


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


def payloads(ds: Reader) -> list[Any]:
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
