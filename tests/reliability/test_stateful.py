"""Schemathesis, stateful, over the spec's links (issue 15): sequences of calls that follow
``links`` from a created resource to what can be done with it (read, list, cancel, select,
download, delete), every check schemathesis has switched on, ``ignored_auth`` included (each
operation is also sent without a key and with a wrong one: 401). No failure is allowed.

The checks run as schemathesis ships them, with one setting: ``positive_data_acceptance`` also
accepts 409 and 422, the answers a schema cannot foresee (a reference to a file that does not
exist, a selection of a job that has no scores yet, a dataset that is not an archive)."""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

pytestmark = pytest.mark.slow

BUDGET_S = 45.0


@pytest.fixture(scope="module")
def stateful_app(service_env: dict[str, str]):  # type: ignore[no-untyped-def]
    from app.main import create_app

    return create_app()


def test_stateful_links_pass_every_check(stateful_app, key_a: str) -> None:  # type: ignore[no-untyped-def]
    config = schemathesis.Config.from_dict(
        {
            "checks": {
                "enabled": True,
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
                },
            },
        }
    )
    checks = config.projects.get_default().checks
    for name in ("ignored_auth", "use_after_free", "ensure_resource_availability"):
        assert getattr(checks, name).enabled, name
    schema = schemathesis.openapi.from_asgi("/openapi.json", stateful_app, config=config)
    links = sum(
        len(resp.get("links", {}))
        for item in schema.raw_schema["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
        for resp in op.get("responses", {}).values()
    )
    assert links >= 20, links
    headers = {"Authorization": f"Bearer {key_a}"}
    started = time.monotonic()
    steps = 0

    class Machine(schema.as_state_machine()):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case):  # type: ignore[no-untyped-def]
            return {"headers": headers}

        def after_call(self, response, case) -> None:  # type: ignore[no-untyped-def]
            nonlocal steps
            steps += 1

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=40,
            derandomize=True,  # the same sequences every run: a failure reproduces
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    elapsed = time.monotonic() - started
    print(f"schemathesis stateful: {steps} calls in {elapsed:.1f} s, {links} links")
    assert steps >= 100
    assert elapsed < BUDGET_S * 2
