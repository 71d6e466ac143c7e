"""``dlcprune``: score a dataset with DLC and select pruned subsets, on this machine or against a
running service.

    dlcprune score DATA --model efficientnet_lite0 --image-size 64 --levels 50 --out scores.csv
    dlcprune select scores.csv --keep 0.3 --strategy flexrand --out subset.txt
    dlcprune serve | worker | migrate | keys create --tenant NAME
    dlcprune remote upload data.zip
    dlcprune remote score DATASET_ID --image-size 64 --levels 10 --wait
    dlcprune remote select JOB_ID --keep 0.3 --out subset.txt
    dlcprune remote download SELECTION_ID --out exports/
    dlcprune remote status JOB_ID --json

The typer app is in ``commands``; the commands live by concern: ``local`` (score, select: the
engine, imported lazily), ``service`` (serve, worker, migrate, keys) and ``remote``
(``dlcprune.client``); ``options`` generates the scoring options from ``dlcprune.core.params``.
This module imports nothing itself, so that without the server extra (``pip install .`` is the
client alone) ``main`` can say what to install. Errors print one line
(``dlcprune: error: ...``; ``dlcprune: error: <code>: <message>`` for the service's errors) and
exit with status 1 (2 for bad usage).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

# What the command line needs beyond the client: `pip install .` is the client alone (httpx).
_SERVER_EXTRA = frozenset({"typer", "click", "numpy", "PIL", "pydantic", "pyarrow"})


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: run the command line ``argv`` (default: ``sys.argv[1:]``)."""
    try:
        from dlcprune.cli.commands import run
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _SERVER_EXTRA:
            raise
        print(
            f"dlcprune: error: the command line needs the server extra ({exc.name} is not "
            'installed): pip install ".[server]" from a checkout (the Python client alone '
            "needs only httpx)",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    run(argv)


def __getattr__(name: str) -> Any:
    if name in ("app", "command", "CLIError"):
        from dlcprune.cli import commands as module

        return getattr(module, name)
    raise AttributeError(f"module 'dlcprune.cli' has no attribute {name!r}")


__all__ = ["CLIError", "app", "command", "main"]
