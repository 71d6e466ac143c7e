"""The one safety layer every reader goes through (and ``dlcprune.core.archives`` too).

A dataset, or an uploaded model archive, is untrusted input: member names may try to escape, headers
may lie about sizes, archives may nest or bomb. The rules live here once, so each format module only
says which of them apply:

- ``ReadLimits``: the caps; every one raises ``LimitExceededError`` naming the file and, where it
  applies, the member.
- ``split_relative``: the member-name / relative-path check (no absolute paths, drive letters,
  backslashes or ``..``).
- ``zip_member_kind`` / ``tar_member_kind``: links, devices and fifos are refused.
- ``check_archive_file``: a member's declared size and nested-archive refusal;
  ``check_compression_ratio`` for zip members.
- ``ArchiveBudget``, ``iter_capped`` and ``read_capped``: bytes counted while reading (headers can
  lie); ``read_file_capped`` and ``check_file_size`` for plain image files.
- ``archive_errors``: the stdlib's many archive exceptions become ``CorruptArchiveError``.
"""

from __future__ import annotations

import contextlib
import lzma
import math
import os
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, Literal

from dlcprune.core.errors import (
    CorruptArchiveError,
    CorruptImageError,
    DatasetError,
    LimitExceededError,
    ScoringError,
    UnknownFormatError,
    UnsafePathError,
)

__all__ = [
    "ARCHIVE_ERRORS",
    "CHUNK",
    "ArchiveBudget",
    "Parts",
    "ReadLimits",
    "archive_errors",
    "check_archive_file",
    "check_compression_ratio",
    "check_file_size",
    "check_samples",
    "is_ignored",
    "iter_capped",
    "open_binary",
    "read_capped",
    "read_file_capped",
    "reason",
    "split_relative",
    "tar_member_kind",
    "zip_member_kind",
]

# Read size for streamed members and files.
CHUNK = 1 << 20
# Small members compress wildly (a blank PNG); only big ones can be bombs.
RATIO_MIN_BYTES = 1 << 20
NESTED_ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")

# Exceptions the stdlib archive modules raise on damaged or hostile input. Listed rather than
# catching ``Exception`` so that a programming error is not reported as a corrupt archive.
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    NotImplementedError,
    RuntimeError,
)


def is_network_error(exc: BaseException) -> bool:
    """An error of the connection a file is read over (an object store's), not of its bytes:
    the read may succeed when tried again, so it is never reported as damaged input."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    module = (type(exc).__module__ or "").split(".")[0]
    if module == "gcsfs":  # gcsfs's HttpError after its own retries: a 5xx is the store's
        code = getattr(exc, "code", None)
        return isinstance(code, int) and 500 <= code < 600
    return module in ("aiohttp", "botocore", "urllib3", "requests")


# Path components of a relative name, ``.`` and empty components removed.
Parts = tuple[str, ...]


@dataclass(frozen=True)
class ReadLimits:
    """Caps that protect the worker from huge or hostile datasets; every cap raises
    ``LimitExceededError`` naming the file and, where it applies, the member."""

    max_samples: int = 10_000_000
    max_members: int = 10_000_000  # archive members (any kind, dirs included); folder entries too
    max_total_bytes: int = 64 * 2**30  # uncompressed bytes read from an archive in one pass
    max_member_bytes: int = 2 * 2**30  # one archive member or one image file
    max_compression_ratio: float = 200.0  # per zip member, only when file_size > 1 MiB
    max_image_pixels: int = 50_000_000  # width * height from the image header, before decoding
    max_line_bytes: int = 16 * 2**20  # one JSONL/CSV line, without its line terminator
    max_array_bytes: int = 64 * 2**30  # declared size of an npz array, from its .npy header


_OBJECT_AT = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def reason(exc: BaseException) -> str:
    """An exception's text for an error message; its type name when it has none.

    Object addresses are dropped (Pillow says "cannot identify image file <_io.BytesIO object at
    0x7f...>"), so the same bad file gives the same message on every run."""
    text = _OBJECT_AT.sub("", str(exc)).strip()
    return text if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Names and paths


def split_relative(
    name: str, *, path: str, what: str, member: str | None = None, line: int | None = None
) -> Parts:
    """Split a relative posix path into components, refusing anything that could escape.

    Returns the non-empty components with ``.`` removed. Raises ``UnsafePathError`` for absolute
    paths, drive letters, backslashes and ``..`` components (even harmless ones: a dataset has no
    reason to use them, and refusing them keeps the rule simple to check).
    """
    mem = name if member is None else member
    if "\\" in name:
        raise UnsafePathError(
            f"{what} uses a backslash; use '/' as the separator", path=path, member=mem, line=line
        )
    if name.startswith("/") or _DRIVE_RE.match(name):
        raise UnsafePathError(f"{what} is an absolute path", path=path, member=mem, line=line)
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafePathError(f"{what} contains '..'", path=path, member=mem, line=line)
    return parts


def is_ignored(parts: Parts) -> bool:
    """Hidden files/folders and macOS resource forks are never part of a dataset."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def zip_member_kind(info: zipfile.ZipInfo, *, path: str) -> Literal["dir", "file"]:
    """``"dir"`` or ``"file"``; symbolic links and special files raise ``UnsafePathError``.

    The file type comes from the Unix mode in the high bits of ``external_attr`` (0 when the
    archive was not made on Unix, which reads as a plain file).
    """
    ftype = stat.S_IFMT(info.external_attr >> 16)
    if ftype == stat.S_IFLNK:
        raise UnsafePathError("symbolic links are not allowed", path=path, member=info.filename)
    if ftype in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        raise UnsafePathError("special files are not allowed", path=path, member=info.filename)
    return "dir" if info.is_dir() else "file"


def tar_member_kind(info: tarfile.TarInfo, *, path: str) -> Literal["dir", "file"]:
    """``"dir"`` or ``"file"``; links, devices and fifos raise ``UnsafePathError``."""
    if info.issym() or info.islnk():
        raise UnsafePathError("links are not allowed", path=path, member=info.name)
    if info.isdir():
        return "dir"
    if not info.isreg():
        raise UnsafePathError(
            "special files (devices, fifos) are not allowed", path=path, member=info.name
        )
    return "file"


# --------------------------------------------------------------------------------------------
# Counts and sizes


def check_samples(count: int, limits: ReadLimits, path: str) -> None:
    if count > limits.max_samples:
        raise LimitExceededError(f"more than {limits.max_samples} samples (max_samples)", path=path)


def check_archive_file(
    name: str, parts: Parts, *, path: str, limits: ReadLimits, size: int
) -> None:
    """Checks shared by zip and tar for one regular-file member (header size, nesting)."""
    if size > limits.max_member_bytes:
        raise LimitExceededError(
            f"member is larger than {limits.max_member_bytes} bytes (max_member_bytes)",
            path=path,
            member=name,
        )
    if parts and not is_ignored(parts) and parts[-1].lower().endswith(NESTED_ARCHIVE_SUFFIXES):
        raise UnknownFormatError("nested archives are not supported", path=path, member=name)


def check_compression_ratio(info: zipfile.ZipInfo, *, path: str, limits: ReadLimits) -> None:
    """Refuse a zip member over 1 MiB whose declared sizes say it inflates more than allowed."""
    if info.file_size <= RATIO_MIN_BYTES:
        return
    ratio = info.file_size / info.compress_size if info.compress_size else math.inf
    if ratio > limits.max_compression_ratio:
        raise LimitExceededError(
            f"member compression ratio {ratio:.0f} is above "
            f"{limits.max_compression_ratio:g} (max_compression_ratio)",
            path=path,
            member=info.filename,
        )


class ArchiveBudget:
    """Members seen and uncompressed bytes read from one archive during one pass."""

    def __init__(self, limits: ReadLimits, path: str) -> None:
        self.limits = limits
        self.path = path
        self.used = 0
        self.members = 0

    def take(self, nbytes: int, member: str) -> None:
        """Count ``nbytes`` more against ``max_total_bytes``."""
        self.used += nbytes
        if self.used > self.limits.max_total_bytes:
            raise LimitExceededError(
                f"archive holds more than {self.limits.max_total_bytes} uncompressed bytes "
                "(max_total_bytes)",
                path=self.path,
                member=member,
            )

    def add_member(self) -> None:
        """Count one more member (of any kind) against ``max_members``, for streamed archives
        whose member count is not known up front."""
        self.members += 1
        if self.members > self.limits.max_members:
            raise LimitExceededError(
                f"archive has more than {self.limits.max_members} members (max_members)",
                path=self.path,
            )


def iter_capped(
    f: IO[bytes], *, limits: ReadLimits, budget: ArchiveBudget, member: str
) -> Iterator[bytes]:
    """Chunks of a member read to its end, counting real bytes (headers can lie) against
    ``max_member_bytes`` and the archive's budget."""
    size = 0
    while chunk := f.read(CHUNK):
        size += len(chunk)
        if size > limits.max_member_bytes:
            raise LimitExceededError(
                f"member is larger than {limits.max_member_bytes} bytes (max_member_bytes)",
                path=budget.path,
                member=member,
            )
        budget.take(len(chunk), member)
        yield chunk


def read_capped(f: IO[bytes], *, limits: ReadLimits, budget: ArchiveBudget, member: str) -> bytes:
    """A member's bytes, read under the same caps as ``iter_capped``."""
    return b"".join(iter_capped(f, limits=limits, budget=budget, member=member))


def check_file_size(
    f: BinaryIO, *, limits: ReadLimits, path: str, member: str, line: int | None = None
) -> None:
    """Refuse an open image file larger than ``max_member_bytes`` before reading it."""
    if os.fstat(f.fileno()).st_size > limits.max_member_bytes:
        raise LimitExceededError(
            f"image file is larger than {limits.max_member_bytes} bytes (max_member_bytes)",
            path=path,
            member=member,
            line=line,
        )


def read_file_capped(full: str, *, limits: ReadLimits, path: str, member: str) -> bytes:
    """The bytes of one image file of a folder or manifest dataset, under ``max_member_bytes``."""
    try:
        with open(full, "rb") as f:
            check_file_size(f, limits=limits, path=path, member=member)
            return f.read()
    except OSError as exc:
        raise CorruptImageError(
            f"cannot read image: {reason(exc)}", path=path, member=member
        ) from exc


# --------------------------------------------------------------------------------------------
# Opening and error context


def open_binary(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DatasetError(f"cannot open file: {reason(exc)}", path=path) from exc


@contextlib.contextmanager
def archive_errors(path: str, member: str | None = None) -> Iterator[None]:
    """Turn the stdlib's many archive exceptions into ``CorruptArchiveError``."""
    try:
        yield
    except ScoringError:
        raise
    except ARCHIVE_ERRORS as exc:
        if is_network_error(exc):  # the store's connection, retried by the worker
            raise
        raise CorruptArchiveError(
            f"corrupt or truncated archive: {reason(exc)}", path=path, member=member
        ) from exc
