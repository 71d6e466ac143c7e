"""Store exports never stick ``queued`` or ``running`` (issue 14's review): an error after the
claim fails the export with a code; a worker lost mid-export leaves a stale heartbeat that the
reaper turns back into a queued export (and a failed one after ``max_attempts``); a queued export
the broker never got is sent again. Real PostgreSQL, Redis and files; exports into ``file://``
targets below the service's file root."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.conftest import Api, finish, make_key
from tests.service.data import write_image_zip

FAST = {"image_size": 32, "levels": 2}
STALE = timedelta(seconds=10)


@pytest.fixture(scope="module")
def api(app_client: TestClient) -> Api:
    return Api(app_client, make_key(f"exports-{uuid.uuid4().hex[:8]}"))


@pytest.fixture(scope="module")
def selection(api: Api, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A selection of 6 of 12 scored images (one scoring for the module)."""
    images = write_image_zip(tmp_path_factory.mktemp("exports") / "colours.zip", per_class=4)
    ds = api.upload(images).json()
    job = api.post("/v1/jobs", json={"dataset_id": ds["id"], "params": FAST}).json()
    assert finish(job) == "succeeded"
    sel = api.post(f"/v1/jobs/{job['id']}/selections", json={"keep_ratio": 0.5})
    assert sel.status_code == 201, sel.text
    assert sel.json()["size"] == 6
    return sel.json()


@pytest.fixture
def target(service_env: dict[str, str]) -> Iterator[Path]:
    """An empty prefix below the file root, as a path (the export's uri is ``file://`` it)."""
    path = Path(service_env["DLCPRUNE_FILE_ROOTS"]) / f"out-{uuid.uuid4().hex[:8]}"
    yield path


def create(api: Api, selection: dict, target: Path, fmt: str = "manifest-csv") -> dict:
    resp = api.post(
        f"/v1/selections/{selection['id']}/exports",
        json={"uri": f"file://{target}/", "format": fmt},
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "queued"
    return resp.json()


def row(export_id: str):  # type: ignore[no-untyped-def]
    from app.db import session_factory
    from app.models import StoreExport

    with session_factory()() as session:
        found = session.get(StoreExport, uuid.UUID(export_id))
        assert found is not None
        session.expunge(found)
        return found


def age(export_id: str, **values: object) -> None:
    from app.db import session_factory
    from app.models import StoreExport

    with session_factory()() as session:
        session.execute(
            update(StoreExport).where(StoreExport.id == uuid.UUID(export_id)).values(**values)
        )
        session.commit()


def claim_as_dead_worker(export_id: str) -> None:
    """A worker claims the export and dies at once: running, its heartbeat an hour old."""
    from app.db import session_factory
    from app.exports import service as exports
    from app.models import utcnow

    with session_factory()() as session:
        assert exports.claim(session, uuid.UUID(export_id), "dead", STALE) is not None
    age(export_id, heartbeat_at=utcnow() - timedelta(hours=1))


def reap_until(export_id: str, status: str) -> None:
    """Reaper rounds by hand (a round may find the advisory lock taken by another process's
    reaper, and then does nothing) until the export reads ``status``."""
    from app.config import get_settings
    from worker.reaper import reap

    for _ in range(20):
        reap(get_settings())
        if row(export_id).status == status:
            return
    raise AssertionError(f"export {export_id} is {row(export_id).status}, not {status}")


def test_an_export_whose_target_scheme_was_disabled_since_it_was_created_fails_with_a_code(
    api: Api, selection: dict, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import reset_settings
    from worker.runner import run_export

    exp = create(api, selection, target)
    monkeypatch.setenv("DLCPRUNE_FILE_ROOTS", "")
    reset_settings()
    try:
        assert run_export(exp["id"]) == "failed"
    finally:
        monkeypatch.undo()
        reset_settings()
    done = api.get(f"/v1/exports/{exp['id']}").json()
    assert done["status"] == "failed" and done["finished_at"]
    assert done["error"]["code"] == "reference_not_allowed", done
    assert "DLCPRUNE_FILE_ROOTS" in done["error"]["message"]
    assert (done["objects"], done["bytes_written"]) == (0, 0)
    assert not target.exists()
    # A late or repeated delivery leaves the failed export alone.
    assert run_export(exp["id"]) == "failed"
    assert row(exp["id"]).attempts == 1


def test_an_export_whose_selection_lost_its_scores_fails_with_a_code(
    api: Api, selection: dict, target: Path
) -> None:
    """An error while reading the selection (after the claim, before any object is written)
    fails the export; it does not stay running."""
    from app.db import session_factory
    from app.models import Job
    from worker.runner import run_export

    exp = create(api, selection, target)
    with session_factory()() as session:
        job_id = uuid.UUID(selection["job_id"])
        score_set = session.get(Job, job_id).score_set_id  # type: ignore[union-attr]
        session.execute(update(Job).where(Job.id == job_id).values(score_set_id=None))
        session.commit()
    try:
        assert run_export(exp["id"]) == "failed"
    finally:
        with session_factory()() as session:
            session.execute(update(Job).where(Job.id == job_id).values(score_set_id=score_set))
            session.commit()
    done = api.get(f"/v1/exports/{exp['id']}").json()
    assert done["status"] == "failed"
    assert done["error"]["code"] == "job_not_ready", done
    assert not target.exists()


def test_a_running_export_whose_worker_died_is_requeued_by_the_reaper_and_then_completes(
    api: Api, selection: dict, target: Path
) -> None:
    from worker.runner import run_export

    exp = create(api, selection, target)
    claim_as_dead_worker(exp["id"])
    assert api.get(f"/v1/exports/{exp['id']}").json()["status"] == "running"
    # Another delivery while the heartbeat is fresh does nothing.
    from app.models import utcnow

    age(exp["id"], heartbeat_at=utcnow())
    assert run_export(exp["id"]) == "running"
    age(exp["id"], heartbeat_at=utcnow() - timedelta(hours=1))

    reap_until(exp["id"], "queued")
    requeued = row(exp["id"])
    assert (requeued.attempts, requeued.finished_at) == (1, None)
    assert run_export(exp["id"]) == "succeeded"
    done = api.get(f"/v1/exports/{exp['id']}").json()
    assert (done["status"], done["objects"], done["progress"]["done"]) == ("succeeded", 1, 6)
    lines = (target / "manifest.csv").read_text().splitlines()
    assert lines[0] == "sample_id,label,score,kept" and len(lines) == 13
    assert sorted(p.name for p in target.iterdir()) == ["manifest.csv"]
    finished = row(exp["id"])
    assert finished.attempts == 2 and finished.worker not in (None, "dead")
    assert finished.heartbeat_at is not None


def test_an_export_that_keeps_losing_its_worker_fails_with_worker_lost(
    api: Api, selection: dict, target: Path
) -> None:
    from app.config import get_settings
    from worker.runner import run_export

    exp = create(api, selection, target)
    attempts = get_settings().max_attempts
    for attempt in range(1, attempts + 1):
        claim_as_dead_worker(exp["id"])
        assert row(exp["id"]).attempts == attempt
        reap_until(exp["id"], "queued" if attempt < attempts else "failed")
    done = api.get(f"/v1/exports/{exp['id']}").json()
    assert done["status"] == "failed" and done["error"]["code"] == "worker_lost", done
    assert f"lost {attempts} times" in done["error"]["message"]
    assert run_export(exp["id"]) == "failed"
    assert not target.exists()


def test_a_stale_export_with_a_cancel_request_is_cancelled_not_requeued(
    api: Api, selection: dict, target: Path
) -> None:
    exp = create(api, selection, target)
    claim_as_dead_worker(exp["id"])
    assert api.post(f"/v1/exports/{exp['id']}/cancel").json()["status"] == "running"
    reap_until(exp["id"], "cancelled")
    assert api.get(f"/v1/exports/{exp['id']}").json()["status"] == "cancelled"


def test_a_queued_export_the_broker_never_got_is_sent_again(
    api: Api, selection: dict, target: Path
) -> None:
    import redis

    from app import queue
    from app.config import get_settings
    from app.models import utcnow
    from tests.conftest import REDIS_URL

    exp = create(api, selection, target)
    sent = row(exp["id"])
    assert sent.enqueues == 1 and sent.enqueued_at is not None
    # As if the send after the commit had failed, 10 s ago.
    age(exp["id"], enqueued_at=None, enqueues=0, created_at=utcnow() - timedelta(seconds=10))
    name = queue.queue_for(queue.RUN_EXPORT, get_settings())
    client = redis.Redis.from_url(REDIS_URL)

    def messages() -> list[bytes]:
        return [m for key in queue.priority_lists(name) for m in client.lrange(key, 0, -1)]

    before = sum(exp["id"].encode() in m for m in messages())
    reap_until(exp["id"], "queued")
    for _ in range(20):
        if row(exp["id"]).enqueues:
            break
        reap_until(exp["id"], "queued")
    again = row(exp["id"])
    assert again.enqueues == 1 and again.enqueued_at is not None
    assert sum(exp["id"].encode() in m for m in messages()) == before + 1
    # Sent just now: the next round leaves it alone.
    reap_until(exp["id"], "queued")
    assert row(exp["id"]).enqueues == 1
    client.close()


def test_the_embedded_loop_survives_an_error_from_an_export(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An export that raises (here: an id that is no id) is logged and the loop goes on; a
    transient error is left to the loop, which retries after its poll interval."""
    from app.config import get_settings
    from worker import embedded

    with caplog.at_level("ERROR", logger="dlcprune.worker"):
        embedded._export("not-an-id", get_settings())  # type: ignore[arg-type]
    assert "export not-an-id: unexpected error" in caplog.text


def test_a_worker_whose_export_was_claimed_again_does_not_publish(
    api: Api, selection: dict, target: Path
) -> None:
    """A worker thought lost (the reaper requeued its export, another worker claimed it) stops
    before publishing: nothing written under the target, the export left to the new claim."""
    from app.blobstore import get_blobstore
    from app.config import get_settings
    from app.db import session_factory
    from app.exports import service as exports
    from app.models import StoreExport

    exp = create(api, selection, target, fmt="original")
    export_id = uuid.UUID(exp["id"])
    factory = session_factory()
    with factory() as session:
        row = exports.claim(session, export_id, "old-worker", timedelta(minutes=5))
        assert row is not None
        claimed = (row.worker, row.attempts)
        # Meanwhile: its heartbeat went stale, the reaper requeued it, another worker took it.
        session.execute(
            update(StoreExport)
            .where(StoreExport.id == export_id)
            .values(worker="new-worker", attempts=StoreExport.attempts + 1)
        )
        session.commit()
    settings = get_settings()
    assert exports.run(export_id, factory, settings, get_blobstore(settings), claimed) == (
        "superseded"
    )
    got = api.get(f"/v1/exports/{exp['id']}").json()
    assert got["status"] == "running"  # the new claim's, untouched
    assert not target.exists() or not any(target.rglob("*"))
