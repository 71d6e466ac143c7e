"""A selection's parameters, defined once: ``keep``, ``strategy``, ``split``, ``seed`` and
``hard_cutoff`` with their defaults, bounds and help, by the same ``param``/``Spec`` machinery as
``dlcprune.core.params.DLCParams``.

From ``SelectionParams`` come the API's request schema (``app.selections.schemas.SelectionCreate``)
and the options of ``dlcprune select`` and ``dlcprune remote select``
(``dlcprune.cli.options.param_options``). The bounds here are what the API checks before a
strategy runs; :func:`dlcprune.core.selection.select` checks the same values again with its own
rules, and ``keep``'s (a ratio or a count) are :func:`dlcprune.core.selection.resolve_keep`'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dlcprune.core.params import check_fields, param, required_param
from dlcprune.names import (
    DEFAULT_HARD_CUTOFF,
    DEFAULT_SPLIT,
    DEFAULT_STRATEGY,
    SELECTION_STRATEGIES,
)

__all__ = ["SelectionParams"]


@dataclass(frozen=True)
class SelectionParams:
    """What a selection asks for; the names are the API's (``hard_cutoff``) and the CLI options'
    (``--hard-cutoff``).

    ``keep`` has no default. It is a float or an int: a ratio in (0, 1], or a count when it is a
    whole number above 1 (``resolve_keep``); its bound here is only the API's ``> 0``.
    """

    keep: float = required_param(
        "a ratio in (0, 1], or a count of samples (a whole number above 1)", gt=0
    )
    strategy: str = param(
        DEFAULT_STRATEGY,
        "flexrand (the default), easy / hard (top-K lowest / highest scores per class), random, "
        "stratified (random per class), or ccs (coverage-centric: the hardest hard_cutoff share "
        "dropped, the rest drawn evenly across score strata); over the job's kept embeddings: "
        "kcenter (k-Center greedy), herding, moderate (Moderate-DS)",
        choices=SELECTION_STRATEGIES,
    )
    split: float = param(
        DEFAULT_SPLIT,
        "FlexRand's easy share g: the easy pool is that share of each class's lowest scores, and "
        "half the kept samples come from each pool",
        ge=0,
        le=1,
    )
    seed: int = param(0, "seed of the random draws", ge=0, le=2**63 - 1)
    hard_cutoff: float = param(
        DEFAULT_HARD_CUTOFF, "ccs: the share of hardest samples dropped", ge=0, lt=1
    )

    def validate(self) -> SelectionParams:
        """Every field against its definition; raises ParameterError. Returns self."""
        check_fields(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The keyword arguments of :func:`dlcprune.core.selection.select`."""
        return asdict(self)
