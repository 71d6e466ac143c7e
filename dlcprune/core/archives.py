"""Unpack a model directory uploaded as an archive (.zip, .tar, .tar.gz), safely.

The same safety layer as the dataset readers (``dlcprune.core.formats.limits``): member names
go through ``split_relative`` (no absolute paths, drive letters, backslashes or ``..``), links
and device files are refused, and members and bytes are counted while extracting (headers are not
trusted). Its errors are reported as ``ModelError`` naming the archive and the member. The result
is unpacked into a temporary directory and renamed into place, so a half-extracted model is never
used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from dlcprune.core.errors import DatasetError, ModelError
from dlcprune.core.formats.limits import (
    ArchiveBudget,
    Parts,
    ReadLimits,
    archive_errors,
    iter_capped,
    split_relative,
    tar_member_kind,
    zip_member_kind,
)

__all__ = ["MAX_BYTES", "MAX_MEMBERS", "model_root", "unpack_model"]

MAX_MEMBERS = 10_000
MAX_BYTES = 64 * 2**30
# A model is a few files, one of which may be nearly all of it (the weights), so one member may
# use the whole byte budget. No compression-ratio cap: the bytes are counted as they are written.
_LIMITS = ReadLimits(max_members=MAX_MEMBERS, max_total_bytes=MAX_BYTES, max_member_bytes=MAX_BYTES)


@contextlib.contextmanager
def _model_errors() -> Iterator[None]:
    """Report the safety layer's dataset errors as errors of the model upload."""
    try:
        yield
    except DatasetError as exc:
        raise ModelError(
            f"bad model archive: {exc.message}", path=exc.path, member=exc.member
        ) from exc


def _target(into: Path, name: str, *, archive: str) -> tuple[Parts, Path]:
    parts = split_relative(name, path=archive, what="member name")
    return parts, into.joinpath(*parts)


def _copy(src: IO[bytes], dest: Path, *, budget: ArchiveBudget, member: str) -> None:
    chunks = iter_capped(src, limits=_LIMITS, budget=budget, member=member)
    with open(dest, "wb") as out:
        while True:
            # Only reading is the archive's fault; a failed write (disk full) stays an OSError.
            with archive_errors(budget.path, member):
                chunk = next(chunks, None)
            if chunk is None:
                return
            out.write(chunk)


def _extract_zip(zf: zipfile.ZipFile, into: Path, budget: ArchiveBudget) -> None:
    archive = budget.path
    for info in zf.infolist():
        budget.add_member()
        parts, target = _target(into, info.filename, archive=archive)
        if zip_member_kind(info, path=archive) == "dir":
            target.mkdir(parents=True, exist_ok=True)
            continue
        if not parts:
            raise ModelError("a file member has no name", path=archive, member=info.filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive_errors(archive, info.filename):
            src = zf.open(info)
        with src:
            _copy(src, target, budget=budget, member=info.filename)


def _extract_tar(tf: tarfile.TarFile, into: Path, budget: ArchiveBudget) -> None:
    archive = budget.path
    while True:
        with archive_errors(archive):
            member = tf.next()
        if member is None:
            return
        budget.add_member()
        parts, target = _target(into, member.name, archive=archive)
        if tar_member_kind(member, path=archive) == "dir":
            target.mkdir(parents=True, exist_ok=True)
            continue
        if not parts:
            raise ModelError("a file member has no name", path=archive, member=member.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive_errors(archive, member.name):
            src = tf.extractfile(member)
        assert src is not None  # regular files always have a reader
        with src:
            _copy(src, target, budget=budget, member=member.name)


def _extract(archive: Path, into: Path) -> None:
    budget = ArchiveBudget(_LIMITS, str(archive))
    with _model_errors():
        if zipfile.is_zipfile(archive):
            with archive_errors(str(archive)):
                zf = zipfile.ZipFile(archive)
            with zf:
                _extract_zip(zf, into, budget)
            return
        try:
            tf = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the with below
        except (tarfile.TarError, OSError) as exc:
            raise ModelError(f"not a zip or tar archive: {exc}", path=str(archive)) from exc
        with tf:
            _extract_tar(tf, into, budget)


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
