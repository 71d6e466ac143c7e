"""Subset selection over cached scores (FlexRand and friends): pure numpy, no torch."""

from dlcprune.core.selection.strategies import (
    DEFAULT_SPLIT,
    STRATEGIES,
    SelectionError,
    Subset,
    allocate,
    flexrand_counts,
    resolve_keep,
    select,
)

__all__ = [
    "DEFAULT_SPLIT",
    "STRATEGIES",
    "SelectionError",
    "Subset",
    "allocate",
    "flexrand_counts",
    "resolve_keep",
    "select",
]
