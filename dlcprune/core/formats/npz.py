"""``npz``: a NumPy ``.npz`` holding ``x`` (images or vectors) and optional ``y`` and ids."""

from __future__ import annotations

import math
import os
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from PIL import Image

from dlcprune.core.errors import (
    CorruptArchiveError,
    DatasetError,
    EmptyDatasetError,
    InvalidRecordError,
    LimitExceededError,
    MissingFieldError,
    ScoringError,
)
from dlcprune.core.formats.base import Reader
from dlcprune.core.formats.limits import (
    ARCHIVE_ERRORS,
    CHUNK,
    ReadLimits,
    archive_errors,
    check_samples,
    open_binary,
    reason,
)
from dlcprune.core.formats.registry import register

__all__ = ["NpzReader"]


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
    except (*ARCHIVE_ERRORS, SyntaxError, TypeError) as exc:
        raise CorruptArchiveError(
            f"not a valid .npy array: {reason(exc)}", path=path, member=member
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
        chunk = f.read(min(CHUNK * 4, nbytes - got))
        if not chunk:
            raise CorruptArchiveError("array data is truncated", path=path, member=member)
        view[got : got + len(chunk)] = chunk
        got += len(chunk)
    return buf


def _zip_data_offset(path: str, info: zipfile.ZipInfo) -> int:
    """File offset of a member's data: its local header's offset plus that header's length."""
    with open_binary(path) as f:
        f.seek(info.header_offset)
        local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise CorruptArchiveError("bad local file header", path=path, member=info.filename)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


@register("npz", suffixes=(".npz",))
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

    def __init__(self, path: str, limits: ReadLimits) -> None:
        super().__init__(path, limits)
        with archive_errors(path):
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
        with archive_errors(p, xinfo.filename), self._zf.open(xinfo) as f:
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
                    f"cannot map array 'x': {reason(exc)}", path=p, member=xinfo.filename
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
        check_samples(hdr.shape[0], self.limits, p)
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
        with archive_errors(p, info.filename), self._zf.open(info) as f:
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
        with archive_errors(self.path, self._xinfo.filename):
            f = self._zf.open(self._xinfo)
            _read_exact(f, self._x.header_len, path=self.path, member=self._xinfo.filename)
        return f

    def _read_stream_rows(self, f: IO[bytes], count: int) -> np.ndarray:
        member = self._xinfo.filename
        with archive_errors(self.path, member):
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
            skip = min(start - self._stream_row, max(1, CHUNK // self._row_bytes))
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
        step = max(1, (4 * CHUNK) // self._row_bytes)
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
        step = max(1, (4 * CHUNK) // self._row_bytes)
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
