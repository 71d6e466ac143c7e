"""``manifest_zip``: a zip holding a CSV or JSONL manifest at its top level and the images its rows
name (the shape of our own manifest export: ``m.csv`` plus ``img/a.png``, ...; a
``provenance.json`` beside them is ignored). Rows are read as by ``manifest`` (columns mappable);
the paths are member names, checked like every zip member (no ``..``, absolute names, links,
nested archives; member, byte and ratio limits). Detected when the zip's one top-level table
has a path column (``path``, ``image``, ``file`` or ``filename``); else name the format."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Collection, Iterator, Mapping
from typing import IO, BinaryIO

import numpy as np
from PIL import Image

from dlcprune.core.errors import DatasetError, InvalidRecordError, LimitExceededError
from dlcprune.core.formats.images import decode_image
from dlcprune.core.formats.limits import (
    ArchiveBudget,
    Parts,
    ReadLimits,
    archive_errors,
    check_archive_file,
    check_compression_ratio,
    is_ignored,
    is_network_error,
    read_capped,
    split_relative,
    zip_member_kind,
)
from dlcprune.core.formats.manifest import MANIFEST_PATH_KEYS, MANIFEST_ROLES, ManifestReader
from dlcprune.core.formats.registry import Probe, register

__all__ = ["ManifestZipReader"]

MANIFEST_NAMES = (".csv", ".jsonl")


def _root_manifests(names: list[str]) -> list[str]:
    return [
        n
        for n in names
        if "/" not in n.strip("/") and not n.startswith(".") and n.lower().endswith(MANIFEST_NAMES)
    ]


def has_root_manifest(path: str | BinaryIO, limits: ReadLimits) -> bool:
    """One top-level ``.csv``/``.jsonl`` whose header (or first object) has a path column: a
    class-folder zip with some other table beside its folders stays a class-folder zip."""
    try:
        with zipfile.ZipFile(path) as zf:
            manifests = _root_manifests(zf.namelist())
            if len(manifests) != 1:
                return False
            with zf.open(manifests[0]) as f:
                first = f.readline(limits.max_line_bytes).decode("utf-8-sig").strip()
    except Exception as exc:  # not readable as a zip: the zip format reports it
        if is_network_error(exc) or isinstance(exc, PermissionError):
            raise  # the store's answer, not the file's content: look reports it
        return False
    if manifests[0].lower().endswith(".jsonl"):
        try:
            keys = set(json.loads(first))
        except (ValueError, TypeError):
            return False
    else:
        keys = {cell.strip().strip('"').lower() for cell in first.split(",")}
    return bool(keys & set(MANIFEST_PATH_KEYS))


@register("manifest_zip", probe=Probe((".zip",), has_root_manifest), roles=MANIFEST_ROLES)
class ManifestZipReader(ManifestReader):
    """A zip of one top-level manifest and its images (see the module docstring).
    ``source(i)`` is the image's member name."""

    def __init__(
        self, path: str, limits: ReadLimits, columns: Mapping[str, str] | None = None
    ) -> None:
        with archive_errors(path):
            self._zf: zipfile.ZipFile | None = zipfile.ZipFile(path)
        try:
            self._infos = self._check_members(path, limits)
            manifests = _root_manifests(list(self._infos))
            if len(manifests) != 1:
                raise DatasetError(
                    "the zip needs exactly one .csv or .jsonl manifest at its top level",
                    path=path,
                )
            self._manifest = manifests[0]
            super().__init__(path, limits, columns)
        except BaseException:
            self.close()
            raise

    def _check_members(self, path: str, limits: ReadLimits) -> dict[str, zipfile.ZipInfo]:
        assert self._zf is not None
        infos = self._zf.infolist()
        if len(infos) > limits.max_members:
            raise LimitExceededError(
                f"archive has {len(infos)} members, more than {limits.max_members} (max_members)",
                path=path,
            )
        budget = ArchiveBudget(limits, path)
        out: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            parts = split_relative(info.filename, path=path, what="member name")
            if zip_member_kind(info, path=path) == "dir":
                continue
            check_compression_ratio(info, path=path, limits=limits)
            check_archive_file(info.filename, parts, path=path, limits=limits, size=info.file_size)
            budget.take(info.file_size, info.filename)
            if not parts or is_ignored(parts):
                continue
            rel = "/".join(parts)
            if rel in out:
                raise InvalidRecordError("duplicate member", path=path, member=info.filename)
            if info.flag_bits & 0x1:
                raise DatasetError(
                    "encrypted members are not supported", path=path, member=info.filename
                )
            out[rel] = info
        return out

    def _name(self) -> str:
        return self._manifest

    def _open_manifest(self) -> IO[bytes]:
        assert self._zf is not None
        with archive_errors(self.path, self._manifest):
            return self._zf.open(self._infos[self._manifest])

    def _check_image(self, parts: Parts, rel: str, line: int) -> None:
        if rel not in self._infos:
            raise DatasetError(
                "image is not a member of the zip", path=self.path, line=line, member=rel
            )

    @property
    def spans(self) -> np.ndarray:
        raise AttributeError("the manifest of a zip has no byte spans in the zip (line_spans)")

    def _read(self, rel: str, budget: ArchiveBudget) -> bytes:
        if self._zf is None:
            raise DatasetError("dataset is closed", path=self.path)
        info = self._infos[rel]
        with archive_errors(self.path, rel), self._zf.open(info) as f:
            return read_capped(f, limits=self.limits, budget=budget, member=rel)

    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        budget = ArchiveBudget(self.limits, self.path)
        for i in sorted(keep) if keep is not None else range(len(self._rel)):
            yield i, self._read(self._rel[i], budget)

    def _iter_images(
        self, convert: bool, rng: range | None = None
    ) -> Iterator[tuple[int, Image.Image | None]]:
        budget = ArchiveBudget(self.limits, self.path)
        for i in rng if rng is not None else range(len(self._rel)):
            rel = self._rel[i]
            data = self._read(rel, budget)
            im = decode_image(
                io.BytesIO(data),
                limits=self.limits,
                path=self.path,
                member=rel,
                line=self._lines[i],
                convert=convert,
            )
            yield i, im

    def close(self) -> None:
        if getattr(self, "_zf", None) is not None:
            self._zf.close()  # type: ignore[union-attr]
            self._zf = None
