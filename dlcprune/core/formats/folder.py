"""``folder``: a directory of class subfolders holding images."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator

from PIL import Image

from dlcprune.core.errors import (
    CorruptImageError,
    DatasetError,
    LimitExceededError,
    UnsafePathError,
)
from dlcprune.core.formats.base import ImageReader
from dlcprune.core.formats.images import decode_image, is_image_name
from dlcprune.core.formats.layout import resolve_layout
from dlcprune.core.formats.limits import (
    Parts,
    ReadLimits,
    check_file_size,
    read_file_capped,
    reason,
)
from dlcprune.core.formats.registry import register

__all__ = ["FolderReader"]


@register("folder", directory=True)
class FolderReader(ImageReader):
    """A directory of class subfolders holding images.

    ``source(i)`` and error members are paths relative to the folder (before any top-folder
    stripping). Symbolic links are followed only when they stay inside the folder; a link that
    leads outside raises ``UnsafePathError``. Linked folders already visited are skipped, which
    also breaks link cycles. Folder entries count against ``max_members``.
    """

    def __init__(self, path: str, limits: ReadLimits) -> None:
        super().__init__(path, limits)
        if not os.path.isdir(path):
            raise DatasetError("not a directory", path=path)
        self._root = os.path.realpath(path)
        files, dirs = self._walk()
        self.ids, self.labels, self._rel = resolve_layout(
            files, dirs, path=path, limits=limits, describe=lambda rel: rel
        )

    def _walk(self) -> tuple[list[tuple[Parts, str]], set[Parts]]:
        files: list[tuple[Parts, str]] = []
        dirs: set[Parts] = set()
        visited = {self._root}
        stack: list[tuple[str, Parts]] = [(self._root, ())]
        count = 0
        while stack:
            directory, rel = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                raise DatasetError(
                    f"cannot list folder: {reason(exc)}", path=self.path, member="/".join(rel)
                ) from exc
            for entry in entries:
                if entry.name.startswith(".") or entry.name == "__MACOSX":
                    continue
                count += 1
                if count > self.limits.max_members:
                    raise LimitExceededError(
                        f"more than {self.limits.max_members} entries (max_members)",
                        path=self.path,
                    )
                parts = (*rel, entry.name)
                rel_name = "/".join(parts)
                try:
                    is_link = entry.is_symlink()
                    is_dir = entry.is_dir()
                    is_file = entry.is_file()
                except OSError as exc:
                    raise DatasetError(
                        f"cannot stat entry: {reason(exc)}", path=self.path, member=rel_name
                    ) from exc
                real = entry.path
                if is_link:
                    real = os.path.realpath(entry.path)
                    if os.path.commonpath([self._root, real]) != self._root:
                        raise UnsafePathError(
                            "symbolic link points outside the dataset folder",
                            path=self.path,
                            member=rel_name,
                        )
                if is_dir:
                    if real in visited:
                        continue
                    visited.add(real)
                    dirs.add(parts)
                    stack.append((entry.path, parts))
                    continue
                if rel:
                    dirs.add(rel)
                # A dangling link named like an image is kept so that decoding reports it.
                dangling = is_link and not os.path.exists(entry.path)
                if (is_file or dangling) and is_image_name(entry.name):
                    files.append((parts, rel_name))
        return files, dirs

    def source(self, i: int) -> str:
        return self._rel[i]

    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        for i in sorted(keep) if keep is not None else range(len(self._rel)):
            rel = self._rel[i]
            full = os.path.join(self.path, *rel.split("/"))
            yield i, read_file_capped(full, limits=self.limits, path=self.path, member=rel)

    def _iter_images(
        self, convert: bool, rng: range | None = None
    ) -> Iterator[tuple[int, Image.Image | None]]:
        for i in rng if rng is not None else range(len(self._rel)):
            rel = self._rel[i]
            full = os.path.join(self.path, *rel.split("/"))
            try:
                f = open(full, "rb")  # noqa: SIM115 - closed in the finally below
            except OSError as exc:
                raise CorruptImageError(
                    f"cannot read image: {reason(exc)}", path=self.path, member=rel
                ) from exc
            try:
                check_file_size(f, limits=self.limits, path=self.path, member=rel)
                im = decode_image(
                    f, limits=self.limits, path=self.path, member=rel, convert=convert
                )
            finally:
                f.close()
            yield i, im
