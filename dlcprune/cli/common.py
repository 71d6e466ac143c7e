"""What the command groups share: the one-line error, progress bars and JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any


class CLIError(Exception):
    """An error to print as one line."""


def permille_bar() -> Any:
    """A tqdm bar on stderr counting thousandths of a job, shown as a percentage."""
    from tqdm import tqdm

    return tqdm(
        total=1000,
        unit="‰",
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
    )


def wants_bar(quiet: bool, forced: bool) -> bool:
    """A bar on a terminal, or anywhere with ``--progress``; never with ``--quiet``."""
    return not quiet and (forced or sys.stderr.isatty())


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))
