"""Arrow tables as datasets: the machinery under ``parquet``, ``hf_parquet`` and ``hf_dataset``.

A table dataset is one or more ``TablePart``s (a Parquet file, read by row groups; an Arrow table,
memory-mapped) with one schema. What it holds is told from its columns, or from ``columns``:

- images (``kind="image"``): an image column (``image``, ``img``, ``path``, ``file``,
  ``filename``) holding the encoded bytes (binary), a Hugging Face ``Image`` struct
  ``{bytes, path}``, or a path (string) relative to the dataset's folder (absolute paths, ``..``
  and links leading outside are ``UnsafePathError``; every listed file must exist), and a label;
- text (``kind="text"``): a ``text`` column and a label;
- instructions (``kind="instruction"``): ``messages`` (OpenAI chat) or ``conversations``
  (ShareGPT) lists of turns, or ``instruction`` with ``output``/``response`` (and an optional
  ``input``/``context``).

Labels are string or integer columns; an integer column with a ``ClassLabel`` feature (in the
Parquet file's ``huggingface`` metadata, or the ``datasets`` features) gives the class names.
Ids come from an ``id`` column, else the image path, else the row number (0-based, over all
parts). Errors name the file (the shard as ``member`` for a multi-file table), the row (``line``,
1-based within its file) and the column.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from PIL import Image

from dlcprune.core.errors import (
    DatasetError,
    EmptyDatasetError,
    InvalidRecordError,
    LimitExceededError,
    MissingFieldError,
    UnsafePathError,
)
from dlcprune.core.formats.base import ImageReader, Instruction
from dlcprune.core.formats.columns import ROLES, LabelColumn, mapped
from dlcprune.core.formats.images import decode_image
from dlcprune.core.formats.instructions import conversation_pair
from dlcprune.core.formats.jsonl import IdRegistry, id_value
from dlcprune.core.formats.limits import (
    ReadLimits,
    check_samples,
    read_file_capped,
    reason,
    split_relative,
)

__all__ = ["TABLE_ROLES", "ArrowPart", "ParquetPart", "TablePart", "TableReader", "hf_features"]

TABLE_ROLES = ROLES
IMAGE_COLUMNS = ("image", "img", "path", "file", "filename")
LABEL_COLUMNS = ("label", "labels", "class")
# Rows read at a time from an Arrow table (Parquet files are read one row group at a time).
BATCH_ROWS = 1024

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # pragma: no cover - pyarrow is in the server extra
    pa = pq = None  # type: ignore[assignment]


def hf_features(schema: Any) -> dict[str, Any]:
    """The Hugging Face features recorded in a Parquet/Arrow schema's ``huggingface`` metadata
    (``{column: {"_type": "ClassLabel", "names": [...]}, ...}``); ``{}`` when absent."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    try:
        info = json.loads(raw)
    except ValueError:
        return {}
    features = info.get("info", {}).get("features", {}) if isinstance(info, dict) else {}
    return features if isinstance(features, dict) else {}


class TablePart:
    """One table of a dataset. ``member``: its name in errors when the dataset has several."""

    member: str | None = None
    path: str
    num_rows: int
    schema: Any

    def iter_chunks(self, columns: list[str], start: int, stop: int) -> Iterator[tuple[int, Any]]:
        """``(first_row, pyarrow.Table)`` chunks covering rows ``start..stop-1`` of ``columns``."""
        raise NotImplementedError


class ParquetPart(TablePart):
    """A Parquet file, read one row group at a time. ``filesystem``: an fsspec or pyarrow file
    system to read ``path`` from (a local path when None)."""

    def __init__(self, path: str, *, member: str | None = None, filesystem: Any = None) -> None:
        self.path = path
        self.member = member
        where = {"path": path, "member": member}
        try:
            self._pf = pq.ParquetFile(path, filesystem=filesystem)
            meta = self._pf.metadata
            self.schema = self._pf.schema_arrow
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DatasetError(f"cannot read Parquet file: {reason(exc)}", **where) from exc
        self.num_rows = meta.num_rows
        self._starts = []
        total = 0
        for g in range(meta.num_row_groups):
            self._starts.append(total)
            total += meta.row_group(g).num_rows

    def iter_chunks(self, columns: list[str], start: int, stop: int) -> Iterator[tuple[int, Any]]:
        for g, first in enumerate(self._starts):
            n = self._pf.metadata.row_group(g).num_rows
            if first + n <= start or first >= stop:
                continue
            try:
                table = self._pf.read_row_group(g, columns=columns)
            except (OSError, ValueError, pa.ArrowException) as exc:
                raise DatasetError(
                    f"cannot read row group {g}: {reason(exc)}",
                    path=self.path,
                    member=self.member,
                    line=first + 1,
                ) from exc
            lo, hi = max(start, first), min(stop, first + n)
            yield lo, table.slice(lo - first, hi - lo)

    def close(self) -> None:
        self._pf.close()


class ArrowPart(TablePart):
    """An Arrow table already open (memory-mapped by ``datasets``)."""

    def __init__(self, table: Any, path: str) -> None:
        self._table = table
        self.path = path
        self.schema = table.schema
        self.num_rows = table.num_rows

    def iter_chunks(self, columns: list[str], start: int, stop: int) -> Iterator[tuple[int, Any]]:
        table = self._table.select(columns)
        for lo in range(start, stop, BATCH_ROWS):
            hi = min(stop, lo + BATCH_ROWS)
            yield lo, table.slice(lo, hi - lo)


class TableReader(ImageReader):
    """A dataset stored as Arrow tables (see the module docstring); ``kind`` is decided at open.

    Subclasses open their parts and call ``_setup(parts, root, features)``. ``source(i)`` is the
    image path for path columns, else ``row N`` (with the shard's name for multi-file tables).
    """

    kind = "image"

    def __init__(
        self, path: str, limits: ReadLimits, columns: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(path, limits)
        self.columns = dict(columns or {})
        self._parts: list[TablePart] = []

    # -- opening -------------------------------------------------------------------------

    def _setup(
        self, parts: Sequence[TablePart], root: str, features: Mapping[str, Any] | None
    ) -> None:
        self._parts = list(parts)
        self._root = os.path.abspath(root)
        self._root_real = os.path.realpath(self._root)
        names = self._check_schemas(self._parts)
        self._offsets = []
        total = 0
        for part in self._parts:
            self._offsets.append(total)
            total += part.num_rows
        check_samples(total, self.limits, self.path)
        if total == 0:
            raise EmptyDatasetError("table has no rows", path=self.path)
        self._total = total
        self._features = dict(features or {})
        self._choose_columns(names)
        self._index()

    @staticmethod
    def _check_schemas(parts: Sequence[TablePart]) -> list[str]:
        """The column names of the first part; any part whose schema differs is an error."""
        first = parts[0]
        names = first.schema.names
        for part in parts[1:]:
            if part.schema.names != names or not part.schema.equals(
                first.schema, check_metadata=False
            ):
                raise DatasetError(
                    f"columns differ from those of the first file ({', '.join(names)})",
                    path=part.path,
                    member=part.member,
                )
        return names

    def _col(self, role: str, names: list[str], defaults: Sequence[str], required: bool):
        return mapped(role, self.columns, names, defaults, required=required, path=self.path)

    def _choose_columns(self, names: list[str]) -> None:
        cols = self.columns
        has = set(names)
        if "image" in cols:
            mode = "image"
        elif "text" in cols:
            mode = "text"
        elif "messages" in cols:
            mode = "chat"
        elif "instruction" in cols or "response" in cols:
            mode = "instruction"
        elif has & {"messages", "conversations"}:
            mode = "chat"
        elif "instruction" in has and has & {"output", "response"}:
            mode = "instruction"
        elif has & set(IMAGE_COLUMNS):
            mode = "image"
        elif "text" in has:
            mode = "text"
        else:
            raise MissingFieldError(
                "cannot tell what the table holds: no image, text, instruction or messages "
                f"column (columns: {', '.join(names)}); map one with columns=",
                path=self.path,
            )
        self._mode = mode
        self.kind = {"chat": "instruction"}.get(mode, mode)
        self._id_col = self._col("id", names, ("id",), required=False)
        self._label_col: str | None = None
        self._data_cols: dict[str, str | None] = {}
        if mode in ("image", "text"):
            self._data_cols[mode] = self._col(
                mode, names, IMAGE_COLUMNS if mode == "image" else ("text",), required=True
            )
            self._label_col = self._col("label", names, LABEL_COLUMNS, required=True)
        elif mode == "chat":
            self._data_cols["messages"] = self._col(
                "messages", names, ("messages", "conversations"), required=True
            )
        else:
            self._data_cols["instruction"] = self._col(
                "instruction", names, ("instruction",), required=True
            )
            self._data_cols["response"] = self._col(
                "response", names, ("output", "response"), required=True
            )
            self._data_cols["input"] = self._col(
                "input", names, ("input", "context"), required=False
            )
        if self._label_col is not None and "label" not in self.columns:
            self.columns.setdefault("label", self._label_col)
        image_col = self._data_cols.get("image")
        self._path_images = False
        if image_col is not None:
            typ = self._parts[0].schema.field(image_col).type
            self._path_images = pa.types.is_string(typ) or pa.types.is_large_string(typ)

    def _where(self, g: int) -> tuple[TablePart, int]:
        """The part holding global row ``g`` and the row's 1-based number within it."""
        k = len(self._offsets) - 1
        while self._offsets[k] > g:
            k -= 1
        return self._parts[k], g - self._offsets[k] + 1

    def _loc(self, g: int) -> dict[str, Any]:
        part, row = self._where(g)
        return {
            "path": part.path if part.member is None else self.path,
            "member": part.member,
            "line": row,
        }

    def _index_columns(self) -> list[str]:
        """The columns the index pass reads (ids, labels, image paths), once columns are chosen."""
        wanted = [c for c in (self._id_col, self._label_col) if c is not None]
        if self._path_images:
            wanted.append(self._data_cols["image"])  # type: ignore[arg-type]
        return list(dict.fromkeys(wanted))

    def _index(self) -> None:
        wanted = self._index_columns()
        registry = IdRegistry(self.path)
        labels: list[str] = []
        rels: list[str] = []
        label_column = None
        if self._label_col is not None:
            feature = self._features.get(self._label_col)
            names = None
            if isinstance(feature, Mapping) and feature.get("_type") == "ClassLabel":
                names = feature.get("names")
            label_column = LabelColumn(self._label_col, path=self.path, names=names)
        for g, row in self._iter_rows(wanted, 0, self._total):
            loc = self._loc(g)
            explicit = None
            if self._id_col is not None:
                explicit = id_value(row[self._id_col], path=loc["path"], line=loc["line"])
            if label_column is not None:
                labels.append(
                    label_column.value(row[self._label_col], line=loc["line"], member=loc["member"])
                )
            if self._path_images:
                rel = self._check_path(row[self._data_cols["image"]], loc)
                rels.append(rel)
                explicit = explicit if explicit is not None else rel
            registry.add(explicit, loc["line"])
        self.ids = registry.ids
        self.labels = labels if label_column is not None else None
        self._rels = rels

    def _check_path(self, raw: Any, loc: dict[str, Any]) -> str:
        column = self._data_cols["image"]
        if not isinstance(raw, str) or not raw.strip():
            raise MissingFieldError(f"column {column!r} holds no image path", **loc)
        parts = split_relative(
            raw, path=loc["path"], what="image path", line=loc["line"], member=loc["member"] or raw
        )
        if not parts:
            raise MissingFieldError(f"column {column!r} holds no image path", **loc)
        rel = "/".join(parts)
        full = os.path.join(self._root, *parts)
        real = os.path.realpath(full)
        if os.path.commonpath([self._root_real, real]) != self._root_real:
            raise UnsafePathError(
                "image path leads outside the dataset's folder", **{**loc, "member": rel}
            )
        if not os.path.isfile(full):
            raise DatasetError("image file does not exist", **{**loc, "member": rel})
        return rel

    # -- reading ---------------------------------------------------------------------------

    def _iter_rows(
        self, columns: list[str], start: int, stop: int
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(global row, {column: python value})`` for rows ``start..stop-1``."""
        if not columns:
            for g in range(start, stop):
                yield g, {}
            return
        for part, offset in zip(self._parts, self._offsets, strict=True):
            lo, hi = max(start, offset), min(stop, offset + part.num_rows)
            if lo >= hi:
                continue
            for first, table in part.iter_chunks(columns, lo - offset, hi - offset):
                values = {c: table.column(c).to_pylist() for c in columns}
                for k in range(table.num_rows):
                    yield offset + first + k, {c: values[c][k] for c in columns}

    def _data_columns(self) -> list[str]:
        return [c for c in self._data_cols.values() if c is not None]

    def source(self, i: int) -> str:
        if self._path_images:
            return self._rels[i]
        part, row = self._where(i)
        return f"{part.member} row {row}" if part.member else f"row {row}"

    def _image_bytes(self, g: int, cell: Any) -> tuple[bytes, str | None]:
        """The encoded image of row ``g`` and the member to name in errors."""
        loc = self._loc(g)
        column = self._data_cols["image"]
        if self._path_images:
            rel = self._rels[g]
            full = os.path.join(self._root, *rel.split("/"))
            return read_file_capped(full, limits=self.limits, path=loc["path"], member=rel), rel
        data, rel = cell, None
        if isinstance(cell, dict):
            data = cell.get("bytes")
            if data is None and cell.get("path"):
                rel = self._check_path(cell["path"], loc)
                full = os.path.join(self._root, *rel.split("/"))
                return read_file_capped(full, limits=self.limits, path=loc["path"], member=rel), rel
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise MissingFieldError(f"column {column!r} holds no image bytes", **loc)
        if len(data) > self.limits.max_member_bytes:
            raise LimitExceededError(
                f"image is larger than {self.limits.max_member_bytes} bytes (max_member_bytes)",
                **loc,
            )
        return bytes(data), loc["member"]

    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        if self.kind != "image":
            raise DatasetError(f"a {self.kind} table has no image bytes", path=self.path)
        wanted = sorted(keep) if keep is not None else None
        chosen = set(wanted) if wanted is not None else None
        column = self._data_cols["image"]
        cols = [] if self._path_images else [column]
        lo = wanted[0] if wanted else 0
        hi = wanted[-1] + 1 if wanted else (0 if wanted is not None else self._total)
        for g, row in self._iter_rows(cols, lo, hi):  # type: ignore[arg-type]
            if chosen is None or g in chosen:
                yield g, self._image_bytes(g, row.get(column))[0]

    def _iter_images(
        self, convert: bool, rng: range | None = None
    ) -> Iterator[tuple[int, Image.Image | None]]:
        rng = rng if rng is not None else range(self._total)
        if self.kind != "image":
            for g, payload in self._iter_records(rng):
                yield g, payload
            return
        column = self._data_cols["image"]
        cols = [] if self._path_images else [column]
        for g, row in self._iter_rows(cols, rng.start, rng.stop):  # type: ignore[arg-type]
            data, member = self._image_bytes(g, row.get(column))
            loc = self._loc(g)
            im = decode_image(
                io.BytesIO(data),
                limits=self.limits,
                path=loc["path"],
                member=member or f"row {loc['line']}",
                line=loc["line"],
                convert=convert,
            )
            yield g, im

    def _iter_records(self, rng: range) -> Iterator[tuple[int, Any]]:
        for g, row in self._iter_rows(self._data_columns(), rng.start, rng.stop):
            yield g, self._record(g, row)

    def _str(self, row: dict[str, Any], role: str, g: int, *, required: bool) -> str:
        column = self._data_cols[role]
        if column is None:
            return ""
        value = row[column]
        if value is None and not required:
            return ""
        if value is None:
            raise MissingFieldError(f"column {column!r} is empty (null)", **self._loc(g))
        if not isinstance(value, str):
            raise InvalidRecordError(
                f"column {column!r} must hold strings, got {type(value).__name__}",
                **self._loc(g),
            )
        return value

    def _record(self, g: int, row: dict[str, Any]) -> Any:
        if self._mode == "text":
            return self._str(row, "text", g, required=True)
        if self._mode == "chat":
            column = self._data_cols["messages"]
            loc = self._loc(g)
            return conversation_pair(
                row[column], field=column, path=loc["path"], line=loc["line"], member=loc["member"]
            )
        return Instruction(
            instruction=self._str(row, "instruction", g, required=True),
            input=self._str(row, "input", g, required=False),
            response=self._str(row, "response", g, required=True),
        )

    def iter_payloads(self) -> Iterator[tuple[int, Any]]:
        yield from self._iter_images(convert=True)

    def verify(self) -> None:
        for _ in self._iter_images(convert=False):
            pass

    def close(self) -> None:
        for part in self._parts:
            if isinstance(part, ParquetPart):
                part.close()
