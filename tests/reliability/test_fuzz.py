"""Schemathesis over the service's own OpenAPI spec, with a valid API key: no 5xx, and every
response matches its documented status, content type and schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.service.data import write_image_zip

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 60  # about 25 operations: 1,500 cases per run


@pytest.fixture(scope="module")
def fuzz_app(service_env: dict[str, str], key_a: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The ASGI app, migrated, with one scored job in tenant A so ids can hit real rows."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from worker.runner import run_job

    app = create_app()
    archive = write_image_zip(tmp_path_factory.mktemp("fuzz") / "c.zip", per_class=3)
    headers = {"Authorization": f"Bearer {key_a}"}
    with TestClient(app) as client:
        with open(archive, "rb") as fh:
            ds = client.post("/v1/datasets", files={"file": ("c.zip", fh)}, headers=headers)
        job = client.post(
            "/v1/jobs",
            json={"dataset_id": ds.json()["id"], "params": {"image_size": 16, "levels": 1}},
            headers=headers,
        ).json()
        run_job(job["id"])
        yield app


def test_no_server_errors_and_documented_responses(fuzz_app, key_a: str) -> None:  # type: ignore[no-untyped-def]
    """Every operation of the spec, EXAMPLES_PER_OPERATION generated cases each."""
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    headers = {"Authorization": f"Bearer {key_a}"}
    count = 0
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case) -> None:  # type: ignore[no-untyped-def]
            nonlocal count
            count += 1
            case.call_and_validate(
                headers=headers,
                checks=[
                    checks.not_a_server_error,
                    checks.status_code_conformance,
                    checks.content_type_conformance,
                    checks.response_schema_conformance,
                ],
            )

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then fail once
            failures.append(f"{operation.label}: {exc}")
    print(f"schemathesis: {len(operations)} operations, {count} generated cases")
    assert not failures, "\n\n".join(failures)
    assert count >= 1000
