"""``tar``: a tar archive (plain, gzip, bzip2 or xz) with the class-folder layout of ``folder``."""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Callable, Collection, Iterator
from typing import BinaryIO

from PIL import Image

from dlcprune.core.errors import CorruptArchiveError
from dlcprune.core.formats.base import ImageReader
from dlcprune.core.formats.images import decode_image, is_image_name
from dlcprune.core.formats.layout import ArchiveMembers, resolve_layout
from dlcprune.core.formats.limits import (
    ArchiveBudget,
    Parts,
    ReadLimits,
    archive_errors,
    check_archive_file,
    open_binary,
    read_capped,
    split_relative,
    tar_member_kind,
)
from dlcprune.core.formats.registry import register

__all__ = ["TarReader", "open_tar"]


def open_tar(path: str, fileobj: BinaryIO | None = None) -> tuple[tarfile.TarFile, bool]:
    """Open a tar archive for reading, choosing the compression from its magic bytes.

    Returns the archive and whether it is uncompressed (only then is the end-of-archive check
    cheap; a truncated compressed stream is caught by the decompressor instead). ``fileobj``,
    when given, is read instead of ``path`` (a seekable file, such as an object store's file
    read by ranges; ``path`` then only names it); closing the archive leaves it open.
    """
    if fileobj is not None:
        magic = fileobj.read(6)
        fileobj.seek(0)
    else:
        with open_binary(path) as f:
            magic = f.read(6)
    if magic.startswith(b"\x1f\x8b"):
        mode = "r:gz"
    elif magic.startswith(b"BZh"):
        mode = "r:bz2"
    elif magic.startswith(b"\xfd7zXZ\x00"):
        mode = "r:xz"
    else:
        mode = "r:"
    if fileobj is not None:
        return tarfile.open(fileobj=fileobj, mode=mode), mode == "r:"  # type: ignore[call-overload]
    return tarfile.open(path, mode), mode == "r:"  # type: ignore[call-overload]


@contextlib.contextmanager
def tar_pass(
    path: str, opener: Callable[[str], BinaryIO] | None = None
) -> Iterator[tuple[tarfile.TarFile, bool]]:
    """One pass over the tar archive ``path``: local, or streamed through ``opener`` (a file that
    is not local, opened by its name). Yields ``open_tar``'s pair; the archive and the file it
    reads are closed when the pass ends, also on an error."""
    f = opener(path) if opener is not None else None
    try:
        with archive_errors(path):
            tf, plain = open_tar(path, fileobj=f)
        try:
            yield tf, plain
        finally:
            tf.close()
    finally:
        if f is not None:
            f.close()


def next_member(tf: tarfile.TarFile) -> tarfile.TarInfo | None:
    """The next member header, or None at the end; ``tf`` keeps none of the headers read."""
    info = tf.next()
    # TarFile remembers every header it has read; we keep only what we need, so drop them.
    tf.members.clear()
    return info


@register("tar", suffixes=(".tar", ".tar.gz", ".tgz"))
class TarReader(ImageReader):
    """A tar archive (plain, gzip, bzip2 or xz) with the same layout as ``folder``.

    The index pass reads member headers only. The dataset order is the sorted ids, like the other
    image formats, but a tar can only be read front to back, so ``iter_payloads`` reads the
    archive sequentially and keeps the raw bytes (not decoded images) of members that arrive
    before their turn in a buffer until they are due. A tar made from a folder lists members
    nearly sorted, so the buffer stays small. ``source(i)`` is the member name.

    ``opener``: an archive that is not a local file (an object in a store, named by its URI as
    ``path``), opened as a seekable file for each pass (the index, then each read) and streamed
    from it: nothing is copied first. Errors name the archive by ``path``.
    """

    def __init__(
        self, path: str, limits: ReadLimits, opener: Callable[[str], BinaryIO] | None = None
    ) -> None:
        super().__init__(path, limits)
        self._opener = opener
        files: list[tuple[Parts, str]] = []
        members = ArchiveMembers(path)
        with self._open() as (tf, plain):
            last = self._index(tf, files, members)
            if plain:
                self._check_end(tf, last)
        self.ids, self.labels, self._names = resolve_layout(
            files, members.dirs, path=path, limits=limits, describe=lambda name: name
        )

    def _open(self) -> contextlib.AbstractContextManager[tuple[tarfile.TarFile, bool]]:
        """The archive for one pass (``tar_pass``)."""
        return tar_pass(self.path, self._opener)

    def _index(
        self, tf: tarfile.TarFile, files: list[tuple[Parts, str]], members: ArchiveMembers
    ) -> str | None:
        """Read the member headers into ``files`` and ``members``; the last member's name."""
        limits = self.limits
        budget = ArchiveBudget(limits, self.path)
        last: str | None = None
        while True:
            # A header that cannot be read comes after the last member read: name that one.
            with archive_errors(self.path, last):
                info = next_member(tf)
            if info is None:
                return last
            budget.add_member()
            name = info.name
            last = name
            parts = split_relative(name, path=self.path, what="member name")
            if tar_member_kind(info, path=self.path) == "dir":
                members.add_dir(parts)
                continue
            check_archive_file(name, parts, path=self.path, limits=limits, size=info.size)
            # Skipping a member still decompresses it, so its declared size is real work.
            budget.take(info.size, name)
            if not members.add_file(parts, name):
                continue
            if is_image_name(parts[-1]):
                files.append((parts, name))

    def _check_end(self, tf: tarfile.TarFile, last: str | None) -> None:
        # tarfile silently treats a truncated or garbled header as the end of the archive;
        # a complete archive has a zero block there.
        with archive_errors(self.path, last):
            tf.fileobj.seek(tf.offset)  # type: ignore[union-attr]
            block = tf.fileobj.read(tarfile.BLOCKSIZE)  # type: ignore[union-attr]
        if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
            raise CorruptArchiveError(
                "archive is truncated or has a corrupt member header after this member",
                path=self.path,
                member=last,
            )

    def source(self, i: int) -> str:
        return self._names[i]

    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        wanted = {name: i for i, name in enumerate(self._names)}
        chosen = set(keep) if keep is not None else set(range(len(self._names)))
        budget = ArchiveBudget(self.limits, self.path)
        last: str | None = None
        with self._open() as (tf, _):
            while chosen:
                with archive_errors(self.path, last):
                    info = next_member(tf)
                if info is None:
                    break
                last = info.name
                index = wanted.get(info.name)
                if index is None or index not in chosen or not info.isreg():
                    continue
                with archive_errors(self.path, info.name):
                    f = tf.extractfile(info)
                    assert f is not None
                    with f:
                        data = read_capped(f, limits=self.limits, budget=budget, member=info.name)
                chosen.discard(index)
                yield index, data
        if chosen:
            raise CorruptArchiveError(
                "member listed at open is missing (was the archive changed?)",
                path=self.path,
                member=self._names[min(chosen)],
            )

    def _iter_images(
        self, convert: bool, rng: range | None = None
    ) -> Iterator[tuple[int, Image.Image | None]]:
        rng = rng if rng is not None else range(len(self._names))
        # Members outside the range are skipped unread (tar streams past them).
        wanted = {self._names[i]: i for i in rng}
        pending: dict[int, bytes] = {}
        due = rng.start
        budget = ArchiveBudget(self.limits, self.path)
        last: str | None = None
        with self._open() as (tf, _):
            while due < rng.stop:
                with archive_errors(self.path, last):
                    info = next_member(tf)
                if info is None:
                    break
                last = info.name
                index = wanted.get(info.name)
                if index is None or index < due or not info.isreg():
                    continue
                with archive_errors(self.path, info.name):
                    f = tf.extractfile(info)
                    assert f is not None  # regular files always have a reader
                    with f:
                        data = read_capped(f, limits=self.limits, budget=budget, member=info.name)
                pending[index] = data
                while due in pending:
                    raw = pending.pop(due)
                    member = self._names[due]
                    im = decode_image(
                        io.BytesIO(raw),
                        limits=self.limits,
                        path=self.path,
                        member=member,
                        convert=convert,
                    )
                    yield due, im
                    due += 1
        if due < rng.stop:
            raise CorruptArchiveError(
                "member listed at open is missing (was the archive changed?)",
                path=self.path,
                member=self._names[due],
            )
