"""The class-folder layout shared by ``folder``, ``zip`` and ``tar``: ``<class>/<...>/<image>``,
optionally under one shared top folder."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from dlcprune.core.errors import (
    EmptyClassError,
    EmptyDatasetError,
    InvalidRecordError,
    MissingFieldError,
)
from dlcprune.core.formats.limits import Parts, ReadLimits, check_samples, is_ignored

__all__ = ["ArchiveMembers", "resolve_layout"]

_T = TypeVar("_T")


class ArchiveMembers:
    """What a zip or tar listing says about the layout: its folders, and its files once each."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.dirs: set[Parts] = set()
        self._seen: set[Parts] = set()

    def add_dir(self, parts: Parts) -> None:
        if parts and not is_ignored(parts):
            self.dirs.add(parts)

    def add_file(self, parts: Parts, name: str) -> bool:
        """Record a file member; False when it is ignored (no name, or a hidden or system file).
        A second member with the same path is an error naming it."""
        if not parts or is_ignored(parts):
            return False
        if parts in self._seen:
            raise InvalidRecordError("duplicate member", path=self.path, member=name)
        self._seen.add(parts)
        if len(parts) > 1:
            self.dirs.add(parts[:-1])
        return True


def resolve_layout(
    files: list[tuple[Parts, _T]],
    dirs: Iterable[Parts],
    *,
    path: str,
    limits: ReadLimits,
    describe: Callable[[_T], str],
) -> tuple[list[str], list[str], list[_T]]:
    """Turn image paths of a class-folder layout into sorted ``(ids, labels, handles)``.

    ``files`` pairs each image's path components with a handle (a member, a relative path);
    ``dirs`` are the folders seen (explicit entries and parents of any kept file), used to find
    class folders without images. A shared top folder is stripped while every image keeps at
    least two components, so ``data/cat/1.png`` and ``cat/1.png`` give the same ids.
    """
    if not files:
        raise EmptyDatasetError("no images found (.jpg, .jpeg, .png, .webp, .bmp)", path=path)
    check_samples(len(files), limits, path)
    depth = 0
    while True:
        heads = {parts[depth] for parts, _ in files if len(parts) > depth}
        if len(heads) != 1 or any(len(parts) - depth - 1 < 2 for parts, _ in files):
            break
        depth += 1
    prefix = files[0][0][:depth]

    rows: list[tuple[str, str, _T]] = []
    for parts, handle in files:
        rest = parts[depth:]
        if len(rest) < 2:
            raise MissingFieldError(
                "image is not inside a class folder (no class folder to take the label from)",
                path=path,
                member=describe(handle),
            )
        rows.append(("/".join(rest), rest[0], handle))
    rows.sort(key=lambda row: row[0])

    labels_seen = {label for _, label, _ in rows}
    class_dirs = {d[depth] for d in dirs if len(d) > depth and d[:depth] == prefix}
    empty = sorted(class_dirs - labels_seen)
    if empty:
        raise EmptyClassError(
            "class folder contains no images", path=path, member="/".join((*prefix, empty[0]))
        )
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
