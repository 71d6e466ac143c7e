"""A Hugging Face ``save_to_disk`` directory that is not on the local disk (a prefix in an object
store), read where it lies through an ``opener`` (a name -> a readable binary file, ranged reads
from the store), never copied.

The directory's JSON files are read first: ``state.json`` (its ``_data_files``, the Arrow files
in order) and ``dataset_info.json`` (the features: ``ClassLabel`` names), or
``dataset_dict.json`` naming the splits in sub-folders (the ``train`` split is read, or the only
split there is), as ``hfdisk`` does with ``datasets.load_from_disk`` for a local directory. The
Arrow files are IPC streams, read batch by batch. Opening reads every file once, keeping only
the row count, the columns the index needs (ids, labels, copied out of the batches so no image
bytes stay in memory) and where each batch starts; every later pass (scoring, samples, exports)
streams the files again, from the batch holding its first row. Ids, labels, classes and image
bytes are those ``hfdisk`` gives for the same directory on the local disk (``TableReader``
builds them); images are decoded by the same safe decoder, under the same limits. Images
stored by path without their bytes are not read (they would be files beside the directory);
``save_to_disk`` embeds them.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO

import pyarrow as pa

from dlcprune.core.errors import (
    DatasetError,
    EmptyDatasetError,
    InvalidRecordError,
    LimitExceededError,
)
from dlcprune.core.formats.limits import (
    ReadLimits,
    check_samples,
    is_network_error,
    reason,
    split_relative,
)
from dlcprune.core.formats.table import TablePart, TableReader, hf_features

__all__ = ["HfRemoteReader", "StreamPart"]

Opener = Callable[[str], BinaryIO]

_ARROW_ERRORS = (OSError, ValueError, pa.ArrowException)


def _has_dictionary(t: Any) -> bool:
    return pa.types.is_dictionary(t) or any(_has_dictionary(t.field(i).type)
                                            for i in range(t.num_fields))  # fmt: skip


class StreamPart(TablePart):
    """One Arrow IPC stream file, named by ``path`` (its URI) and read through ``opener`` from
    its start on every pass. ``count`` makes the first pass: the row count, and the columns
    asked for kept (copied) in memory until ``release``, and where each batch starts in the file,
    so a later pass from row N seeks to N's batch rather than reading the ones before it (not in
    a file with dictionaries, whose batches need the dictionary messages before them)."""

    def __init__(self, path: str, opener: Opener, limits: ReadLimits) -> None:
        self.path = path
        self.member = None
        self.num_rows = 0
        self._opener = opener
        self._limits = limits
        self._kept: Any = None  # a pyarrow Table of the kept columns, or None
        self._starts: list[tuple[int, int]] = []  # (first row, byte offset) of each batch
        self._first: tuple[Any, Any] | None = None
        # Only the schema now: the file is closed again, so a directory of many Arrow files
        # does not hold one open file and read-ahead buffer per file while it is indexed.
        f, reader = self._open()
        try:
            self.schema = reader.schema
        finally:
            f.close()
        self._seekable = not any(_has_dictionary(f.type) for f in self.schema)

    def _fail(self, exc: BaseException, row: int | None = None) -> DatasetError:
        return DatasetError(f"cannot read the Arrow file: {reason(exc)}", path=self.path, line=row)

    def _open(self) -> tuple[Any, Any]:
        try:
            f = self._opener(self.path)
        except FileNotFoundError:
            raise DatasetError("the Arrow file is not there", path=self.path) from None
        try:
            return f, pa.ipc.open_stream(f)
        except _ARROW_ERRORS as exc:
            f.close()
            if is_network_error(exc):  # the store's connection, retried by the worker
                raise
            raise self._fail(exc) from exc
        except BaseException:
            f.close()
            raise

    def _batches(self, start: int = 0) -> Iterator[tuple[int, int, Any]]:
        """``(first row, byte offset, RecordBatch)`` from the batch holding row ``start`` to the
        end of the file, the bytes counted against ``max_total_bytes`` (one pass)."""
        f, reader = self._first if self._first is not None else self._open()
        self._first = None
        row = used = 0
        try:
            if start and self._starts:
                row, offset = next(s for s in reversed(self._starts) if s[0] <= start)
                f.seek(offset)
            while True:
                offset = f.tell()
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except _ARROW_ERRORS as exc:
                    if is_network_error(exc):
                        raise
                    raise self._fail(exc, row + 1 if row else None) from exc
                used += batch.nbytes
                if used > self._limits.max_total_bytes:
                    raise LimitExceededError(
                        f"Arrow file holds more than {self._limits.max_total_bytes} bytes "
                        "(max_total_bytes)",
                        path=self.path,
                    )
                yield row, offset, batch
                row += batch.num_rows
        finally:
            f.close()

    def count(self, keep: list[str], rows_before: int, dataset: str) -> None:
        """The first pass: count the rows (refusing more than ``max_samples`` with the
        ``rows_before`` of the earlier files as soon as they are seen) and keep ``keep``."""
        kept: list[Any] = []
        starts = []
        total = 0
        for first, offset, batch in self._batches():
            starts.append((first, offset))
            total += batch.num_rows
            check_samples(rows_before + total, self._limits, dataset)
            # ``take`` copies: a column sliced from the batch would hold its whole body alive.
            if keep:
                every = pa.array(range(batch.num_rows), pa.int64())
                copied = [batch.column(c).take(every) for c in keep]
                kept.append(pa.record_batch(copied, names=keep))
        self.num_rows = total
        self._starts = starts if self._seekable else []
        schema = pa.schema([self.schema.field(c) for c in keep])
        self._kept = pa.Table.from_batches(kept, schema=schema)

    def release(self) -> None:
        self._kept = None

    def iter_chunks(self, columns: list[str], start: int, stop: int) -> Iterator[tuple[int, Any]]:
        if self._kept is not None and set(columns) <= set(self._kept.column_names):
            yield start, self._kept.select(columns).slice(start, stop - start)
            return
        batches = self._batches(start)
        try:
            for first, _, batch in batches:
                n = batch.num_rows
                if first >= stop:
                    return
                if first + n <= start:
                    continue
                lo, hi = max(start, first), min(stop, first + n)
                table = pa.Table.from_batches([batch.select(columns)])
                yield lo, table.slice(lo - first, hi - lo)
        finally:
            batches.close()

    def close(self) -> None:
        if self._first is not None:
            self._first[0].close()
            self._first = None
        self._kept = None


class HfRemoteReader(TableReader):
    """A ``save_to_disk`` directory read through ``opener`` (see the module docstring).
    ``path``: the directory's name (a URI); each file is opened as ``path/<name>`` and named so
    in errors. ``source(i)`` is ``row N`` over the whole split, as ``hfdisk`` gives it."""

    format = "hf_dataset"

    def __init__(
        self,
        path: str,
        limits: ReadLimits,
        columns: Mapping[str, str] | None = None,
        *,
        opener: Opener,
    ) -> None:
        super().__init__(path, limits, columns)
        self._opener = opener
        self._base = path.rstrip("/")
        self.split: str | None = None
        folder = ""
        listed = self._json("dataset_dict.json", missing_ok=True)
        if listed is not None:
            folder = self._split(listed) + "/"
        state = self._json(folder + "state.json")
        info = self._json(folder + "dataset_info.json")
        names = self._data_files(state, folder + "state.json")
        parts: list[StreamPart] = []
        try:
            for name in names:
                parts.append(StreamPart(self._uri(folder + name), opener, limits))
            features = info.get("features") if isinstance(info, dict) else None
            if not isinstance(features, dict):
                features = hf_features(parts[0].schema)
            self._open_parts(parts, features)
        except BaseException:
            for part in parts:
                part.close()
            raise

    def _uri(self, name: str) -> str:
        return f"{self._base}/{name}"

    def _json(self, name: str, *, missing_ok: bool = False) -> Any:
        uri = self._uri(name)
        try:
            f = self._opener(uri)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise DatasetError("the saved dataset has no such file", path=uri) from None
        cap = self.limits.max_line_bytes
        with f:
            raw = f.read(cap + 1)
        if len(raw) > cap:
            raise LimitExceededError(f"file is larger than {cap} bytes (max_line_bytes)", path=uri)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise InvalidRecordError(f"not valid JSON: {reason(exc)}", path=uri) from exc

    def _split(self, listed: Any) -> str:
        splits = listed.get("splits") if isinstance(listed, dict) else None
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise InvalidRecordError(
                "'splits' must be a list of names", path=self._uri("dataset_dict.json")
            )
        if "train" in splits:
            split = "train"
        elif len(splits) == 1:
            split = splits[0]
        else:
            raise DatasetError(
                f"several splits and none is 'train' ({', '.join(sorted(splits))}); "
                "reference one split's folder",
                path=self.path,
            )
        parts = split_relative(split, path=self._uri("dataset_dict.json"), what="split name")
        if len(parts) != 1:
            raise DatasetError(f"split name {split!r} is not a folder name", path=self.path)
        self.split = split
        return split

    def _data_files(self, state: Any, where: str) -> list[str]:
        files = state.get("_data_files") if isinstance(state, dict) else None
        uri = self._uri(where)
        if not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("filename"), str) for f in files
        ):
            raise InvalidRecordError("'_data_files' must list filename entries", path=uri)
        if state.get("_indices_data_files"):
            raise DatasetError("a selection saved with its indices is not read", path=uri)
        if not files:
            raise EmptyDatasetError("no Arrow files", path=uri)
        names = []
        for f in files:
            parts = split_relative(f["filename"], path=uri, what="data file name")
            names.append(posixpath.join(*parts))
        return names

    def _open_parts(self, parts: list[StreamPart], features: Mapping[str, Any]) -> None:
        """Choose the columns from the first file's schema, read each file once keeping what
        the index needs, then index from that (``TableReader._setup``)."""
        self._parts = list(parts)
        self._features = dict(features)
        self._choose_columns(self._check_schemas(parts))
        keep = self._index_columns()
        total = 0
        for part in parts:
            part.count(keep, total, self.path)
            total += part.num_rows
        self._setup(parts, self._base, features)
        for part in parts:
            part.release()

    def _check_path(self, raw: Any, loc: dict[str, Any]) -> str:
        raise DatasetError(
            "image stored by path without its bytes: files beside a saved dataset are not read "
            "from a store",
            **{**loc, "member": str(raw)},
        )

    def source(self, i: int) -> str:
        return f"row {i + 1}"

    def close(self) -> None:
        for part in self._parts:
            if isinstance(part, StreamPart):
                part.close()
