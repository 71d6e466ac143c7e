"""Rig of the webhook tests: the service's fixtures (PostgreSQL, Redis, the in-process app), and
``loopback_allowed``: this process's settings let webhook targets on 127.0.0.0/8 through (the
receivers run there), as an operator's DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.config import Settings, get_settings, reset_settings
from tests.service.conftest import (  # noqa: F401 - fixtures re-exported for these tests
    Api,
    api_a,
    api_b,
    app_client,
    key_a,
    key_b,
    pg_url,
    service_env,
)


@pytest.fixture
def loopback_allowed(
    service_env: dict[str, str],  # noqa: F811 - the fixture re-exported above
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator:
    monkeypatch.setenv("DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def sender_settings(**changes: object) -> Settings:
    """This process's settings for calling the sender directly: retries at once by default."""
    update = {"webhook_retry_schedule": [0.0, 0.0, 0.0], "webhook_timeout_s": 5.0, **changes}
    return get_settings().model_copy(update=update)
