"""The dlcprune Python client: ``from dlcprune.client import Client``.

This package needs only httpx: it never imports the service (``app``) or the engine (``worker``).
"""

from __future__ import annotations

from dlcprune.client import (
    Client,
    Dataset,
    DlcpruneError,
    Item,
    Job,
    JobFailed,
    Preview,
    Progress,
    Score,
    Selection,
    WaitTimeout,
    Weights,
)

__all__ = [
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
]
