"""Dataset readers: turn a path into an indexed ``Reader`` whose payloads can be streamed.

``open_dataset(path)`` detects the format, builds a cheap index (ids, labels and, for line-based
files, byte spans) and returns a ``Reader``. Payloads are produced later by one sequential pass of
``Reader.iter_payloads()``, so a dataset never has to fit in memory.

Formats (``Reader.format``) and the kind of payload they yield (``Reader.kind``):

- ``folder``, ``zip``, ``tar``: class subfolders holding images -> ``image`` (``PIL.Image`` RGB).
- ``manifest``: a CSV or JSONL file listing image paths and labels -> ``image``.
- ``npz``: an array ``x`` (plus optional ``y`` and ``id``/``ids``) -> ``image`` for ``x`` of
  3 or 4 dimensions, ``vector`` (float32 ``(D,)``) for 2 dimensions.
- ``text``: JSONL with ``text`` and ``label`` -> ``text`` (``str``).
- ``alpaca``, ``dolly``, ``sharegpt``: JSONL instruction data -> ``instruction`` (``Instruction``).

Every problem caused by the data is raised as a ``DatasetError`` subclass from ``errors`` naming
the file and, where it applies, the line (1-based) or the archive member / relative image path.

Image conversion: every image payload is fully decoded and converted to mode ``"RGB"``. Images
with transparency are composited on a WHITE background. 16-bit grayscale is reduced to 8 bits by
dropping the low byte; 32-bit integer images are treated the same when they hold values above 255;
float images are clipped to [0, 255].

Only JPEG, PNG, WebP and BMP decoders are ever used, whatever the file extension claims, so a
renamed file cannot reach a riskier Pillow plugin.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import lzma
import math
import os
import re
import stat
import struct
import tarfile
import warnings
import zipfile
import zlib
from abc import ABC, abstractmethod
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import IO, Any, BinaryIO, TypeVar

import numpy as np
from PIL import Image

from dlcprune.core.errors import (
    CorruptArchiveError,
    CorruptImageError,
    DatasetError,
    EmptyClassError,
    EmptyDatasetError,
    InvalidRecordError,
    LimitExceededError,
    MissingFieldError,
    ScoringError,
    UnknownFormatError,
    UnsafePathError,
)

__all__ = [
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "FolderReader",
    "Instruction",
    "JsonlReader",
    "ManifestReader",
    "NpzReader",
    "ReadLimits",
    "Reader",
    "TarReader",
    "ZipReader",
    "detect_format",
    "open_dataset",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
FORMATS = ("folder", "zip", "tar", "manifest", "npz", "text", "alpaca", "dolly", "sharegpt")

_NESTED_ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_JSONL_SUFFIXES = (".jsonl", ".json")
_MANIFEST_PATH_KEYS = ("path", "image", "file", "filename")
_MANIFEST_LABEL_KEYS = ("label", "class")
_USER_ROLES = frozenset({"human", "user"})
_ASSISTANT_ROLES = frozenset({"gpt", "assistant", "chatgpt", "model"})

_CHUNK = 1 << 20
# Small members compress wildly (a blank PNG); only big ones can be bombs.
_RATIO_MIN_BYTES = 1 << 20
_UTF8_BOM = b"\xef\xbb\xbf"
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_INT_RE = re.compile(r"-?[0-9]+")

# Exceptions the stdlib archive modules raise on damaged or hostile input. Listed rather than
# catching ``Exception`` so that a programming error is not reported as a corrupt archive.
_ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
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

_T = TypeVar("_T")
_Parts = tuple[str, ...]


# --------------------------------------------------------------------------------------------
# Public value types


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


@dataclass(frozen=True)
class Instruction:
    """One instruction-tuning sample; ``input`` is ``""`` when the record has none."""

    instruction: str
    input: str
    response: str


# --------------------------------------------------------------------------------------------
# Small helpers


def _natural_key(name: str) -> tuple[int, int, str]:
    """Sort key putting integer-looking names first, by value ("2" < "10"), then others by str."""
    if _INT_RE.fullmatch(name):
        return (0, int(name), name)
    return (1, 0, name)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _is_ignored(parts: _Parts) -> bool:
    """Hidden files/folders and macOS resource forks are never part of a dataset."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _split_relative(
    name: str, *, path: str, what: str, member: str | None = None, line: int | None = None
) -> _Parts:
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


def _check_samples(count: int, limits: ReadLimits, path: str) -> None:
    if count > limits.max_samples:
        raise LimitExceededError(f"more than {limits.max_samples} samples (max_samples)", path=path)


def _open_binary(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DatasetError(f"cannot open file: {_reason(exc)}", path=path) from exc


@contextlib.contextmanager
def _archive_errors(path: str, member: str | None = None) -> Iterator[None]:
    """Turn the stdlib's many archive exceptions into ``CorruptArchiveError``."""
    try:
        yield
    except ScoringError:
        raise
    except _ARCHIVE_ERRORS as exc:
        raise CorruptArchiveError(
            f"corrupt or truncated archive: {_reason(exc)}", path=path, member=member
        ) from exc


class _Budget:
    """Uncompressed bytes read from one archive during one pass, against ``max_total_bytes``."""

    def __init__(self, limits: ReadLimits, path: str) -> None:
        self.limits = limits
        self.path = path
        self.used = 0

    def take(self, nbytes: int, member: str) -> None:
        self.used += nbytes
        if self.used > self.limits.max_total_bytes:
            raise LimitExceededError(
                f"archive holds more than {self.limits.max_total_bytes} uncompressed bytes "
                "(max_total_bytes)",
                path=self.path,
                member=member,
            )


def _read_capped(f: IO[bytes], *, limits: ReadLimits, budget: _Budget, member: str) -> bytes:
    """Read a member to the end in chunks, counting real bytes (headers can lie)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limits.max_member_bytes:
            raise LimitExceededError(
                f"member is larger than {limits.max_member_bytes} bytes (max_member_bytes)",
                path=budget.path,
                member=member,
            )
        budget.take(len(chunk), member)
        chunks.append(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------------------------
# Image decoding


@cache
def _pil_formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in ("JPEG", "PNG", "WEBP", "BMP") if f in Image.OPEN)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert a loaded image of any mode to RGB (alpha or colour-key transparency on white)."""
    mode = im.mode
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        # Pillow's own conversion clips wide values to 255, which turns most 16-bit images white.
        arr = np.asarray(im)
        if mode.startswith("I;16") or (mode == "I" and arr.size and arr.max() > 255):
            arr = arr.astype(np.int64) >> 8
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2))
    return im.convert("RGB")


def _decode_image(
    fp: IO[bytes],
    *,
    limits: ReadLimits,
    path: str,
    member: str,
    line: int | None = None,
    convert: bool = True,
) -> Image.Image | None:
    """Decode one image fully; returns it as RGB, or ``None`` when ``convert`` is False.

    The pixel count is checked from the header before any pixel data is decoded.
    """
    try:
        # Make Pillow's own bomb warning an exception so it is reported like our own limit.
        # catch_warnings is process-global; if threads race here the worst outcome is that the
        # warning stays an error, which is the behaviour wanted anyway.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(fp, formats=list(_pil_formats()))
            width, height = im.size
            if width * height > limits.max_image_pixels:
                raise LimitExceededError(
                    f"image is {width}x{height}, more than {limits.max_image_pixels} pixels "
                    "(max_image_pixels)",
                    path=path,
                    member=member,
                    line=line,
                )
            im.load()
            if not convert:
                im.close()
                return None
            try:
                return _to_rgb(im)
            except (ValueError, OSError) as exc:
                raise CorruptImageError(
                    f"cannot convert image mode {im.mode} to RGB: {_reason(exc)}",
                    path=path,
                    member=member,
                    line=line,
                ) from exc
    except ScoringError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceededError(
            f"image is too large: {_reason(exc)}", path=path, member=member, line=line
        ) from exc
    except MemoryError as exc:
        raise LimitExceededError(
            "image is too large to decode", path=path, member=member, line=line
        ) from exc
    except Exception as exc:
        # Pillow plugins raise a wide, undocumented set of exceptions on malformed input
        # (OSError, SyntaxError, ValueError, struct.error, IndexError, ...).
        raise CorruptImageError(
            f"cannot decode image: {_reason(exc)}", path=path, member=member, line=line
        ) from exc


# --------------------------------------------------------------------------------------------
# Reader base classes


class Reader(ABC):
    """An indexed dataset: ids and labels in memory, payloads streamed on demand.

    Attributes:
        path: the path given to ``open_dataset`` (str).
        format: one of ``FORMATS``.
        kind: ``"image"``, ``"vector"``, ``"text"`` or ``"instruction"``.
        ids: unique sample ids (``list[str]``) in index order.
        labels: the label name of each sample (``list[str]``), or ``None`` when unlabelled.
        limits: the ``ReadLimits`` in force.
    """

    format: str = ""
    kind: str = ""

    def __init__(self, path: str, limits: ReadLimits) -> None:
        self.path = path
        self.limits = limits
        self.ids: list[str] = []
        self.labels: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.format} {self.path!r} n={len(self)}>"

    @property
    def classes(self) -> dict[str, int]:
        """Label name -> sample count, keys in natural order ("2" < "10"); ``{}`` if unlabelled."""
        if self.labels is None:
            return {}
        counts = Counter(self.labels)
        return {name: counts[name] for name in sorted(counts, key=_natural_key)}

    def summary(self) -> dict[str, Any]:
        """JSON-able ``{"format", "kind", "num_samples", "classes"}``."""
        return {
            "format": self.format,
            "kind": self.kind,
            "num_samples": len(self),
            "classes": self.classes,
        }

    @abstractmethod
    def iter_payloads(self) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, payload)`` for every sample, in index order, in one sequential pass."""

    def iter_range(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        """Payloads of samples ``start..stop-1`` (a shard), in index order. Formats with random
        access read only those; the others stream past the rest without decoding it."""
        for i, payload in self.iter_payloads():
            if i >= stop:
                break
            if i >= start:
                yield i, payload

    def verify(self) -> None:
        """Deep check of the data not already checked by the index; raises the first error."""
        return None

    @abstractmethod
    def source(self, i: int) -> str:
        """Where sample ``i`` came from (member name, relative path, ``line N``, ``row N``)."""

    def close(self) -> None:
        """Release open files; the dataset cannot stream payloads afterwards."""
        return None

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _ImageReader(Reader):
    """Base of the image formats: payloads are fully loaded RGB ``PIL.Image.Image`` objects."""

    kind = "image"

    def iter_payloads(self) -> Iterator[tuple[int, Any]]:
        yield from self._iter_images(convert=True)

    def iter_range(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        yield from self._iter_images(convert=True, rng=range(start, min(stop, len(self.ids))))

    def verify(self) -> None:
        """Decode every image fully (pixel limit included); raise for the first bad one."""
        for _ in self._iter_images(convert=False):
            pass

    @abstractmethod
    def _iter_images(
        self, convert: bool, rng: range | None = None
    ) -> Iterator[tuple[int, Image.Image | None]]:
        """Decode images in index order (those in ``rng`` only, when given); yield ``None``
        payloads when ``convert`` is False."""

    @abstractmethod
    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        """The stored bytes of each image (for exports), with the same size limits as decoding.

        ``keep``: the sample indices wanted (all when None). Yields ``(index, bytes)`` in index
        order, except for tar archives, which yield in the archive's own order (one pass).
        """


def _read_file_capped(full: str, *, limits: ReadLimits, path: str, member: str) -> bytes:
    try:
        with open(full, "rb") as f:
            if os.fstat(f.fileno()).st_size > limits.max_member_bytes:
                raise LimitExceededError(
                    f"image file is larger than {limits.max_member_bytes} bytes (max_member_bytes)",
                    path=path,
                    member=member,
                )
            return f.read()
    except OSError as exc:
        raise CorruptImageError(
            f"cannot read image: {_reason(exc)}", path=path, member=member
        ) from exc


def _resolve_layout(
    files: list[tuple[_Parts, _T]],
    dirs: Iterable[_Parts],
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
    _check_samples(len(files), limits, path)
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


# --------------------------------------------------------------------------------------------
# Folder


class FolderReader(_ImageReader):
    """A directory of class subfolders holding images.

    ``source(i)`` and error members are paths relative to the folder (before any top-folder
    stripping). Symbolic links are followed only when they stay inside the folder; a link that
    leads outside raises ``UnsafePathError``. Linked folders already visited are skipped, which
    also breaks link cycles. Folder entries count against ``max_members``.
    """

    format = "folder"

    def __init__(self, path: str, limits: ReadLimits) -> None:
        super().__init__(path, limits)
        if not os.path.isdir(path):
            raise DatasetError("not a directory", path=path)
        self._root = os.path.realpath(path)
        files, dirs = self._walk()
        self.ids, self.labels, self._rel = _resolve_layout(
            files, dirs, path=path, limits=limits, describe=lambda rel: rel
        )

    def _walk(self) -> tuple[list[tuple[_Parts, str]], set[_Parts]]:
        files: list[tuple[_Parts, str]] = []
        dirs: set[_Parts] = set()
        visited = {self._root}
        stack: list[tuple[str, _Parts]] = [(self._root, ())]
        count = 0
        while stack:
            directory, rel = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                raise DatasetError(
                    f"cannot list folder: {_reason(exc)}", path=self.path, member="/".join(rel)
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
                        f"cannot stat entry: {_reason(exc)}", path=self.path, member=rel_name
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
                if (is_file or dangling) and _is_image_name(entry.name):
                    files.append((parts, rel_name))
        return files, dirs

    def source(self, i: int) -> str:
        return self._rel[i]

    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        for i in sorted(keep) if keep is not None else range(len(self._rel)):
            rel = self._rel[i]
            full = os.path.join(self.path, *rel.split("/"))
            yield i, _read_file_capped(full, limits=self.limits, path=self.path, member=rel)

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
                    f"cannot read image: {_reason(exc)}", path=self.path, member=rel
                ) from exc
            try:
                if os.fstat(f.fileno()).st_size > self.limits.max_member_bytes:
                    raise LimitExceededError(
                        f"image file is larger than {self.limits.max_member_bytes} bytes "
                        "(max_member_bytes)",
                        path=self.path,
                        member=rel,
                    )
                im = _decode_image(
                    f, limits=self.limits, path=self.path, member=rel, convert=convert
                )
            finally:
                f.close()
            yield i, im


# --------------------------------------------------------------------------------------------
# Zip and tar


def _check_archive_file(
    name: str, parts: _Parts, *, path: str, limits: ReadLimits, size: int
) -> None:
    """Checks shared by zip and tar for one regular-file member (header size, nesting)."""
    if size > limits.max_member_bytes:
        raise LimitExceededError(
            f"member is larger than {limits.max_member_bytes} bytes (max_member_bytes)",
            path=path,
            member=name,
        )
    if parts and not _is_ignored(parts) and parts[-1].lower().endswith(_NESTED_ARCHIVE_SUFFIXES):
        raise UnknownFormatError("nested archives are not supported", path=path, member=name)


class ZipReader(_ImageReader):
    """A zip archive with the same class-folder layout as ``folder``.

    Members are read by random access in index (sorted id) order. ``source(i)`` is the member
    name. Every member is checked at open: unsafe names, symlinks and special files, nested
    archives, declared sizes and compression ratio; sizes are counted again while reading.
    """

    format = "zip"

    def __init__(self, path: str, limits: ReadLimits) -> None:
        super().__init__(path, limits)
        with _archive_errors(path):
            self._zf: zipfile.ZipFile | None = zipfile.ZipFile(path)
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
        budget = _Budget(limits, self.path)
        files: list[tuple[_Parts, zipfile.ZipInfo]] = []
        dirs: set[_Parts] = set()
        seen: set[_Parts] = set()
        for info in infos:
            name = info.filename
            parts = _split_relative(name, path=self.path, what="member name")
            ftype = stat.S_IFMT(info.external_attr >> 16)
            if ftype == stat.S_IFLNK:
                raise UnsafePathError("symbolic links are not allowed", path=self.path, member=name)
            if ftype in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
                raise UnsafePathError("special files are not allowed", path=self.path, member=name)
            if info.is_dir():
                if parts and not _is_ignored(parts):
                    dirs.add(parts)
                continue
            if info.file_size > _RATIO_MIN_BYTES:
                ratio = info.file_size / info.compress_size if info.compress_size else math.inf
                if ratio > limits.max_compression_ratio:
                    raise LimitExceededError(
                        f"member compression ratio {ratio:.0f} is above "
                        f"{limits.max_compression_ratio:g} (max_compression_ratio)",
                        path=self.path,
                        member=name,
                    )
            _check_archive_file(name, parts, path=self.path, limits=limits, size=info.file_size)
            budget.take(info.file_size, name)
            if not parts or _is_ignored(parts):
                continue
            if parts in seen:
                raise InvalidRecordError("duplicate member", path=self.path, member=name)
            seen.add(parts)
            if len(parts) > 1:
                dirs.add(parts[:-1])
            if _is_image_name(parts[-1]):
                if info.flag_bits & 0x1:
                    raise DatasetError(
                        "encrypted members are not supported", path=self.path, member=name
                    )
                files.append((parts, info))
        self.ids, self.labels, self._infos = _resolve_layout(
            files, dirs, path=self.path, limits=limits, describe=lambda info: info.filename
        )

    def source(self, i: int) -> str:
        return self._infos[i].filename

    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        if self._zf is None:
            raise DatasetError("dataset is closed", path=self.path)
        budget = _Budget(self.limits, self.path)
        for i in sorted(keep) if keep is not None else range(len(self._infos)):
            info = self._infos[i]
            with _archive_errors(self.path, info.filename), self._zf.open(info) as f:
                yield i, _read_capped(f, limits=self.limits, budget=budget, member=info.filename)

    def _iter_images(
        self, convert: bool, rng: range | None = None
    ) -> Iterator[tuple[int, Image.Image | None]]:
        if self._zf is None:
            raise DatasetError("dataset is closed", path=self.path)
        zf = self._zf
        budget = _Budget(self.limits, self.path)
        for i in rng if rng is not None else range(len(self._infos)):
            info = self._infos[i]
            with _archive_errors(self.path, info.filename), zf.open(info) as f:
                data = _read_capped(f, limits=self.limits, budget=budget, member=info.filename)
            im = _decode_image(
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


def _open_tar(path: str) -> tuple[tarfile.TarFile, bool]:
    """Open a tar archive for reading, choosing the compression from its magic bytes.

    Returns the archive and whether it is uncompressed (only then is the end-of-archive check
    cheap; a truncated compressed stream is caught by the decompressor instead).
    """
    with _open_binary(path) as f:
        magic = f.read(6)
    if magic.startswith(b"\x1f\x8b"):
        mode = "r:gz"
    elif magic.startswith(b"BZh"):
        mode = "r:bz2"
    elif magic.startswith(b"\xfd7zXZ\x00"):
        mode = "r:xz"
    else:
        mode = "r:"
    return tarfile.open(path, mode), mode == "r:"  # type: ignore[call-overload]


def _next_member(tf: tarfile.TarFile) -> tarfile.TarInfo | None:
    info = tf.next()
    # TarFile remembers every header it has read; we keep only what we need, so drop them.
    tf.members.clear()
    return info


class TarReader(_ImageReader):
    """A tar archive (plain, gzip, bzip2 or xz) with the same layout as ``folder``.

    The index pass reads member headers only. The dataset order is the sorted ids, like the other
    image formats, but a tar can only be read front to back, so ``iter_payloads`` reads the
    archive sequentially and keeps the raw bytes (not decoded images) of members that arrive
    before their turn in a buffer until they are due. A tar made from a folder lists members
    nearly sorted, so the buffer stays small. ``source(i)`` is the member name.
    """

    format = "tar"

    def __init__(self, path: str, limits: ReadLimits) -> None:
        super().__init__(path, limits)
        files: list[tuple[_Parts, str]] = []
        dirs: set[_Parts] = set()
        with _archive_errors(path):
            tf, plain = _open_tar(path)
            try:
                self._index(tf, files, dirs)
                if plain:
                    self._check_end(tf)
            finally:
                tf.close()
        self.ids, self.labels, self._names = _resolve_layout(
            files, dirs, path=path, limits=limits, describe=lambda name: name
        )

    def _index(
        self, tf: tarfile.TarFile, files: list[tuple[_Parts, str]], dirs: set[_Parts]
    ) -> None:
        limits = self.limits
        budget = _Budget(limits, self.path)
        seen: set[_Parts] = set()
        count = 0
        while (info := _next_member(tf)) is not None:
            count += 1
            if count > limits.max_members:
                raise LimitExceededError(
                    f"archive has more than {limits.max_members} members (max_members)",
                    path=self.path,
                )
            name = info.name
            parts = _split_relative(name, path=self.path, what="member name")
            if info.issym() or info.islnk():
                raise UnsafePathError("links are not allowed", path=self.path, member=name)
            if info.isdir():
                if parts and not _is_ignored(parts):
                    dirs.add(parts)
                continue
            if not info.isreg():
                raise UnsafePathError(
                    "special files (devices, fifos) are not allowed", path=self.path, member=name
                )
            _check_archive_file(name, parts, path=self.path, limits=limits, size=info.size)
            # Skipping a member still decompresses it, so its declared size is real work.
            budget.take(info.size, name)
            if not parts or _is_ignored(parts):
                continue
            if parts in seen:
                raise InvalidRecordError("duplicate member", path=self.path, member=name)
            seen.add(parts)
            if len(parts) > 1:
                dirs.add(parts[:-1])
            if _is_image_name(parts[-1]):
                files.append((parts, name))

    def _check_end(self, tf: tarfile.TarFile) -> None:
        # tarfile silently treats a truncated or garbled header as the end of the archive;
        # a complete archive has a zero block there.
        tf.fileobj.seek(tf.offset)  # type: ignore[union-attr]
        block = tf.fileobj.read(tarfile.BLOCKSIZE)  # type: ignore[union-attr]
        if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
            raise CorruptArchiveError(
                "archive is truncated or has a corrupt member header", path=self.path
            )

    def source(self, i: int) -> str:
        return self._names[i]

    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        wanted = {name: i for i, name in enumerate(self._names)}
        chosen = set(keep) if keep is not None else set(range(len(self._names)))
        budget = _Budget(self.limits, self.path)
        with _archive_errors(self.path):
            tf, _ = _open_tar(self.path)
        try:
            while chosen:
                with _archive_errors(self.path):
                    info = _next_member(tf)
                if info is None:
                    break
                index = wanted.get(info.name)
                if index is None or index not in chosen or not info.isreg():
                    continue
                with _archive_errors(self.path, info.name):
                    f = tf.extractfile(info)
                    assert f is not None
                    with f:
                        data = _read_capped(f, limits=self.limits, budget=budget, member=info.name)
                chosen.discard(index)
                yield index, data
        finally:
            tf.close()
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
        budget = _Budget(self.limits, self.path)
        with _archive_errors(self.path):
            tf, _ = _open_tar(self.path)
        try:
            while due < rng.stop:
                with _archive_errors(self.path):
                    info = _next_member(tf)
                if info is None:
                    break
                index = wanted.get(info.name)
                if index is None or index < due or not info.isreg():
                    continue
                with _archive_errors(self.path, info.name):
                    f = tf.extractfile(info)
                    assert f is not None  # regular files always have a reader
                    with f:
                        data = _read_capped(f, limits=self.limits, budget=budget, member=info.name)
                pending[index] = data
                while due in pending:
                    raw = pending.pop(due)
                    member = self._names[due]
                    im = _decode_image(
                        io.BytesIO(raw),
                        limits=self.limits,
                        path=self.path,
                        member=member,
                        convert=convert,
                    )
                    yield due, im
                    due += 1
        finally:
            tf.close()
        if due < rng.stop:
            raise CorruptArchiveError(
                "member listed at open is missing (was the archive changed?)",
                path=self.path,
                member=self._names[due],
            )


# --------------------------------------------------------------------------------------------
# Line-based files (JSONL, CSV)


def _iter_lines(f: BinaryIO, *, limits: ReadLimits, path: str) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(line_number, start_offset, raw_line)``; ``raw_line`` keeps its newline.

    The file is read line by line, never whole. A line longer than ``max_line_bytes`` (line
    terminator excluded) raises ``InvalidRecordError`` without reading the rest of it.
    """
    offset = 0
    number = 0
    while True:
        try:
            raw = f.readline(limits.max_line_bytes + 2)
        except OSError as exc:
            raise DatasetError(
                f"cannot read file: {_reason(exc)}", path=path, line=number + 1
            ) from exc
        if not raw:
            return
        number += 1
        content = len(raw) - 1 if raw.endswith(b"\n") else len(raw)
        if content > limits.max_line_bytes:
            raise InvalidRecordError(
                f"line is longer than {limits.max_line_bytes} bytes (max_line_bytes)",
                path=path,
                line=number,
            )
        yield number, offset, raw
        offset += len(raw)


def _parse_json_line(body: bytes, *, path: str, line: int) -> dict[str, Any]:
    """Parse one JSONL line (bytes, BOM already removed) into an object."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecordError(
            f"invalid UTF-8 at byte {exc.start} of the line", path=path, line=line
        ) from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRecordError(
            f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=line
        ) from exc
    except RecursionError as exc:
        raise InvalidRecordError("JSON is nested too deeply", path=path, line=line) from exc
    if not isinstance(obj, dict):
        raise InvalidRecordError(
            f"expected a JSON object, got {_json_type(obj)}", path=path, line=line
        )
    return obj


def _iter_jsonl(
    f: BinaryIO, *, limits: ReadLimits, path: str
) -> Iterator[tuple[int, int, int, dict[str, Any]]]:
    """Yield ``(line, start, end, object)`` for each non-blank line.

    ``[start, end)`` are the byte offsets of the line including its newline; a UTF-8 BOM at the
    start of the file is left outside the first span so exported lines never carry it.
    """
    for number, offset, raw in _iter_lines(f, limits=limits, path=path):
        body, start = raw, offset
        if number == 1 and raw.startswith(_UTF8_BOM):
            body = raw[len(_UTF8_BOM) :]
            start += len(_UTF8_BOM)
        if not body.strip():
            continue
        yield number, start, start + len(body), _parse_json_line(body, path=path, line=number)


def _label_value(value: Any, *, path: str, line: int, field: str = "label") -> str:
    """A label from a record: str as is, int as ``str(int)``; anything else is invalid."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecordError(
            f"field '{field}' must be a string or an integer, got {_json_type(value)}",
            path=path,
            line=line,
        )
    if isinstance(value, int):
        return str(value)
    if not value.strip():
        raise MissingFieldError(f"field '{field}' is empty", path=path, line=line)
    return value


def _id_value(value: Any, *, path: str, line: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecordError(
            f"field 'id' must be a string or an integer, got {_json_type(value)}",
            path=path,
            line=line,
        )
    text = str(value)
    if not text:
        raise InvalidRecordError("field 'id' is empty", path=path, line=line)
    return text


def _str_field(obj: dict[str, Any], key: str, *, required: bool, path: str, line: int) -> str:
    """A string field; an absent or null optional field is ``""``."""
    if key not in obj or (obj[key] is None and not required):
        if required:
            raise MissingFieldError(f"missing field '{key}'", path=path, line=line)
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise InvalidRecordError(
            f"field '{key}' must be a string, got {_json_type(value)}", path=path, line=line
        )
    return value


def _spans_array(starts: array[int], ends: array[int]) -> np.ndarray:
    spans = np.empty((len(starts), 2), dtype=np.int64)
    if len(starts):
        spans[:, 0] = np.frombuffer(starts, dtype=np.int64)
        spans[:, 1] = np.frombuffer(ends, dtype=np.int64)
    return spans


def _read_span(f: BinaryIO, start: int, end: int, *, path: str, line: int) -> bytes:
    """Re-read one indexed line; a short read means the file changed after it was opened."""
    try:
        if f.tell() != start:
            f.seek(start)
        body = f.read(end - start)
    except OSError as exc:
        raise DatasetError(f"cannot read file: {_reason(exc)}", path=path, line=line) from exc
    if len(body) != end - start:
        raise InvalidRecordError("file changed since it was opened", path=path, line=line)
    return body


class _IdRegistry:
    """Assigns sample ids: the record's own ``id`` when given, else the sample's row number."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ids: list[str] = []
        self._seen: set[str] = set()

    def add(self, explicit: str | None, line: int) -> None:
        sample_id = str(len(self.ids)) if explicit is None else explicit
        if sample_id in self._seen:
            raise InvalidRecordError(f"duplicate id {sample_id!r}", path=self.path, line=line)
        self._seen.add(sample_id)
        self.ids.append(sample_id)


class JsonlReader(Reader):
    """Base of the JSONL sample formats (``text``, ``alpaca``, ``dolly``, ``sharegpt``).

    The index pass validates every line and keeps only ids, labels, line numbers and byte
    ``spans`` (int64 ``(N, 2)``, ``[start, end)`` including the newline); ``iter_payloads``
    re-reads each span. Blank lines are not samples but still count as physical lines. An
    optional ``id`` field (string or integer) gives the sample id, else the 0-based sample number.
    ``source(i)`` is ``"line N"``.
    """

    labelled = False

    def __init__(self, path: str, limits: ReadLimits) -> None:
        super().__init__(path, limits)
        registry = _IdRegistry(path)
        labels: list[str] = []
        starts: array[int] = array("q")
        ends: array[int] = array("q")
        self._lines: array[int] = array("q")
        with _open_binary(path) as f:
            for line, start, end, obj in _iter_jsonl(f, limits=limits, path=path):
                label, _ = self._extract(obj, line)
                registry.add(
                    _id_value(obj["id"], path=path, line=line) if "id" in obj else None, line
                )
                if label is not None:
                    labels.append(label)
                starts.append(start)
                ends.append(end)
                self._lines.append(line)
                _check_samples(len(registry.ids), limits, path)
        if not registry.ids:
            raise EmptyDatasetError("file has no samples", path=path)
        self.ids = registry.ids
        self.labels = labels if self.labelled else None
        self.spans = _spans_array(starts, ends)

    @abstractmethod
    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        """Validate one record; return ``(label or None, payload)``."""

    def source(self, i: int) -> str:
        return f"line {self._lines[i]}"

    def iter_payloads(self) -> Iterator[tuple[int, Any]]:
        yield from self.iter_range(0, len(self.ids))

    def iter_range(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        with _open_binary(self.path) as f:
            for i in range(start, min(stop, len(self.ids))):
                line = self._lines[i]
                start, end = int(self.spans[i, 0]), int(self.spans[i, 1])
                body = _read_span(f, start, end, path=self.path, line=line)
                obj = _parse_json_line(body, path=self.path, line=line)
                yield i, self._extract(obj, line)[1]


class TextReader(JsonlReader):
    """JSONL of ``{"text": str, "label": str | int}``; payloads are ``str``."""

    format = "text"
    kind = "text"
    labelled = True

    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        text = _str_field(obj, "text", required=True, path=self.path, line=line)
        if "label" not in obj:
            raise MissingFieldError("missing field 'label'", path=self.path, line=line)
        return _label_value(obj["label"], path=self.path, line=line), text


class AlpacaReader(JsonlReader):
    """JSONL of ``{"instruction", "input"?, "output"}``; payloads are ``Instruction``."""

    format = "alpaca"
    kind = "instruction"

    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        p, n = self.path, line
        return None, Instruction(
            instruction=_str_field(obj, "instruction", required=True, path=p, line=n),
            input=_str_field(obj, "input", required=False, path=p, line=n),
            response=_str_field(obj, "output", required=True, path=p, line=n),
        )


class DollyReader(JsonlReader):
    """JSONL of ``{"instruction", "context"?, "response"}``; ``context`` becomes ``input``."""

    format = "dolly"
    kind = "instruction"

    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        p, n = self.path, line
        return None, Instruction(
            instruction=_str_field(obj, "instruction", required=True, path=p, line=n),
            input=_str_field(obj, "context", required=False, path=p, line=n),
            response=_str_field(obj, "response", required=True, path=p, line=n),
        )


class ShareGptReader(JsonlReader):
    """JSONL of ``{"conversations": [{"from": role, "value": str}, ...]}``.

    The FIRST ``human``/``user`` turn is the instruction and the FIRST ``gpt``/``assistant``
    (also ``chatgpt``, ``model``) turn after it is the response; ``input`` is always ``""``.
    System turns and any other role (tools, functions) are ignored, so a system prompt is not
    part of the sample. Turns written as ``{"role", "content"}`` are accepted too. Turns after
    the pair are not inspected.
    """

    format = "sharegpt"
    kind = "instruction"

    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        p = self.path
        if "conversations" not in obj:
            raise MissingFieldError("missing field 'conversations'", path=p, line=line)
        turns = obj["conversations"]
        if not isinstance(turns, list):
            raise InvalidRecordError(
                f"field 'conversations' must be an array, got {_json_type(turns)}",
                path=p,
                line=line,
            )
        instruction: str | None = None
        for j, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise InvalidRecordError(
                    f"conversations[{j}] must be an object, got {_json_type(turn)}",
                    path=p,
                    line=line,
                )
            role = turn.get("from", turn.get("role"))
            value = turn.get("value", turn.get("content"))
            if role is None or value is None:
                raise MissingFieldError(
                    f"conversations[{j}] needs 'from' and 'value'", path=p, line=line
                )
            if not isinstance(role, str) or not isinstance(value, str):
                raise InvalidRecordError(
                    f"conversations[{j}] 'from' and 'value' must be strings", path=p, line=line
                )
            role = role.lower()
            if instruction is None:
                if role in _USER_ROLES:
                    instruction = value
            elif role in _ASSISTANT_ROLES:
                return None, Instruction(instruction=instruction, input="", response=value)
        if instruction is None:
            raise MissingFieldError("no human/user turn in 'conversations'", path=p, line=line)
        raise MissingFieldError(
            "no gpt/assistant turn after the first human/user turn", path=p, line=line
        )


# --------------------------------------------------------------------------------------------
# Manifest


class ManifestReader(_ImageReader):
    """A CSV (with header) or JSONL file listing images and labels.

    Path column/field: ``path`` (or ``image``, ``file``, ``filename``); label: ``label`` (or
    ``class``); optional ``id`` (else the path as written, normalised). CSV header names are
    matched case-insensitively and CSV values are stripped of surrounding spaces; the delimiter
    is a comma. Paths are relative to the manifest's folder: absolute paths, ``..`` components
    and links leading outside that folder raise ``UnsafePathError``. Every image must exist at
    open time. ``spans`` gives each row's bytes (``[start, end)``, newline included) for JSONL
    and also for CSV (header excluded). ``source(i)`` is the image path as listed.
    """

    format = "manifest"

    def __init__(self, path: str, limits: ReadLimits) -> None:
        super().__init__(path, limits)
        self._dir = os.path.dirname(os.path.abspath(path))
        self._dir_real = os.path.realpath(self._dir)
        self._registry = _IdRegistry(path)
        self._rel: list[str] = []
        self._lines: array[int] = array("q")
        self._starts: array[int] = array("q")
        self._ends: array[int] = array("q")
        self.labels = []
        if self._is_jsonl():
            self._index_jsonl()
        else:
            self._index_csv()
        if not self._rel:
            raise EmptyDatasetError("manifest lists no images", path=path)
        self.ids = self._registry.ids
        self.spans = _spans_array(self._starts, self._ends)
        del self._starts, self._ends, self._registry

    def _is_jsonl(self) -> bool:
        lower = self.path.lower()
        if lower.endswith(".csv"):
            return False
        if lower.endswith(_JSONL_SUFFIXES):
            return True
        with _open_binary(self.path) as f:
            for _, _, raw in _iter_lines(f, limits=self.limits, path=self.path):
                body = raw.removeprefix(_UTF8_BOM).strip()
                if body:
                    return body.startswith(b"{")
        return False

    def _add(
        self, raw_path: str, label: str, sample_id: str | None, line: int, start: int, end: int
    ) -> None:
        p = self.path
        if not raw_path.strip():
            raise MissingFieldError("empty image path", path=p, line=line)
        parts = _split_relative(raw_path, path=p, what="image path", line=line)
        if not parts:
            raise MissingFieldError("empty image path", path=p, line=line)
        rel = "/".join(parts)
        full = os.path.join(self._dir, *parts)
        real = os.path.realpath(full)
        if os.path.commonpath([self._dir_real, real]) != self._dir_real:
            raise UnsafePathError(
                "image path leads outside the manifest's folder", path=p, line=line, member=rel
            )
        if not os.path.isfile(full):
            raise DatasetError("image file does not exist", path=p, line=line, member=rel)
        self._registry.add(rel if sample_id is None else sample_id, line)
        assert self.labels is not None
        self.labels.append(label)
        self._rel.append(rel)
        self._lines.append(line)
        self._starts.append(start)
        self._ends.append(end)
        _check_samples(len(self._rel), self.limits, p)

    def _index_jsonl(self) -> None:
        p = self.path
        with _open_binary(p) as f:
            for line, start, end, obj in _iter_jsonl(f, limits=self.limits, path=p):
                path_key = next((k for k in _MANIFEST_PATH_KEYS if k in obj), None)
                if path_key is None:
                    raise MissingFieldError(
                        "missing image path field ('path', 'image', 'file' or 'filename')",
                        path=p,
                        line=line,
                    )
                raw_path = obj[path_key]
                if not isinstance(raw_path, str):
                    raise InvalidRecordError(
                        f"field '{path_key}' must be a string, got {_json_type(raw_path)}",
                        path=p,
                        line=line,
                    )
                label_key = next((k for k in _MANIFEST_LABEL_KEYS if k in obj), None)
                if label_key is None:
                    raise MissingFieldError(
                        "missing label field ('label' or 'class')", path=p, line=line
                    )
                label = _label_value(obj[label_key], path=p, line=line, field=label_key)
                sample_id = _id_value(obj["id"], path=p, line=line) if "id" in obj else None
                self._add(raw_path, label, sample_id, line, start, end)

    def _index_csv(self) -> None:
        p = self.path
        # Where the csv reader stands, updated as it pulls lines, so records can be located.
        state = {"line": 0, "end": 0}

        def lines(f: BinaryIO) -> Iterator[str]:
            for number, start, raw in _iter_lines(f, limits=self.limits, path=p):
                body = raw
                if number == 1 and raw.startswith(_UTF8_BOM):
                    body = raw[len(_UTF8_BOM) :]
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InvalidRecordError(
                        f"invalid UTF-8 at byte {exc.start} of the line", path=p, line=number
                    ) from exc
                state["line"], state["end"] = number, start + len(raw)
                yield text

        with _open_binary(p) as f:
            reader = csv.reader(lines(f), strict=True)
            header: list[str] | None = None
            columns: dict[str, int] = {}
            while True:
                first_line, start = state["line"] + 1, state["end"]
                try:
                    row = next(reader, None)
                except csv.Error as exc:
                    raise InvalidRecordError(
                        f"invalid CSV: {_reason(exc)}", path=p, line=state["line"]
                    ) from exc
                if row is None:
                    break
                cells = [c.strip() for c in row]
                if not any(cells):
                    continue
                if header is None:
                    header = cells
                    columns = self._csv_columns(header, first_line)
                    continue
                if len(cells) > len(header):
                    raise InvalidRecordError(
                        f"row has {len(cells)} fields but the header has {len(header)}",
                        path=p,
                        line=first_line,
                    )
                cells += [""] * (len(header) - len(cells))
                label = cells[columns["label"]]
                if not label:
                    raise MissingFieldError("empty label", path=p, line=first_line)
                sample_id: str | None = None
                if "id" in columns:
                    sample_id = cells[columns["id"]]
                    if not sample_id:
                        raise InvalidRecordError("empty id", path=p, line=first_line)
                self._add(cells[columns["path"]], label, sample_id, first_line, start, state["end"])

    def _csv_columns(self, header: list[str], line: int) -> dict[str, int]:
        names = [h.lower() for h in header]
        columns: dict[str, int] = {}
        for role, keys in (("path", _MANIFEST_PATH_KEYS), ("label", _MANIFEST_LABEL_KEYS)):
            found = next((k for k in keys if k in names), None)
            if found is None:
                raise MissingFieldError(
                    f"header has no {role} column ({', '.join(keys)})", path=self.path, line=line
                )
            columns[role] = names.index(found)
        if "id" in names:
            columns["id"] = names.index("id")
        return columns

    def source(self, i: int) -> str:
        return self._rel[i]

    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        for i in sorted(keep) if keep is not None else range(len(self._rel)):
            rel = self._rel[i]
            full = os.path.join(self._dir, *rel.split("/"))
            yield i, _read_file_capped(full, limits=self.limits, path=self.path, member=rel)

    def _iter_images(
        self, convert: bool, rng: range | None = None
    ) -> Iterator[tuple[int, Image.Image | None]]:
        for i in rng if rng is not None else range(len(self._rel)):
            rel = self._rel[i]
            line = self._lines[i]
            full = os.path.join(self._dir, *rel.split("/"))
            try:
                f = open(full, "rb")  # noqa: SIM115 - closed in the finally below
            except OSError as exc:
                raise CorruptImageError(
                    f"cannot read image: {_reason(exc)}", path=self.path, member=rel, line=line
                ) from exc
            try:
                if os.fstat(f.fileno()).st_size > self.limits.max_member_bytes:
                    raise LimitExceededError(
                        f"image file is larger than {self.limits.max_member_bytes} bytes "
                        "(max_member_bytes)",
                        path=self.path,
                        member=rel,
                        line=line,
                    )
                im = _decode_image(
                    f, limits=self.limits, path=self.path, member=rel, line=line, convert=convert
                )
            finally:
                f.close()
            yield i, im


# --------------------------------------------------------------------------------------------
# npz


@dataclass(frozen=True)
class _NpyHeader:
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype[Any]
    header_len: int  # bytes before the data inside the member

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _read_npy_header(f: IO[bytes], *, path: str, member: str) -> _NpyHeader:
    """Parse a .npy header from an open member stream, refusing object and structured dtypes."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise CorruptArchiveError(
                f"unsupported .npy format version {version}", path=path, member=member
            )
        header_len = f.tell()
    except ScoringError:
        raise
    except (*_ARCHIVE_ERRORS, SyntaxError, TypeError) as exc:
        raise CorruptArchiveError(
            f"not a valid .npy array: {_reason(exc)}", path=path, member=member
        ) from exc
    if dtype.hasobject:
        raise InvalidRecordError(
            "array has an object dtype; pickled arrays are not allowed", path=path, member=member
        )
    if dtype.names is not None or dtype.subdtype is not None:
        raise InvalidRecordError(f"array has a structured dtype {dtype}", path=path, member=member)
    if any(d < 0 for d in shape):
        raise CorruptArchiveError("array header has a negative dimension", path=path, member=member)
    return _NpyHeader(tuple(int(d) for d in shape), bool(fortran), dtype, int(header_len))


def _read_exact(f: IO[bytes], nbytes: int, *, path: str, member: str) -> bytearray:
    """Read exactly ``nbytes`` into a writable buffer; a short read means truncation."""
    buf = bytearray(nbytes)
    view = memoryview(buf)
    got = 0
    while got < nbytes:
        chunk = f.read(min(_CHUNK * 4, nbytes - got))
        if not chunk:
            raise CorruptArchiveError("array data is truncated", path=path, member=member)
        view[got : got + len(chunk)] = chunk
        got += len(chunk)
    return buf


def _zip_data_offset(path: str, info: zipfile.ZipInfo) -> int:
    """File offset of a member's data: its local header's offset plus that header's length."""
    with _open_binary(path) as f:
        f.seek(info.header_offset)
        local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise CorruptArchiveError("bad local file header", path=path, member=info.filename)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


class NpzReader(Reader):
    """A NumPy ``.npz`` with ``x`` and optional ``y`` (labels) and ``id``/``ids``.

    ``x`` of 2 dimensions gives ``vector`` payloads (float32 ``(D,)``); 3 (``N,H,W`` gray) or 4
    (``N,H,W,C`` with C in 1, 3, 4 — alpha dropped) give RGB ``image`` payloads. uint8 pixels are
    used as is; for float pixels each SAMPLE whose values all lie in [0, 1] is scaled by 255,
    otherwise values are clipped to [0, 255] (NaN becomes 0); other integer types are clipped to
    [0, 255] and bool becomes 0/255. ``y`` may hold integers (or integral floats) or strings.

    ``x`` is never loaded whole: its header is read first (shape, dtype and declared size are
    checked against ``max_array_bytes``), then a stored (uncompressed) member is memory-mapped
    and a compressed one is streamed row by row. ``read_rows`` continues a compressed stream when
    calls move forward and restarts it otherwise. A compressed Fortran-order ``x`` cannot be
    streamed by rows and is decompressed whole (it is still bounded by ``max_array_bytes``).
    ``source(i)`` is ``"row i"``.
    """

    format = "npz"

    def __init__(self, path: str, limits: ReadLimits) -> None:
        super().__init__(path, limits)
        with _archive_errors(path):
            self._zf: zipfile.ZipFile | None = zipfile.ZipFile(path)
        self._mm: np.ndarray | None = None
        # Uncompressed, C-order x: read with pread at known offsets. (A memory map would keep
        # every page it touched resident, counting the whole array against the process.)
        self._fd: int | None = None
        self._data_offset = 0
        self._full: np.ndarray | None = None
        self._stream: IO[bytes] | None = None
        self._stream_row = 0
        try:
            self._index()
        except BaseException:
            self.close()
            raise

    def _member(self, name: str) -> zipfile.ZipInfo | None:
        assert self._zf is not None
        for candidate in (f"{name}.npy", name):
            try:
                return self._zf.getinfo(candidate)
            except KeyError:
                continue
        return None

    def _index(self) -> None:
        assert self._zf is not None
        p, limits = self.path, self.limits
        xinfo = self._member("x")
        if xinfo is None:
            raise MissingFieldError("npz has no array 'x'", path=p)
        if xinfo.flag_bits & 0x1:
            raise DatasetError("encrypted members are not supported", path=p, member=xinfo.filename)
        with _archive_errors(p, xinfo.filename), self._zf.open(xinfo) as f:
            hdr = _read_npy_header(f, path=p, member=xinfo.filename)
        if hdr.nbytes > limits.max_array_bytes:
            raise LimitExceededError(
                f"array 'x' declares {hdr.nbytes} bytes, more than {limits.max_array_bytes} "
                "(max_array_bytes)",
                path=p,
                member=xinfo.filename,
            )
        self._check_x(hdr, xinfo.filename)
        self._xinfo, self._x = xinfo, hdr
        n = hdr.shape[0]
        self._row_shape = hdr.shape[1:]
        self._row_bytes = math.prod(self._row_shape) * hdr.dtype.itemsize

        yinfo = self._member("y")
        if yinfo is not None:
            y = self._load_small(yinfo, "y", n)
            self.labels = self._labels_from(y, yinfo.filename)
        id_info = self._member("id") or self._member("ids")
        if id_info is not None:
            raw_ids = self._load_small(id_info, id_info.filename.removesuffix(".npy"), n)
            self.ids = self._ids_from(raw_ids, id_info.filename)
        else:
            self.ids = [str(i) for i in range(n)]

        if xinfo.compress_type == zipfile.ZIP_STORED:
            offset = _zip_data_offset(p, xinfo) + hdr.header_len
            if os.path.getsize(p) < offset + hdr.nbytes:
                raise CorruptArchiveError("array data is truncated", path=p, member=xinfo.filename)
            try:
                if hdr.fortran:
                    self._mm = np.memmap(
                        p, dtype=hdr.dtype, mode="r", offset=offset, shape=hdr.shape, order="F"
                    )
                else:
                    self._fd = os.open(p, os.O_RDONLY)
                    self._data_offset = offset
            except (OSError, ValueError) as exc:
                raise CorruptArchiveError(
                    f"cannot map array 'x': {_reason(exc)}", path=p, member=xinfo.filename
                ) from exc

    def _check_x(self, hdr: _NpyHeader, member: str) -> None:
        p = self.path
        if hdr.dtype.kind not in "biuf":
            raise InvalidRecordError(
                f"array 'x' must be numeric (bool, int, uint or float), got {hdr.dtype}",
                path=p,
                member=member,
            )
        if len(hdr.shape) not in (2, 3, 4):
            raise InvalidRecordError(
                f"array 'x' has shape {hdr.shape}; expected (N, D) vectors or (N, H, W[, C]) "
                "images",
                path=p,
                member=member,
            )
        if hdr.shape[0] == 0:
            raise EmptyDatasetError("array 'x' has no rows", path=p)
        _check_samples(hdr.shape[0], self.limits, p)
        if math.prod(hdr.shape[1:]) == 0:
            raise InvalidRecordError(f"array 'x' has empty rows {hdr.shape}", path=p, member=member)
        if len(hdr.shape) == 2:
            self.kind = "vector"
            return
        self.kind = "image"
        if len(hdr.shape) == 4 and hdr.shape[3] not in (1, 3, 4):
            raise InvalidRecordError(
                f"image array 'x' has {hdr.shape[3]} channels; expected 1, 3 or 4",
                path=p,
                member=member,
            )
        height, width = hdr.shape[1], hdr.shape[2]
        if height * width > self.limits.max_image_pixels:
            raise LimitExceededError(
                f"images are {width}x{height}, more than {self.limits.max_image_pixels} pixels "
                "(max_image_pixels)",
                path=p,
                member=member,
            )

    def _load_small(self, info: zipfile.ZipInfo, name: str, n: int) -> np.ndarray:
        """Load a whole side array (``y``, ``id``) after checking its header."""
        assert self._zf is not None
        p = self.path
        with _archive_errors(p, info.filename), self._zf.open(info) as f:
            hdr = _read_npy_header(f, path=p, member=info.filename)
            if hdr.nbytes > self.limits.max_array_bytes:
                raise LimitExceededError(
                    f"array '{name}' declares {hdr.nbytes} bytes (max_array_bytes)",
                    path=p,
                    member=info.filename,
                )
            data = _read_exact(f, hdr.nbytes, path=p, member=info.filename)
        arr = np.frombuffer(data, dtype=hdr.dtype)
        arr = arr.reshape(hdr.shape[::-1]).T if hdr.fortran else arr.reshape(hdr.shape)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1 or len(arr) != n:
            raise InvalidRecordError(
                f"array '{name}' has shape {hdr.shape} but 'x' has {n} rows",
                path=p,
                member=info.filename,
            )
        return arr

    def _names_from(self, arr: np.ndarray, member: str, what: str) -> list[str]:
        p = self.path
        kind = arr.dtype.kind
        if kind in "iu":
            return [str(int(v)) for v in arr.tolist()]
        if kind == "f":
            if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
                raise InvalidRecordError(
                    f"{what} must be integers or strings, got non-integral floats",
                    path=p,
                    member=member,
                )
            return [str(int(v)) for v in arr.tolist()]
        if kind == "U":
            return [str(v) for v in arr.tolist()]
        if kind == "S":
            try:
                return [bytes(v).decode("utf-8") for v in arr.tolist()]
            except UnicodeDecodeError as exc:
                raise InvalidRecordError(
                    f"{what} holds bytes that are not UTF-8", path=p, member=member
                ) from exc
        raise InvalidRecordError(
            f"{what} must be integers or strings, got {arr.dtype}", path=p, member=member
        )

    def _labels_from(self, y: np.ndarray, member: str) -> list[str]:
        labels = self._names_from(y, member, "labels 'y'")
        if any(not label.strip() for label in labels):
            raise MissingFieldError(
                "labels 'y' contain an empty label", path=self.path, member=member
            )
        return labels

    def _ids_from(self, raw: np.ndarray, member: str) -> list[str]:
        ids = self._names_from(raw, member, "ids")
        seen: set[str] = set()
        for row, sample_id in enumerate(ids):
            if not sample_id or sample_id in seen:
                problem = "empty" if not sample_id else f"duplicate id {sample_id!r}"
                raise InvalidRecordError(f"{problem} at row {row}", path=self.path, member=member)
            seen.add(sample_id)
        return ids

    # ---- rows

    def _open_stream(self) -> IO[bytes]:
        if self._zf is None:
            raise DatasetError("dataset is closed", path=self.path)
        with _archive_errors(self.path, self._xinfo.filename):
            f = self._zf.open(self._xinfo)
            _read_exact(f, self._x.header_len, path=self.path, member=self._xinfo.filename)
        return f

    def _read_stream_rows(self, f: IO[bytes], count: int) -> np.ndarray:
        member = self._xinfo.filename
        with _archive_errors(self.path, member):
            data = _read_exact(f, count * self._row_bytes, path=self.path, member=member)
        return np.frombuffer(data, dtype=self._x.dtype).reshape((count, *self._row_shape))

    def _load_full(self) -> np.ndarray:
        if self._full is None:
            f = self._open_stream()
            with f:
                flat = self._read_stream_rows(f, self._x.shape[0]).reshape(-1)
            self._full = flat.reshape(self._x.shape[::-1]).T
        return self._full

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Raw ``x[start:stop]`` (original dtype, shape ``(stop - start, *x.shape[1:])``)."""
        n = len(self.ids)
        stop = min(stop, n)
        if not 0 <= start <= stop:
            raise IndexError(f"bad row range [{start}, {stop}) for {n} rows")
        if self._fd is not None:
            return self._pread_rows(start, stop)
        if self._mm is not None:
            return np.array(self._mm[start:stop])
        if self._x.fortran:
            return np.array(self._load_full()[start:stop])
        if self._stream is None or self._stream_row > start:
            if self._stream is not None:
                self._stream.close()
            self._stream, self._stream_row = self._open_stream(), 0
        while self._stream_row < start:
            skip = min(start - self._stream_row, max(1, _CHUNK // self._row_bytes))
            self._read_stream_rows(self._stream, skip)
            self._stream_row += skip
        rows = self._read_stream_rows(self._stream, stop - start)
        self._stream_row = stop
        return rows

    def _pread_rows(self, start: int, stop: int) -> np.ndarray:
        assert self._fd is not None
        want = (stop - start) * self._row_bytes
        buf = bytearray(want)
        view = memoryview(buf)
        pos = self._data_offset + start * self._row_bytes
        got = 0
        while got < want:
            n = os.preadv(self._fd, [view[got:]], pos + got)
            if n == 0:
                raise CorruptArchiveError("array data is truncated", path=self.path, member="x")
            got += n
        return np.frombuffer(buf, dtype=self._x.dtype).reshape((stop - start, *self._x.shape[1:]))

    def _iter_blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, rows)`` blocks of about 4 MiB covering ``x`` in order."""
        n = len(self.ids)
        step = max(1, (4 * _CHUNK) // self._row_bytes)
        if self._fd is not None:
            for start in range(0, n, step):
                yield start, self._pread_rows(start, min(n, start + step))
            return
        if self._mm is not None or self._x.fortran:
            source = self._mm if self._mm is not None else self._load_full()
            for start in range(0, n, step):
                yield start, np.array(source[start : start + step])
            return
        f = self._open_stream()
        with f:
            for start in range(0, n, step):
                yield start, self._read_stream_rows(f, min(step, n - start))

    def _convert(self, row: np.ndarray) -> Any:
        if self.kind == "vector":
            return np.array(row, dtype=np.float32)
        a = row
        if a.dtype != np.uint8:
            if a.dtype.kind == "f":
                a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
                if a.min() >= 0.0 and a.max() <= 1.0:
                    a = a * 255.0
                a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
            elif a.dtype.kind == "b":
                a = a.astype(np.uint8) * 255
            else:
                a = np.clip(a, 0, 255).astype(np.uint8)
        if a.ndim == 2:
            a = a[:, :, None]
        if a.shape[2] == 1:
            a = np.repeat(a, 3, axis=2)
        elif a.shape[2] == 4:
            a = a[:, :, :3]
        return Image.fromarray(np.ascontiguousarray(a))

    def iter_payloads(self) -> Iterator[tuple[int, Any]]:
        for start, block in self._iter_blocks():
            for j, row in enumerate(block):
                yield start + j, self._convert(row)

    def iter_range(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        stop = min(stop, len(self.ids))
        step = max(1, (4 * _CHUNK) // self._row_bytes)
        for lo in range(start, stop, step):
            block = self.read_rows(lo, min(stop, lo + step))
            for j, row in enumerate(block):
                yield lo + j, self._convert(row)

    def verify(self) -> None:
        """Read all of ``x`` once (catches a truncated or corrupt compressed member)."""
        for _ in self._iter_blocks():
            pass

    def source(self, i: int) -> str:
        return f"row {i}"

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._mm = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._full = None
        if self._zf is not None:
            self._zf.close()
            self._zf = None


# --------------------------------------------------------------------------------------------
# Detection and entry point

_CLASSES: dict[str, Callable[[str, ReadLimits], Reader]] = {
    "folder": FolderReader,
    "zip": ZipReader,
    "tar": TarReader,
    "manifest": ManifestReader,
    "npz": NpzReader,
    "text": TextReader,
    "alpaca": AlpacaReader,
    "dolly": DollyReader,
    "sharegpt": ShareGptReader,
}


def _sniff_jsonl(path: str, limits: ReadLimits) -> str:
    """Pick a JSONL format from the keys of the first non-blank line's object."""
    with _open_binary(path) as f:
        for number, _, raw in _iter_lines(f, limits=limits, path=path):
            body = raw.removeprefix(_UTF8_BOM) if number == 1 else raw
            if not body.strip():
                continue
            if body.lstrip().startswith(b"["):
                raise UnknownFormatError(
                    "a JSON array is not supported; write JSON lines (one object per line)",
                    path=path,
                    line=number,
                )
            keys = _parse_json_line(body, path=path, line=number).keys()
            if "conversations" in keys:
                return "sharegpt"
            if "instruction" in keys and "output" in keys:
                return "alpaca"
            if "instruction" in keys and "response" in keys:
                return "dolly"
            if "text" in keys:
                return "text"
            if any(k in keys for k in _MANIFEST_PATH_KEYS):
                return "manifest"
            raise UnknownFormatError(
                f"cannot tell the format from the fields {sorted(keys)}; expected "
                "'conversations', 'instruction'+'output', 'instruction'+'response', 'text' or "
                "'path'",
                path=path,
                line=number,
            )
    raise EmptyDatasetError("file has no samples", path=path)


def detect_format(path: str | os.PathLike[str], *, limits: ReadLimits | None = None) -> str:
    """The format name of ``path`` from its kind and extension (JSONL files are sniffed)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise DatasetError("path does not exist", path=p)
    if os.path.isdir(p):
        return "folder"
    lower = p.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(_TAR_SUFFIXES):
        return "tar"
    if lower.endswith(".npz"):
        return "npz"
    if lower.endswith(".csv"):
        return "manifest"
    if lower.endswith(_JSONL_SUFFIXES):
        return _sniff_jsonl(p, limits or ReadLimits())
    raise UnknownFormatError(
        "unknown dataset format (expected a folder, .zip, .tar, .tar.gz, .tgz, .npz, .csv, "
        ".jsonl or .json)",
        path=p,
    )


def open_dataset(
    path: str | os.PathLike[str], *, format: str | None = None, limits: ReadLimits | None = None
) -> Reader:
    """Index the dataset at ``path`` and return it; ``format`` overrides detection."""
    p = os.fspath(path)
    limits = limits or ReadLimits()
    if format is None:
        fmt = detect_format(p, limits=limits)
    elif format not in _CLASSES:
        raise UnknownFormatError(
            f"unknown format {format!r}; expected one of {', '.join(FORMATS)}", path=p
        )
    else:
        if not os.path.exists(p):
            raise DatasetError("path does not exist", path=p)
        if format != "folder" and os.path.isdir(p):
            raise DatasetError(f"format {format!r} needs a file, got a directory", path=p)
        fmt = format
    return _CLASSES[fmt](p, limits)
