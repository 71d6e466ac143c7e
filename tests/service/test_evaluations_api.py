"""Evaluations: 202 + Location, run by the worker's task function, a result with intervals and a
recommendation, the plot, one-call selection, cancel, and every refusal as a 4xx naming it."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import Api, finish
from tests.problems import error_code
from tests.service.data import write_image_zip
from worker.evaluate import run_evaluation

FAST = {"image_size": 32, "levels": 2}
BODY = {"strategies": ["flexrand", "moderate"], "keep": [0.5, 0.3], "seeds": 3, "holdout": 0.2}


@pytest.fixture(scope="module")
def job(app_client, key_a: str, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[no-untyped-def]
    api = Api(app_client, key_a)
    path = write_image_zip(tmp_path_factory.mktemp("ev") / "ev.zip", per_class=10, seed=13)
    ds = api.upload(path).json()
    posted = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert finish(posted) == "succeeded"
    return api.get(f"/v1/jobs/{posted['id']}").json()


def test_an_evaluation_runs_to_a_result(app_client, api_a: Api, job: dict) -> None:  # type: ignore[no-untyped-def]
    before = app_client.get("/metrics/backlog").json()["evaluate"]
    r = api_a.post(f"/v1/jobs/{job['id']}/evaluations", json=BODY)
    assert r.status_code == 202, r.text
    # A queued evaluation is work waiting on the "evaluate" queue: autoscaling sees it.
    assert app_client.get("/metrics/backlog").json()["evaluate"] == before + 1
    ev = r.json()
    assert r.headers["location"].endswith(f"/v1/evaluations/{ev['id']}")
    assert ev["status"] == "queued" and "frozen-feature proxy" in ev["probe"]
    # 3 strategies (the control first) x 2 ratios x 3 seeds, and the full set
    assert ev["progress"]["total"] == 3 * 2 * 3 + 1
    assert run_evaluation(ev["id"]) == "succeeded"
    assert app_client.get("/metrics/backlog").json()["evaluate"] == before
    got = api_a.get(f"/v1/evaluations/{ev['id']}")
    cached = api_a.get(
        f"/v1/evaluations/{ev['id']}", headers={"If-None-Match": got.headers["etag"]}
    )
    assert cached.status_code == 304
    done = got.json()
    assert done["status"] == "succeeded" and done["progress"]["fraction"] == 1.0
    result = done["result"]
    assert result["strategies"] == ["stratified", "flexrand", "moderate"]
    assert result["keep"] == [0.3, 0.5] and result["holdout"]["size"] == 6
    assert len(result["cells"]) == 6 and result["train_pool_size"] == 24
    for cell in result["cells"]:
        acc = cell["accuracy"]
        assert acc["n"] == 3 and acc["low"] <= acc["mean"] <= acc["high"]
        assert cell["size"] == {0.3: 7, 0.5: 12}[cell["keep"]]
        if cell["strategy"] == "stratified":
            assert cell["difference_from_control"] is None
        else:
            assert cell["difference_from_control"]["n"] == 3
    full = result["full"]["accuracy"]
    rec = result["recommendation"]
    if rec is not None:
        assert rec["accuracy"]["low"] >= full - 0.01 - 1e-12
    # the same request gives the same result
    again = api_a.post(f"/v1/jobs/{job['id']}/evaluations", json=BODY).json()
    run_evaluation(again["id"])
    assert api_a.get(f"/v1/evaluations/{again['id']}").json()["result"] == result
    listed = api_a.get(f"/v1/jobs/{job['id']}/evaluations").json()
    assert listed["total"] >= 2
    png = api_a.get(f"/v1/evaluations/{ev['id']}/plot.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    svg = api_a.get(f"/v1/evaluations/{ev['id']}/plot.svg")
    assert svg.status_code == 200 and b"<svg" in svg.content
    sel = api_a.post(f"/v1/evaluations/{ev['id']}/select")
    if rec is None:
        assert sel.status_code == 409
    else:
        assert sel.status_code == 201, sel.text
        assert sel.json()["strategy"] == rec["strategy"] and sel.json()["keep"] == rec["keep"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**BODY, "strategies": ["nope"]}, 422, "unknown_strategy"),
        ({**BODY, "keep": [0.5, 1.0]}, 422, "invalid_keep"),
        ({**BODY, "keep": [0.0]}, 422, "invalid_keep"),
        ({**BODY, "keep": [0.01]}, 422, "invalid_keep"),  # 1% of 24 samples keeps none
        ({**BODY, "keep": []}, 422, "validation_error"),
        ({**BODY, "seeds": 1}, 422, "validation_error"),
    ],
)
def test_bad_requests_name_the_problem(
    api_a: Api, job: dict, body: dict, status: int, code: str
) -> None:
    r = api_a.post(f"/v1/jobs/{job['id']}/evaluations", json=body)
    assert r.status_code == status, r.text
    assert error_code(r) == code


def test_cancel_and_tenancy(api_a: Api, api_b: Api, job: dict) -> None:
    ev = api_a.post(f"/v1/jobs/{job['id']}/evaluations", json=BODY).json()
    assert api_b.get(f"/v1/evaluations/{ev['id']}").status_code == 404
    c = api_a.post(f"/v1/evaluations/{ev['id']}/cancel")
    assert c.status_code == 200 and c.json()["status"] == "cancelled"
    assert run_evaluation(ev["id"]) == "skipped"
    again = api_a.post(f"/v1/evaluations/{ev['id']}/cancel")
    assert again.status_code == 409 and error_code(again) == "evaluation_finished"
    plot = api_a.get(f"/v1/evaluations/{ev['id']}/plot.png")
    assert plot.status_code == 409 and error_code(plot) == "evaluation_not_ready"


@pytest.fixture
def loopback_allowed(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from app.config import reset_settings

    monkeypatch.setenv("DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def test_a_finished_evaluation_is_a_webhook_event(
    api_a: Api, job: dict, loopback_allowed: None
) -> None:
    hook = api_a.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["evaluation.succeeded"]},
    ).json()
    try:
        ev = api_a.post(f"/v1/jobs/{job['id']}/evaluations", json=BODY).json()
        assert run_evaluation(ev["id"]) == "succeeded"
        items = api_a.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
        mine = [d for d in items if d["event"] == "evaluation.succeeded"]
        assert len(mine) == 1
        payload = mine[0]["payload"]
        assert payload["type"] == "evaluation.succeeded"
        assert payload["data"]["id"] == ev["id"] and payload["data"]["result"] is not None
    finally:
        api_a.delete(f"/v1/webhooks/{hook['id']}")


def test_the_reaper_requeues_an_evaluation_whose_worker_died(api_a: Api, job: dict) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from app.config import get_settings
    from app.db import session_factory
    from app.evaluations import service as evaluations
    from app.models import Evaluation, utcnow
    from worker.reaper import reap

    ev = api_a.post(f"/v1/jobs/{job['id']}/evaluations", json=BODY).json()
    settings = get_settings()
    with session_factory(settings)() as session:
        claimed = evaluations.claim(session, uuid.UUID(ev["id"]), "dead", timedelta(seconds=10))
        assert claimed is not None and claimed.status == "running"
        session.execute(
            update(Evaluation)
            .where(Evaluation.id == uuid.UUID(ev["id"]))
            .values(heartbeat_at=utcnow() - timedelta(hours=1))
        )
        session.commit()
    counts = reap(settings)
    assert counts["requeued"] >= 1
    assert api_a.get(f"/v1/evaluations/{ev['id']}").json()["status"] == "queued"
    assert run_evaluation(ev["id"]) == "succeeded"


def test_idempotency_key_on_evaluations(api_a: Api, job: dict) -> None:
    headers = {"Idempotency-Key": f"ev-{uuid.uuid4().hex}"}
    first = api_a.post(f"/v1/jobs/{job['id']}/evaluations", json=BODY, headers=headers)
    again = api_a.post(f"/v1/jobs/{job['id']}/evaluations", json=BODY, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = api_a.post(
        f"/v1/jobs/{job['id']}/evaluations", json={**BODY, "seeds": 4}, headers=headers
    )
    assert other.status_code == 409 and error_code(other) == "idempotency_key_reused"
    api_a.post(f"/v1/evaluations/{first.json()['id']}/cancel")
