"""``manifest``: a CSV (with header) or JSON-lines file listing image paths and labels; the
columns are mappable (``columns={"image": "img", "label": "y"}``)."""

from __future__ import annotations

import csv
import os
from array import array
from collections.abc import Collection, Iterator, Mapping
from typing import IO, BinaryIO

import numpy as np
from PIL import Image

from dlcprune.core.errors import (
    CorruptImageError,
    DatasetError,
    EmptyDatasetError,
    InvalidRecordError,
    MissingFieldError,
    UnsafePathError,
)
from dlcprune.core.formats.base import ImageReader
from dlcprune.core.formats.columns import LabelColumn, mapped
from dlcprune.core.formats.images import decode_image
from dlcprune.core.formats.jsonl import (
    GZ_JSONL_SUFFIXES,
    JSONL_SUFFIXES,
    UTF8_BOM,
    IdRegistry,
    id_value,
    is_gzip,
    iter_jsonl,
    iter_lines,
    json_type,
    open_lines,
    spans_array,
)
from dlcprune.core.formats.limits import (
    Parts,
    ReadLimits,
    check_file_size,
    check_samples,
    read_file_capped,
    reason,
    split_relative,
)
from dlcprune.core.formats.registry import JsonSniff, register

__all__ = ["MANIFEST_LABEL_KEYS", "MANIFEST_PATH_KEYS", "ManifestReader"]

MANIFEST_PATH_KEYS = ("path", "image", "file", "filename")
MANIFEST_LABEL_KEYS = ("label", "class")
MANIFEST_ROLES = ("image", "label", "id")


@register(
    "manifest",
    suffixes=(".csv",),
    # Last of the JSON-lines rules: 'file' or 'image' could be metadata of another format.
    sniff=JsonSniff(lambda keys: any(k in keys for k in MANIFEST_PATH_KEYS), "'path'", order=90),
    roles=MANIFEST_ROLES,
)
class ManifestReader(ImageReader):
    """A CSV (with header) or JSONL file listing images and labels.

    Path column/field: ``path`` (or ``image``, ``file``, ``filename``); label: ``label`` (or
    ``class``); optional ``id`` (else the path as written, normalised). CSV header names are
    matched case-insensitively and CSV values are stripped of surrounding spaces; the delimiter
    is a comma. Paths are relative to the manifest's folder: absolute paths, ``..`` components
    and links leading outside that folder raise ``UnsafePathError``. Every image must exist at
    open time. ``spans`` gives each row's bytes (``[start, end)``, newline included) for JSONL
    and also for CSV (header excluded). ``source(i)`` is the image path as listed.

    ``columns`` maps ``image``, ``label`` and ``id`` to other column names (a mapped column
    must exist). JSONL labels are strings or integers, not both in one file: the first row
    whose type differs is an ``InvalidRecordError``. ``.jsonl.gz`` is read through gzip.
    """

    def __init__(
        self, path: str, limits: ReadLimits, columns: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(path, limits)
        self.columns = dict(columns or {})
        self._dir = os.path.dirname(os.path.abspath(path))
        self._dir_real = os.path.realpath(self._dir)
        self._label_column = LabelColumn(self.columns.get("label", "label"), path=path)
        self._registry = IdRegistry(path)
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
        self.line_spans = spans_array(self._starts, self._ends)
        del self._starts, self._ends, self._registry

    def _name(self) -> str:
        """The manifest's file name (its suffix tells CSV from JSONL)."""
        return self.path

    def _open_manifest(self) -> IO[bytes]:
        return open_lines(self.path)

    def _is_jsonl(self) -> bool:
        lower = self._name().lower()
        if lower.endswith(".csv"):
            return False
        if lower.endswith(JSONL_SUFFIXES + GZ_JSONL_SUFFIXES):
            return True
        with self._open_manifest() as f:
            for _, _, raw in iter_lines(f, limits=self.limits, path=self.path):
                body = raw.removeprefix(UTF8_BOM).strip()
                if body:
                    return body.startswith(b"{")
        return False

    def _add(
        self, raw_path: str, label: str, sample_id: str | None, line: int, start: int, end: int
    ) -> None:
        p = self.path
        if not raw_path.strip():
            raise MissingFieldError("empty image path", path=p, line=line)
        parts = split_relative(raw_path, path=p, what="image path", line=line)
        if not parts:
            raise MissingFieldError("empty image path", path=p, line=line)
        rel = "/".join(parts)
        self._check_image(parts, rel, line)
        self._registry.add(rel if sample_id is None else sample_id, line)
        assert self.labels is not None
        self.labels.append(label)
        self._rel.append(rel)
        self._lines.append(line)
        self._starts.append(start)
        self._ends.append(end)
        check_samples(len(self._rel), self.limits, p)

    def _check_image(self, parts: Parts, rel: str, line: int) -> None:
        """Refuse a listed image that escapes the manifest's folder or does not exist."""
        p = self.path
        full = os.path.join(self._dir, *parts)
        real = os.path.realpath(full)
        if os.path.commonpath([self._dir_real, real]) != self._dir_real:
            raise UnsafePathError(
                "image path leads outside the manifest's folder", path=p, line=line, member=rel
            )
        if not os.path.isfile(full):
            raise DatasetError("image file does not exist", path=p, line=line, member=rel)

    def _index_jsonl(self) -> None:
        p = self.path
        cols = self.columns
        with self._open_manifest() as f:
            for line, start, end, obj in iter_jsonl(f, limits=self.limits, path=p):
                keys = list(obj)
                path_key = mapped(
                    "image", cols, keys, MANIFEST_PATH_KEYS, required=False, path=p, line=line
                )
                if path_key is None:
                    raise MissingFieldError(
                        "missing image path field ('path', 'image', 'file' or 'filename')",
                        path=p,
                        line=line,
                    )
                raw_path = obj[path_key]
                if not isinstance(raw_path, str):
                    raise InvalidRecordError(
                        f"field '{path_key}' must be a string, got {json_type(raw_path)}",
                        path=p,
                        line=line,
                    )
                label_key = mapped(
                    "label", cols, keys, MANIFEST_LABEL_KEYS, required=False, path=p, line=line
                )
                if label_key is None:
                    raise MissingFieldError(
                        "missing label field ('label' or 'class')", path=p, line=line
                    )
                label = self._label_column.value(obj[label_key], line=line, column=label_key)
                id_key = mapped("id", cols, keys, ("id",), required=False, path=p, line=line)
                sample_id = id_value(obj[id_key], path=p, line=line) if id_key else None
                self._add(raw_path, label, sample_id, line, start, end)

    def _index_csv(self) -> None:
        p = self.path
        # Where the csv reader stands, updated as it pulls lines, so records can be located.
        state = {"line": 0, "end": 0}

        def lines(f: BinaryIO) -> Iterator[str]:
            for number, start, raw in iter_lines(f, limits=self.limits, path=p):
                body = raw
                if number == 1 and raw.startswith(UTF8_BOM):
                    body = raw[len(UTF8_BOM) :]
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InvalidRecordError(
                        f"invalid UTF-8 at byte {exc.start} of the line", path=p, line=number
                    ) from exc
                state["line"], state["end"] = number, start + len(raw)
                yield text

        with self._open_manifest() as f:
            reader = csv.reader(lines(f), strict=True)  # type: ignore[arg-type]
            header: list[str] | None = None
            columns: dict[str, int] = {}
            while True:
                first_line, start = state["line"] + 1, state["end"]
                try:
                    row = next(reader, None)
                except csv.Error as exc:
                    raise InvalidRecordError(
                        f"invalid CSV: {reason(exc)}", path=p, line=state["line"]
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
        for role, what, keys in (
            ("image", "path", MANIFEST_PATH_KEYS),
            ("label", "label", MANIFEST_LABEL_KEYS),
        ):
            found = mapped(
                role,
                self.columns,
                header,
                keys,
                required=False,
                path=self.path,
                line=line,
                fold_case=True,
            )
            if found is None:
                raise MissingFieldError(
                    f"header has no {what} column ({', '.join(keys)})", path=self.path, line=line
                )
            columns["path" if role == "image" else role] = names.index(found)
        id_col = mapped(
            "id",
            self.columns,
            header,
            ("id",),
            required=False,
            path=self.path,
            line=line,
            fold_case=True,
        )
        if id_col is not None:
            columns["id"] = names.index(id_col)
        return columns

    def source(self, i: int) -> str:
        return self._rel[i]

    @property
    def spans(self) -> np.ndarray:
        """int64 ``(N, 2)`` ``[start, end)`` byte offsets of each row in the manifest file."""
        if is_gzip(self.path):
            raise AttributeError("a compressed manifest has no byte spans (see line_spans)")
        return self.line_spans

    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        for i in sorted(keep) if keep is not None else range(len(self._rel)):
            rel = self._rel[i]
            full = os.path.join(self._dir, *rel.split("/"))
            yield i, read_file_capped(full, limits=self.limits, path=self.path, member=rel)

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
                    f"cannot read image: {reason(exc)}", path=self.path, member=rel, line=line
                ) from exc
            try:
                check_file_size(f, limits=self.limits, path=self.path, member=rel, line=line)
                im = decode_image(
                    f, limits=self.limits, path=self.path, member=rel, line=line, convert=convert
                )
            finally:
                f.close()
            yield i, im
