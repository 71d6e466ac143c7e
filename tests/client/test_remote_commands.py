"""The remote commands added for operations (list, cancel, delete, scores, preview, webhooks),
each with ``--json``, and the async client with a webhook receiver, against a real
``dlcprune serve`` (the embedded default: loopback receivers are allowed there)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
from pathlib import Path

import pytest

from dlcprune.client import AsyncClient, Client, JobFailed, verify_webhook
from tests.client.conftest import FAST, Embedded
from tests.conftest import DLCPRUNE
from tests.service.receiver import receiver

pytestmark = pytest.mark.slow


def _cli(embedded: Embedded, *args: str) -> subprocess.CompletedProcess:
    env = {**embedded.env, "DLCPRUNE_URL": embedded.url, "DLCPRUNE_API_KEY": embedded.key}
    return subprocess.run(
        [DLCPRUNE, "remote", *args], env=env, capture_output=True, text=True, timeout=300
    )


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_list_scores_preview_cancel_delete(embedded: Embedded, colours: Path) -> None:
    with Client(embedded.url, api_key=embedded.key) as client:
        # A dataset of its own (the same bytes would answer another test's dataset).
        ds = client.upload(colours, name="remote-ops", copy=True)
        job = client.wait(client.start_job(ds.id, params={**FAST, "levels": 3}).id, timeout=300)

    listed = json.loads(_ok(_cli(embedded, "list", "jobs", "--dataset-id", ds.id, "--json")))
    assert [j["id"] for j in listed] == [job.id]
    lines = _ok(_cli(embedded, "list", "datasets", "--status", "ready")).splitlines()
    assert any(line.split("\t")[:2] == [ds.id, "ready"] for line in lines)

    table = list(csv.reader(io.StringIO(_ok(_cli(embedded, "scores", job.id)))))
    assert table[0] == ["sample_id", "label", "score"] and len(table) == 25
    as_json = json.loads(_ok(_cli(embedded, "scores", job.id, "--json")))
    assert [s["sample_id"] for s in as_json] == [row[0] for row in table[1:]]
    # the CSV writes each score with fewer digits than JSON: equal to within its precision
    assert [s["score"] for s in as_json] == pytest.approx(
        [float(r[2]) for r in table[1:]], rel=1e-5, abs=1e-6
    )

    seen = json.loads(_ok(_cli(embedded, "preview", job.id, "--keep", "0.5", "--json")))
    assert seen["size"] == 12 and seen["num_samples"] == 24
    plain = _ok(_cli(embedded, "preview", job.id, "--keep", "0.5")).splitlines()
    assert plain[0] == "keep\t12/24\tflexrand"

    slow = _ok(_cli(embedded, "score", ds.id, "--image-size", "32", "--levels", "400")).strip()
    cancelled = json.loads(_ok(_cli(embedded, "cancel", slow, "--json")))
    assert cancelled["id"] == slow and cancelled["cancel_requested"] is True
    again = _cli(embedded, "cancel", job.id)
    assert again.returncode == 1 and again.stderr.startswith("dlcprune: error: job_finished: ")

    # A cancel is asked for; until the worker stops the job, the dataset is busy.
    with Client(embedded.url, api_key=embedded.key) as client:
        with pytest.raises(JobFailed):
            client.wait(slow, poll=0.2, timeout=300)
        assert client.job(slow).status == "cancelled"
    assert json.loads(_ok(_cli(embedded, "delete", ds.id, "--json"))) == {"deleted": ds.id}
    gone = _cli(embedded, "list", "jobs", "--dataset-id", ds.id, "--json")
    assert json.loads(_ok(gone)) == []


def test_webhook_commands(embedded: Embedded, colours: Path) -> None:
    with receiver() as rx:
        made = _ok(_cli(embedded, "webhooks", "create", rx.url, "--event", "dataset.ready"))
        hook_id, secret = made.splitlines()
        assert secret.startswith("whsec_")
        shown = json.loads(_ok(_cli(embedded, "webhooks", "show", hook_id, "--json")))
        assert shown["events"] == ["dataset.ready"] and "secret" not in shown
        assert hook_id in _ok(_cli(embedded, "webhooks", "list"))
        with Client(embedded.url, api_key=embedded.key) as client:
            ds = client.upload(colours, copy=True)  # a new dataset, so a new dataset.ready
        (got,) = rx.wait_for(1, 120)
        event = verify_webhook(got.body, got.headers, secret)
        assert event.type == "dataset.ready" and event.data["id"] == ds.id

        rows = json.loads(_ok(_cli(embedded, "webhooks", "deliveries", hook_id, "--json")))
        (delivery,) = [d for d in rows if d["payload"]["data"]["id"] == ds.id]
        assert delivery["status"] == "delivered" and delivery["id"] == event.id
        line = _ok(_cli(embedded, "webhooks", "deliveries", hook_id, "--status", "delivered"))
        assert f"{event.id}\tdataset.ready\tdelivered\t200" in line
        replayed = json.loads(
            _ok(_cli(embedded, "webhooks", "replay", hook_id, event.id, "--json"))
        )
        assert replayed["status"] == "pending"
        second = rx.wait_for(2, 120)[1]
        assert second.headers["webhook-id"] == event.id and second.body == got.body
        bad = _cli(embedded, "webhooks", "create", rx.url, "--event", "job.exploded")
        assert bad.returncode == 1 and "unknown" in bad.stderr
        assert json.loads(_ok(_cli(embedded, "webhooks", "delete", hook_id, "--json"))) == {
            "deleted": hook_id
        }


def test_the_async_client_end_to_end(embedded: Embedded, colours: Path) -> None:
    async def flow(rx_url: str) -> tuple:
        async with AsyncClient(embedded.url, api_key=embedded.key, timeout=60) as dlc:
            hook = await dlc.create_webhook(rx_url, ["job.succeeded"])
            ds = await dlc.upload(colours)
            job = await dlc.start_job(ds.id, params={**FAST, "levels": 4})
            done, jobs = await asyncio.gather(dlc.wait(job.id, poll=0.2, timeout=300), dlc.jobs())
            scores = [s async for s in dlc.iter_scores(done.id)]
            hooks = await dlc.webhooks()
            return hook, done, jobs, scores, hooks

    with receiver() as rx:
        hook, done, jobs, scores, hooks = asyncio.run(flow(rx.url))
        assert done.succeeded and done.id in [j.id for j in jobs]
        assert len(scores) == 24 and all(s.score is not None for s in scores)
        assert hook.id in [h.id for h in hooks]
        (got,) = rx.wait_for(1, 120)
        event = verify_webhook(got.body, got.headers, hook.secret or "")
        assert event.type == "job.succeeded" and event.data["id"] == done.id
        assert event.data["status"] == "succeeded"
    with Client(embedded.url, api_key=embedded.key) as client:
        client.delete_webhook(hook.id)
