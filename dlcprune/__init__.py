"""dlcprune: training-free dataset pruning (DLC scores, FlexRand subsets) as a service.

- ``dlcprune.client``: the Python client; needs httpx alone (``pip install dlcprune``).
- ``dlcprune.core``: the torch-free core shared by the service and the engine (``[server]``).
- ``dlcprune.cli``: the ``dlcprune`` command, on top of everything (docs/architecture.md).

``from dlcprune import Client`` still works: the client's names are loaded on first use, so
importing ``dlcprune.core`` does not load the client, and importing the client loads nothing else.
"""

from __future__ import annotations

from typing import Any

_CLIENT_NAMES = (
    "Client",
    "Dataset",
    "DlcpruneError",
    "Item",
    "Job",
    "JobFailed",
    "Preview",
    "Progress",
    "Score",
    "Selection",
    "WaitTimeout",
    "Weights",
)

__all__ = list(_CLIENT_NAMES)


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from dlcprune import client

        return getattr(client, name)
    raise AttributeError(f"module 'dlcprune' has no attribute {name!r}")
