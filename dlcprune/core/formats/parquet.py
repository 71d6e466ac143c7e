"""``parquet`` (one Parquet file) and ``hf_parquet`` (a directory of Parquet shards as the
Hugging Face Hub stores a dataset: ``data/train-00000-of-00002.parquet``, ...), read with pyarrow
one row group at a time; what the table holds is told from its columns (see ``table``)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from dlcprune.core.errors import DatasetError, EmptyDatasetError, LimitExceededError
from dlcprune.core.formats.limits import ReadLimits, is_ignored, split_relative
from dlcprune.core.formats.registry import register
from dlcprune.core.formats.table import TABLE_ROLES, ParquetPart, TableReader, hf_features

__all__ = ["HubParquetReader", "ParquetReader", "hub_shards"]

# ``train-00000-of-00002.parquet``: the split, then the shard's number.
_SHARD = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)-\d{5}-of-\d{5}\.parquet$")
# Folders searched below the dataset directory (the Hub puts shards in ``data/`` or in a
# folder per configuration).
_MAX_DEPTH = 3


@register("parquet", suffixes=(".parquet",), roles=TABLE_ROLES)
class ParquetReader(TableReader):
    """One Parquet file; image paths in it are relative to the file's folder."""

    def __init__(
        self,
        path: str,
        limits: ReadLimits,
        columns: Mapping[str, str] | None = None,
        *,
        filesystem: Any = None,
    ) -> None:
        """``filesystem``: an fsspec file system to read ``path`` from (ranged reads of its row
        groups); image bytes must then be in the table, not in files beside it."""
        super().__init__(path, limits, columns)
        part = ParquetPart(path, filesystem=filesystem)
        try:
            self._setup([part], os.path.dirname(os.path.abspath(path)), hf_features(part.schema))
        except BaseException:
            part.close()
            raise


def hub_shards(path: str, limits: ReadLimits) -> dict[str, list[str]]:
    """The Parquet files below directory ``path`` by split, each list in name order.

    A file named ``<split>-NNNNN-of-NNNNN.parquet`` belongs to ``<split>``; any other ``.parquet``
    file to the split named by its folder (``train/0000.parquet``), or ``train`` when it lies
    in ``data/`` or at the top. Hidden folders are skipped; nothing is followed outside ``path``.
    """
    root = os.path.realpath(path)
    splits: dict[str, list[str]] = {}
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        parts = () if rel == "." else tuple(rel.split(os.sep))
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and len(parts) < _MAX_DEPTH
        )
        if is_ignored(parts):
            continue
        for name in sorted(filenames):
            count += 1
            if count > limits.max_members:
                raise LimitExceededError(
                    f"more than {limits.max_members} entries (max_members)", path=path
                )
            if not name.lower().endswith(".parquet") or name.startswith("."):
                continue
            full = os.path.join(dirpath, name)
            if os.path.commonpath([root, os.path.realpath(full)]) != root:
                continue
            match = _SHARD.match(name)
            if match:
                split = match["split"]
            elif parts and parts[-1] != "data":
                split = parts[-1]
            else:
                split = "train"
            splits.setdefault(split, []).append(full)
    return splits


def _is_hub_dir(path: str) -> bool:
    """Parquet files in ``data/``, or shard-named ones (``train-00000-of-00001.parquet``) at the
    top: a class folder holding some other Parquet file stays a class folder."""
    data = os.path.join(path, "data")
    if os.path.isdir(data):
        with os.scandir(data) as it:
            if any(e.name.lower().endswith(".parquet") for e in it):
                return True
    with os.scandir(path) as it:
        return any(e.is_file() and _SHARD.match(e.name) for e in it)


@register("hf_parquet", directory=_is_hub_dir, roles=TABLE_ROLES)
class HubParquetReader(TableReader):
    """A directory of Parquet shards as on the Hugging Face Hub. The ``train`` split is read
    (or the only split there is); the shards of a split are read in name order, and must share
    one schema. Image paths are relative to the directory. Errors name the shard (``member``)
    and the row within it.
    """

    def __init__(
        self, path: str, limits: ReadLimits, columns: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(path, limits, columns)
        if not os.path.isdir(path):
            raise DatasetError("not a directory", path=path)
        splits = hub_shards(path, limits)
        if not splits:
            raise EmptyDatasetError("no Parquet files found", path=path)
        if "train" in splits:
            self.split = "train"
        elif len(splits) == 1:
            self.split = next(iter(splits))
        else:
            raise DatasetError(
                f"several splits and none is 'train' ({', '.join(sorted(splits))}); "
                "reference one split's files",
                path=path,
            )
        root = os.path.realpath(path)
        parts: list[ParquetPart] = []
        try:
            for full in splits[self.split]:
                member = os.path.relpath(full, root).replace(os.sep, "/")
                split_relative(member, path=path, what="shard name")
                parts.append(ParquetPart(full, member=member))
            self._setup(parts, path, hf_features(parts[0].schema))
        except BaseException:
            for part in parts:
                part.close()
            raise
