"""Subset selection over cached scores (FlexRand and friends): pure numpy, no torch.

- :mod:`.strategies`: :func:`select`, the entry point, and its result :class:`Subset`;
- :mod:`.rules`: the integer rules (:func:`resolve_keep`, :func:`allocate`,
  :func:`flexrand_counts`) and :class:`SelectionError`;
- :mod:`.order`: the score order and the seeded draws;
- :mod:`.ccs`: coverage-centric selection.

The strategy names and the defaults (:data:`DEFAULT_SPLIT`, :data:`DEFAULT_HARD_CUTOFF`) are
defined once, in :mod:`dlcprune.names`, and re-exported here for the callers that select.
FlexRand's split defaults to the paper's 0.5: bench/quality.py ran 0.3, 0.45, 0.5, 0.55 and 0.7
over 10 paired seeds on four datasets and no difference from 0.5 had a 95% interval that excluded
zero (docs/quality.md).
"""

from dlcprune.core.selection.ccs import ccs_select
from dlcprune.core.selection.rules import SelectionError, allocate, flexrand_counts, resolve_keep
from dlcprune.core.selection.strategies import Subset, select
from dlcprune.names import DEFAULT_HARD_CUTOFF, DEFAULT_SPLIT, DEFAULT_STRATEGY, STRATEGIES

__all__ = [
    "DEFAULT_HARD_CUTOFF",
    "DEFAULT_SPLIT",
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "SelectionError",
    "Subset",
    "allocate",
    "ccs_select",
    "flexrand_counts",
    "resolve_keep",
    "select",
]
