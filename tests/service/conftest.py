"""Fixtures of the service tests: the HTTP-contract tests' tenants and images
(test_http_contract.py, test_http_auth_limits.py) and the S3 server of the object-store tests
(tests/service/stores.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Api, make_key
from tests.service.data import write_image_zip


@pytest.fixture
def api(app_client: TestClient) -> Api:
    """A tenant of its own: counts of its resources are this test's alone."""
    return Api(app_client, make_key(f"contract-{uuid.uuid4().hex[:8]}"))


@pytest.fixture
def hooks_allowed(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Webhook targets on loopback pass the SSRF guard (as an operator's allowed networks)."""
    from app.config import reset_settings

    monkeypatch.setenv("DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_zip(tmp_path_factory.mktemp("contract") / "colours.zip", per_class=4)


# The S3 server of the object-store tests (tests/service/stores.py).
from tests.service.stores import bucket, s3  # noqa: E402, F401
