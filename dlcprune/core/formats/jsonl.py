"""Line-based machinery shared by the JSON-lines formats and the manifest: capped line reads, byte
spans, JSON parsing, field and id validation, and the ``JsonlReader`` base.

Every problem is raised as a ``DatasetError`` subclass naming the file and the line (1-based).
"""

from __future__ import annotations

import gzip
import json
import zlib
from abc import abstractmethod
from array import array
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, ClassVar

import numpy as np

from dlcprune.core.errors import (
    CorruptArchiveError,
    DatasetError,
    EmptyDatasetError,
    InvalidRecordError,
    LimitExceededError,
    MissingFieldError,
    UnknownFormatError,
)
from dlcprune.core.formats.base import Reader
from dlcprune.core.formats.limits import ReadLimits, check_samples, open_binary, reason

__all__ = [
    "GZ_JSONL_SUFFIXES",
    "JSONL_SUFFIXES",
    "UTF8_BOM",
    "IdRegistry",
    "JsonlReader",
    "first_object_keys",
    "id_value",
    "is_gzip",
    "iter_jsonl",
    "iter_lines",
    "json_type",
    "label_value",
    "open_lines",
    "parse_json_line",
    "spans_array",
    "str_field",
]

JSONL_SUFFIXES = (".jsonl", ".json")
GZ_JSONL_SUFFIXES = (".jsonl.gz", ".json.gz")
UTF8_BOM = b"\xef\xbb\xbf"


def is_gzip(path: str) -> bool:
    return path.lower().endswith(".gz")


def open_lines(path: str) -> BinaryIO:
    """The file's bytes for line reading: gzip-compressed files (``.gz``) are decompressed as
    they are read, so offsets and spans are positions in the decompressed stream."""
    f = open_binary(path)
    if not is_gzip(path):
        return f
    return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]


def json_type(value: Any) -> str:
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


# --------------------------------------------------------------------------------------------
# Lines and spans


def iter_lines(f: BinaryIO, *, limits: ReadLimits, path: str) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(line_number, start_offset, raw_line)``; ``raw_line`` keeps its newline.

    The file is read line by line, never whole. A line longer than ``max_line_bytes`` (line
    terminator excluded) raises ``InvalidRecordError`` without reading the rest of it.
    """
    offset = 0
    number = 0
    compressed = isinstance(f, gzip.GzipFile)
    while True:
        try:
            raw = f.readline(limits.max_line_bytes + 2)
        except (OSError, EOFError, zlib.error) as exc:
            error = CorruptArchiveError if compressed else DatasetError
            raise error(f"cannot read file: {reason(exc)}", path=path, line=number + 1) from exc
        if not raw:
            return
        if compressed and offset + len(raw) > limits.max_total_bytes:
            raise LimitExceededError(
                f"decompresses to more than {limits.max_total_bytes} bytes (max_total_bytes)",
                path=path,
                line=number + 1,
            )
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


def parse_json_line(body: bytes, *, path: str, line: int) -> dict[str, Any]:
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
            f"expected a JSON object, got {json_type(obj)}", path=path, line=line
        )
    return obj


def iter_jsonl(
    f: BinaryIO, *, limits: ReadLimits, path: str
) -> Iterator[tuple[int, int, int, dict[str, Any]]]:
    """Yield ``(line, start, end, object)`` for each non-blank line.

    ``[start, end)`` are the byte offsets of the line including its newline; a UTF-8 BOM at the
    start of the file is left outside the first span so exported lines never carry it.
    """
    for number, offset, raw in iter_lines(f, limits=limits, path=path):
        body, start = raw, offset
        if number == 1 and raw.startswith(UTF8_BOM):
            body = raw[len(UTF8_BOM) :]
            start += len(UTF8_BOM)
        if not body.strip():
            continue
        yield number, start, start + len(body), parse_json_line(body, path=path, line=number)


def first_object_keys(path: str, limits: ReadLimits) -> tuple[int, list[str]]:
    """``(line, keys)`` of the first non-blank line's object, for format detection.

    A file holding one JSON array rather than lines raises ``UnknownFormatError``; a file with no
    non-blank line raises ``EmptyDatasetError``.
    """
    with open_lines(path) as f:
        for number, _, raw in iter_lines(f, limits=limits, path=path):
            body = raw.removeprefix(UTF8_BOM) if number == 1 else raw
            if not body.strip():
                continue
            if body.lstrip().startswith(b"["):
                raise UnknownFormatError(
                    "a JSON array is not supported; write JSON lines (one object per line)",
                    path=path,
                    line=number,
                )
            return number, list(parse_json_line(body, path=path, line=number))
    raise EmptyDatasetError("file has no samples", path=path)


def spans_array(starts: array[int], ends: array[int]) -> np.ndarray:
    """int64 ``(N, 2)`` of ``[start, end)`` byte offsets."""
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
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"cannot read file: {reason(exc)}", path=path, line=line) from exc
    if len(body) != end - start:
        raise InvalidRecordError("file changed since it was opened", path=path, line=line)
    return body


# --------------------------------------------------------------------------------------------
# Fields and ids


def label_value(value: Any, *, path: str, line: int, field: str = "label") -> str:
    """A label from a record: str as is, int as ``str(int)``; anything else is invalid."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecordError(
            f"field '{field}' must be a string or an integer, got {json_type(value)}",
            path=path,
            line=line,
        )
    if isinstance(value, int):
        return str(value)
    if not value.strip():
        raise MissingFieldError(f"field '{field}' is empty", path=path, line=line)
    return value


def id_value(value: Any, *, path: str, line: int) -> str:
    """A record's ``id`` field (string or integer) as a non-empty str."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecordError(
            f"field 'id' must be a string or an integer, got {json_type(value)}",
            path=path,
            line=line,
        )
    text = str(value)
    if not text:
        raise InvalidRecordError("field 'id' is empty", path=path, line=line)
    return text


def str_field(obj: dict[str, Any], key: str, *, required: bool, path: str, line: int) -> str:
    """A string field; an absent or null optional field is ``""``."""
    if key not in obj or (obj[key] is None and not required):
        if required:
            raise MissingFieldError(f"missing field '{key}'", path=path, line=line)
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise InvalidRecordError(
            f"field '{key}' must be a string, got {json_type(value)}", path=path, line=line
        )
    return value


class IdRegistry:
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


# --------------------------------------------------------------------------------------------
# Reader base


class JsonlReader(Reader):
    """Base of the JSONL sample formats (``text``, ``alpaca``, ``dolly``, ``sharegpt``).

    The index pass validates every line and keeps only ids, labels, line numbers and byte
    ``spans`` (int64 ``(N, 2)``, ``[start, end)`` including the newline); ``iter_payloads``
    re-reads each span. Blank lines are not samples but still count as physical lines. An
    optional ``id`` field (string or integer) gives the sample id, else the 0-based sample number.
    ``source(i)`` is ``"line N"``. A ``.gz`` file is read through gzip; its spans are offsets
    in the decompressed stream, so it has no ``spans`` attribute (nothing may copy them out of
    the compressed file) but ``line_spans``.

    ``columns`` maps the format's roles (``ROLES``) to the field names of this file.
    """

    labelled = False
    # The roles ``columns`` may map, with their default field names.
    ROLES: ClassVar[dict[str, tuple[str, ...]]] = {"id": ("id",)}

    def __init__(
        self, path: str, limits: ReadLimits, columns: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(path, limits)
        self.columns = dict(columns or {})
        self.fields = {
            role: self.columns.get(role, defaults[0]) for role, defaults in self.ROLES.items()
        }
        id_key = self.fields["id"]
        registry = IdRegistry(path)
        labels: list[str] = []
        starts: array[int] = array("q")
        ends: array[int] = array("q")
        self._lines: array[int] = array("q")
        with open_lines(path) as f:
            for line, start, end, obj in iter_jsonl(f, limits=limits, path=path):
                label, _ = self._extract(obj, line)
                if "id" in self.columns and id_key not in obj:
                    raise MissingFieldError(
                        f"missing field {id_key!r} (mapped to id)", path=path, line=line
                    )
                registry.add(
                    id_value(obj[id_key], path=path, line=line) if id_key in obj else None, line
                )
                if label is not None:
                    labels.append(label)
                starts.append(start)
                ends.append(end)
                self._lines.append(line)
                check_samples(len(registry.ids), limits, path)
        if not registry.ids:
            raise EmptyDatasetError("file has no samples", path=path)
        self.ids = registry.ids
        self.labels = labels if self.labelled else None
        self.line_spans = spans_array(starts, ends)

    @property
    def spans(self) -> np.ndarray:
        """int64 ``(N, 2)`` ``[start, end)`` byte offsets of each sample's line in the file."""
        if is_gzip(self.path):
            raise AttributeError("a compressed file has no byte spans (see line_spans)")
        return self.line_spans

    def field(self, role: str) -> str:
        """The field name that holds ``role`` in this file."""
        return self.fields[role]

    @abstractmethod
    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        """Validate one record; return ``(label or None, payload)``."""

    def source(self, i: int) -> str:
        return f"line {self._lines[i]}"

    def iter_payloads(self) -> Iterator[tuple[int, Any]]:
        yield from self.iter_range(0, len(self.ids))

    def iter_range(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        with open_lines(self.path) as f:
            for i in range(start, min(stop, len(self.ids))):
                line = self._lines[i]
                begin, end = int(self.line_spans[i, 0]), int(self.line_spans[i, 1])
                body = _read_span(f, begin, end, path=self.path, line=line)
                obj = parse_json_line(body, path=self.path, line=line)
                yield i, self._extract(obj, line)[1]
