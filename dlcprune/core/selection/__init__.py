"""Subset selection over cached scores (FlexRand and friends): pure numpy, no torch.

- :mod:`.strategies`: :func:`select`, the entry point, and its result :class:`Subset`;
- :mod:`.rules`: the integer rules (:func:`resolve_keep`, :func:`allocate`,
  :func:`flexrand_counts`) and :class:`SelectionError`;
- :mod:`.order`: the score order and the seeded draws;
- :mod:`.ccs`: coverage-centric selection.

The strategy names and the defaults (:data:`DEFAULT_SPLIT`, :data:`DEFAULT_HARD_CUTOFF`) are
defined once, in :mod:`dlcprune.names`, and re-exported here for the callers that select.
Why FlexRand's split defaults to 0.3 (bench/quality.py, docs/quality.md): averaged over clean digits
and digits with 20% of the labels flipped, 0.3 trained best, since its hard half is drawn from a
wider pool and so keeps fewer mislabelled samples; on the clean set alone 0.5 and 0.7 did better.
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
