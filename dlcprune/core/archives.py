"""Unpack a model directory uploaded as an archive (.zip, .tar, .tar.gz), safely.

Members with absolute paths, ``..`` components, links or device files are refused, and members
and bytes are counted while extracting (headers are not trusted). The result is unpacked into a
temporary directory and renamed into place, so a half-extracted model is never used.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from dlcprune.core.errors import ModelError

MAX_MEMBERS = 10_000
MAX_BYTES = 64 * 2**30


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or any(part in ("..", "") for part in path.parts) or ":" in name:
        raise ModelError(f"unsafe path in the model archive: {name!r}")
    return path


def _copy(src, dest: Path, budget: list[int]) -> None:  # type: ignore[no-untyped-def]
    with open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise ModelError(f"the model archive unpacks to more than {MAX_BYTES} bytes")
            out.write(chunk)


def _extract(archive: Path, into: Path) -> None:
    budget = [MAX_BYTES]
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ModelError(f"the model archive has more than {MAX_MEMBERS} members")
            for info in infos:
                rel = _safe_name(info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise ModelError(f"links are not allowed in the model archive: {rel}")
                target = into.joinpath(*rel.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src:
                    _copy(src, target, budget)
        return
    try:
        tf = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise ModelError(f"not a zip or tar archive: {exc}") from exc
    with tf:
        for count, member in enumerate(tf, start=1):
            if count > MAX_MEMBERS:
                raise ModelError(f"the model archive has more than {MAX_MEMBERS} members")
            rel = _safe_name(member.name)
            target = into.joinpath(*rel.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isreg():
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                assert src is not None
                with src:
                    _copy(src, target, budget)
            else:
                raise ModelError(f"only files and folders are allowed in the model archive: {rel}")


def model_root(directory: Path) -> Path:
    """The shallowest folder holding a config.json (archives often wrap the model in a folder)."""
    candidates = sorted(directory.rglob("config.json"), key=lambda p: len(p.parts))
    if not candidates:
        raise ModelError("the model archive holds no config.json (not a Hugging Face model)")
    return candidates[0].parent


def unpack_model(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Unpack ``archive`` to ``dest`` once (reused when already there); returns the model root."""
    dest = Path(dest)
    if dest.is_dir():
        return model_root(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.partial-{uuid.uuid4().hex}")
    tmp.mkdir()
    try:
        _extract(Path(archive), tmp)
        root = model_root(tmp)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest / root.relative_to(tmp)
