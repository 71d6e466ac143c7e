"""``hf_dataset``: a directory written by Hugging Face ``datasets``' ``save_to_disk``, opened with
``datasets.load_from_disk`` (memory-mapped Arrow, nothing copied). ``Image`` features are read as
their stored ``{bytes, path}`` and decoded by our own safe decoder; ``ClassLabel`` features give
the label names. A ``DatasetDict`` directory gives its ``train`` split (or its only split)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dlcprune.core.errors import DatasetError
from dlcprune.core.formats.limits import ReadLimits, reason
from dlcprune.core.formats.registry import register
from dlcprune.core.formats.table import TABLE_ROLES, ArrowPart, TableReader

__all__ = ["HfDatasetReader"]


def _is_saved_dataset(path: str) -> bool:
    def has(name: str) -> bool:
        return os.path.isfile(os.path.join(path, name))

    return has("dataset_dict.json") or (has("state.json") and has("dataset_info.json"))


def _features_json(features: Any) -> dict[str, Any]:
    """``{column: {"_type": ..., "names": ...}}`` of the top-level features."""
    import datasets

    out: dict[str, Any] = {}
    for name, feature in features.items():
        if isinstance(feature, datasets.ClassLabel):
            out[name] = {"_type": "ClassLabel", "names": list(feature.names)}
        elif isinstance(feature, datasets.Image):
            out[name] = {"_type": "Image"}
    return out


@register("hf_dataset", directory=_is_saved_dataset, roles=TABLE_ROLES)
class HfDatasetReader(TableReader):
    """A ``save_to_disk`` directory (see the module docstring); image paths stored without
    bytes are relative to the directory."""

    def __init__(
        self, path: str, limits: ReadLimits, columns: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(path, limits, columns)
        import datasets

        try:
            loaded = datasets.load_from_disk(path, keep_in_memory=False)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"cannot open the saved dataset: {reason(exc)}", path=path) from exc
        if isinstance(loaded, datasets.DatasetDict):
            splits = list(loaded)
            if "train" in loaded:
                self.split = "train"
            elif len(splits) == 1:
                self.split = splits[0]
            else:
                raise DatasetError(
                    f"several splits and none is 'train' ({', '.join(sorted(splits))}); "
                    "reference one split's folder",
                    path=path,
                )
            ds = loaded[self.split]
        else:
            self.split = None
            ds = loaded
        if ds._indices is not None:  # a selection saved without flattening
            ds = ds.flatten_indices()
        table = ds.data.table
        self._dataset = ds
        self._setup([ArrowPart(table, path)], path, _features_json(ds.features))

    def close(self) -> None:
        self._dataset = None
