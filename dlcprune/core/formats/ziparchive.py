"""``zip``: a zip archive with the class-folder layout of ``folder``."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Collection, Iterator
from typing import BinaryIO

from PIL import Image

from dlcprune.core.errors import DatasetError, LimitExceededError
from dlcprune.core.formats.base import ImageReader
from dlcprune.core.formats.images import decode_image, is_image_name
from dlcprune.core.formats.layout import ArchiveMembers, resolve_layout
from dlcprune.core.formats.limits import (
    ArchiveBudget,
    Parts,
    ReadLimits,
    archive_errors,
    check_archive_file,
    check_compression_ratio,
    read_capped,
    split_relative,
    zip_member_kind,
)
from dlcprune.core.formats.registry import register

__all__ = ["ZipReader"]


@register("zip", suffixes=(".zip",))
class ZipReader(ImageReader):
    """A zip archive with the same class-folder layout as ``folder``.

    Members are read by random access in index (sorted id) order. ``source(i)`` is the member
    name. Every member is checked at open: unsafe names, symlinks and special files, nested
    archives, declared sizes and compression ratio; sizes are counted again while reading.
    """

    def __init__(
        self, path: str, limits: ReadLimits, opener: Callable[[str], BinaryIO] | None = None
    ) -> None:
        super().__init__(path, limits)
        # ``opener``: an archive that is not a local file (an object in a store, named by its
        # URI), opened as a seekable file: the central directory and each member are read by
        # ranges, nothing is copied first.
        self._file = opener(path) if opener is not None else None
        self._zf: zipfile.ZipFile | None = None
        try:
            with archive_errors(path):
                self._zf = zipfile.ZipFile(self._file if self._file is not None else path)
        except BaseException:
            self.close()
            raise
        try:
            self._index()
        except BaseException:
            self.close()
            raise

    def _index(self) -> None:
        assert self._zf is not None
        limits = self.limits
        infos = self._zf.infolist()
        if len(infos) > limits.max_members:
            raise LimitExceededError(
                f"archive has {len(infos)} members, more than {limits.max_members} (max_members)",
                path=self.path,
            )
        budget = ArchiveBudget(limits, self.path)
        files: list[tuple[Parts, zipfile.ZipInfo]] = []
        members = ArchiveMembers(self.path)
        for info in infos:
            name = info.filename
            parts = split_relative(name, path=self.path, what="member name")
            if zip_member_kind(info, path=self.path) == "dir":
                members.add_dir(parts)
                continue
            check_compression_ratio(info, path=self.path, limits=limits)
            check_archive_file(name, parts, path=self.path, limits=limits, size=info.file_size)
            budget.take(info.file_size, name)
            if not members.add_file(parts, name):
                continue
            if is_image_name(parts[-1]):
                if info.flag_bits & 0x1:
                    raise DatasetError(
                        "encrypted members are not supported", path=self.path, member=name
                    )
                files.append((parts, info))
        self.ids, self.labels, self._infos = resolve_layout(
            files, members.dirs, path=self.path, limits=limits, describe=lambda info: info.filename
        )

    def source(self, i: int) -> str:
        return self._infos[i].filename

    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        if self._zf is None:
            raise DatasetError("dataset is closed", path=self.path)
        budget = ArchiveBudget(self.limits, self.path)
        for i in sorted(keep) if keep is not None else range(len(self._infos)):
            info = self._infos[i]
            with archive_errors(self.path, info.filename), self._zf.open(info) as f:
                yield i, read_capped(f, limits=self.limits, budget=budget, member=info.filename)

    def _iter_images(
        self, convert: bool, rng: range | None = None
    ) -> Iterator[tuple[int, Image.Image | None]]:
        if self._zf is None:
            raise DatasetError("dataset is closed", path=self.path)
        zf = self._zf
        budget = ArchiveBudget(self.limits, self.path)
        for i in rng if rng is not None else range(len(self._infos)):
            info = self._infos[i]
            with archive_errors(self.path, info.filename), zf.open(info) as f:
                data = read_capped(f, limits=self.limits, budget=budget, member=info.filename)
            im = decode_image(
                io.BytesIO(data),
                limits=self.limits,
                path=self.path,
                member=info.filename,
                convert=convert,
            )
            yield i, im

    def close(self) -> None:
        if self._zf is not None:
            self._zf.close()
            self._zf = None
        if self._file is not None:
            self._file.close()
            self._file = None
