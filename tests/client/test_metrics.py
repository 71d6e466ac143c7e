"""Prometheus metrics at ``/metrics``: database-derived families read at scrape time, request and
selection metrics observed in the API process, and a scrape that survives a broker or database
that is down."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.client.conftest import FAST
from tests.conftest import Api, finish, free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(app_client) -> Samples:  # type: ignore[no-untyped-def]
    resp = app_client.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_need_no_key_and_stay_out_of_the_spec(app_client) -> None:  # type: ignore[no-untyped-def]
    samples = scrape(app_client)  # no Authorization header
    assert value(samples, "dlcprune_database_up") == 1.0
    assert "/metrics" not in app_client.get("/openapi.json").json()["paths"]
    assert ("process_cpu_seconds_total", frozenset()) in samples


def test_a_finished_job_shows_in_the_metrics(app_client, key_a: str, colours) -> None:  # type: ignore[no-untyped-def]

    api = Api(app_client, key_a)
    before = scrape(app_client)
    ds = api.upload(colours).json()
    params = {**FAST, "levels": 5}  # scores no other test of tenant A has cached
    job = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": params}).json()
    queued = scrape(app_client)
    assert value(queued, "dlcprune_jobs", state="queued") >= 1
    assert value(queued, "dlcprune_queue_depth", source="database") >= 1
    assert finish(job) == "succeeded"
    job = api.get(f"/v1/jobs/{job['id']}").json()
    after = scrape(app_client)

    succeeded = value(after, "dlcprune_jobs", state="succeeded")
    assert succeeded == value(before, "dlcprune_jobs", state="succeeded") + 1
    count = "dlcprune_job_duration_seconds_count"
    assert value(after, count, state="succeeded") == value(before, count, state="succeeded") + 1
    assert value(after, count, state="succeeded") >= 1
    run_s = job["timings"]["run_s"]
    total = "dlcprune_job_duration_seconds_sum"
    grew = value(after, total, state="succeeded") - value(before, total, state="succeeded")
    assert grew == pytest.approx(run_s, abs=0.01)
    inf = value(after, "dlcprune_job_duration_seconds_bucket", state="succeeded", le="+Inf")
    assert inf == value(after, count, state="succeeded")
    # samples x passes (the unmasked pass plus one per level and draw): 24 x (1 + 5 x 1)
    passes = 1 + job["params"]["levels"] * job["params"]["draws"]
    scored = value(after, "dlcprune_samples_scored_total") - value(
        before, "dlcprune_samples_scored_total"
    )
    assert scored == ds["num_samples"] * passes == 144

    # A job answered from the cache adds nothing to the samples scored or the durations.
    cached = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": params}).json()
    assert cached["cached"] is True
    again = scrape(app_client)
    assert value(again, "dlcprune_samples_scored_total") == value(
        after, "dlcprune_samples_scored_total"
    )
    assert value(again, count, state="succeeded") == value(after, count, state="succeeded")
    assert value(again, "dlcprune_jobs", state="succeeded") == succeeded + 1


def test_selection_latency_and_request_counters(app_client, key_a: str, scored: dict) -> None:  # type: ignore[no-untyped-def]
    api = Api(app_client, key_a)
    before = scrape(app_client)
    url = f"/v1/jobs/{scored['job']['id']}/selections"
    assert api.post(url, json={"keep": 0.5}).status_code == 201
    assert api.post(url, json={"keep": 0.25, "seed": 3}).status_code == 201
    assert api.post(url, json={"keep": 99}).status_code == 422  # refused: not observed
    assert api.get(f"/v1/jobs/{uuid.uuid4()}").status_code == 404
    assert app_client.get("/no/such/path").status_code == 404
    after = scrape(app_client)
    count = "dlcprune_selection_create_seconds_count"
    assert value(after, count) == value(before, count) + 2
    assert value(after, "dlcprune_selection_create_seconds_sum") > value(
        before, "dlcprune_selection_create_seconds_sum"
    )

    requests = "dlcprune_http_requests_total"
    route = "/v1/jobs/{job_id}/selections"
    for labels, grew in (
        ({"method": "POST", "route": route, "status": "201"}, 2),
        ({"method": "POST", "route": route, "status": "422"}, 1),
        ({"method": "GET", "route": "/v1/jobs/{job_id}", "status": "404"}, 1),
        ({"method": "GET", "route": "<unmatched>", "status": "404"}, 1),
    ):
        assert value(after, requests, **labels) - value(before, requests, **labels) == grew
    # Raw paths (ids) never become label values.
    assert not any(
        "selections" in dict(k[1]).get("route", "") and "-" in dict(k[1])["route"]
        for k in after
        if k[0] == requests
    )
    latency = "dlcprune_http_request_duration_seconds_count"
    assert value(after, latency, method="POST", route=route) >= 3


def test_the_scrape_survives_a_broker_and_a_database_that_are_down(app_client) -> None:  # type: ignore[no-untyped-def]
    from app import metrics
    from app.config import get_settings

    up = scrape(app_client)
    assert value(up, "dlcprune_broker_up") == 1.0  # the test rig's Redis
    assert ("dlcprune_queue_depth", frozenset({("source", "broker")})) in up

    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    dead_pg = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    settings = get_settings()
    try:
        metrics.DATABASE.settings_fn = lambda: settings.model_copy(
            update={"broker_url": dead_redis}
        )
        no_broker = scrape(app_client)
        assert value(no_broker, "dlcprune_broker_up") == 0.0
        assert ("dlcprune_queue_depth", frozenset({("source", "broker")})) not in no_broker
        assert value(no_broker, "dlcprune_database_up") == 1.0
        assert ("dlcprune_jobs", frozenset({("state", "queued")})) in no_broker

        metrics.DATABASE.settings_fn = lambda: settings.model_copy(
            update={"broker_url": dead_redis, "database_url": dead_pg}
        )
        nothing = scrape(app_client)
        assert value(nothing, "dlcprune_database_up") == 0.0
        assert value(nothing, "dlcprune_broker_up") == 0.0
        assert any(k[0] == "dlcprune_http_requests_total" for k in nothing)
    finally:
        metrics.DATABASE.settings_fn = get_settings
        from app.db import dispose_engines

        dispose_engines()


def test_the_collector_on_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same SQL on SQLite (the embedded default), durations included."""
    from datetime import timedelta

    from app import metrics
    from app.config import Settings
    from app.db import migrate, session_scope
    from app.models import Dataset, Job, JobStatus, ScoreSet, Tenant, utcnow

    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'metrics.db'}",
        broker_url="",
        blob_url=str(tmp_path / "blobs"),
    )
    migrate(settings)
    with session_scope(settings) as session:
        tenant = Tenant(name="t")
        session.add(tenant)
        session.flush()
        ds = Dataset(tenant_id=tenant.id, source="upload", status="ready", num_samples=10)
        session.add(ds)
        session.flush()
        score_set = ScoreSet(
            tenant_id=tenant.id,
            cache_key="k",
            dataset_id=ds.id,
            method="dlc",
            model="m",
            params={},
            num_samples=10,
            scores=b"",
        )
        session.add(score_set)
        session.flush()
        now = utcnow()
        for seconds, status, cached in (
            (2.5, "succeeded", False),
            (40.0, "failed", False),
            (0.0, "succeeded", True),
        ):
            session.add(
                Job(
                    tenant_id=tenant.id,
                    dataset_id=ds.id,
                    model="m",
                    method="dlc",
                    params={"levels": 4, "draws": 2},
                    cache_key="k",
                    status=status,
                    cached=cached,
                    score_set_id=score_set.id if status == JobStatus.succeeded else None,
                    started_at=now - timedelta(seconds=seconds),
                    finished_at=now,
                )
            )
        session.commit()
    collector = metrics.DatabaseCollector(lambda: settings)
    families = {f.name: f for f in collector.collect()}
    samples = {
        (s.name, frozenset(s.labels.items())): s.value for f in families.values() for s in f.samples
    }
    assert value(samples, "dlcprune_jobs", state="succeeded") == 2
    assert value(samples, "dlcprune_job_duration_seconds_count", state="succeeded") == 1
    assert value(samples, "dlcprune_job_duration_seconds_bucket", state="succeeded", le="1.0") == 0
    assert value(samples, "dlcprune_job_duration_seconds_bucket", state="succeeded", le="5.0") == 1
    assert value(samples, "dlcprune_job_duration_seconds_sum", state="succeeded") == pytest.approx(
        2.5, abs=0.01
    )
    assert value(samples, "dlcprune_job_duration_seconds_bucket", state="failed", le="30.0") == 0
    assert value(samples, "dlcprune_job_duration_seconds_bucket", state="failed", le="60.0") == 1
    assert value(samples, "dlcprune_samples_scored_total") == 10 * (1 + 4 * 2)
    assert "dlcprune_broker_up" not in families  # embedded: no broker


def test_the_backlog_counts_queued_and_running_work(app_client, key_a: str, colours) -> None:  # type: ignore[no-untyped-def]
    """/metrics/backlog (no key): jobs queued or running per kind, what autoscaling reads."""
    api = Api(app_client, key_a)
    before = app_client.get("/metrics/backlog").json()
    assert set(before) == {"index", "score", "shards", "export", "evaluate", "gpu"}
    ds = api.upload(colours).json()
    job = api.post(
        "/v1/jobs", json={"dataset_id": ds["id"], "params": {**FAST, "levels": 11}}
    ).json()
    during = app_client.get("/metrics/backlog").json()
    assert during["score"] == before["score"] + 1 and during["gpu"] == before["gpu"] + 1
    samples = scrape(app_client)
    assert value(samples, "dlcprune_backlog", kind="score") == during["score"]
    api.post(f"/v1/jobs/{job['id']}/cancel")
    assert app_client.get("/metrics/backlog").json()["score"] == before["score"]
