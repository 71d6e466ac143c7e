"""dlcprune: training-free dataset pruning (DLC scores, FlexRand subsets) as a service.

- ``dlcprune.client``: the Python client; needs httpx alone (``pip install dlcprune``).
- ``dlcprune.core``: the torch-free core shared by the service and the engine (``[server]``).
- ``dlcprune.cli``: the ``dlcprune`` command, on top of everything (docs/architecture.md).

``from dlcprune import Client`` still works: the client's names are loaded on first use, so
importing ``dlcprune.core`` does not load the client, and importing the client loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    # import_module, not "from dlcprune import client": that would ask this very hook first.
    client = importlib.import_module("dlcprune.client")
    if name in client.__all__:
        return getattr(client, name)
    raise AttributeError(f"module 'dlcprune' has no attribute {name!r}")
