"""The dashboard's API tests run on the service's test rig (PostgreSQL, in-process TestClient);
its fixtures are registered here for this folder."""

from tests.service.conftest import (  # noqa: F401
    api_a,
    api_b,
    app_client,
    key_a,
    key_b,
    pg_url,
    service_env,
)
