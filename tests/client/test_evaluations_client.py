"""The client's and the CLI's calls for embeddings, label issues and evaluations, against the
in-process app on PostgreSQL (evaluations run with the worker's task function)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcprune.cli.commands import app as cli_app
from dlcprune.client import Client, DlcpruneError
from tests.conftest import compute_label_issues
from worker.evaluate import run_evaluation


def test_client_embeddings_label_issues_and_evaluations(
    client_a: Client, scored: dict, tmp_path: Path
) -> None:
    job_id = scored["job"]["id"]
    path = client_a.embeddings(job_id, tmp_path)
    x = np.load(path, allow_pickle=False)
    assert x.dtype == np.float16 and x.shape[0] == 24
    pq_path = client_a.embeddings(job_id, tmp_path, format="parquet")
    assert pq_path.suffix == ".parquet" and pq_path.stat().st_size > 0
    pending = client_a.label_issues(job_id, share=0.25, wait=False)
    assert pending["status"] == "queued" and pending["url"].endswith(
        "label-issues?limit=100&share=0.25"
    )
    with pytest.raises(DlcpruneError) as waited:
        client_a.label_issues(job_id, share=0.25, timeout=0.2, poll=0.1)
    assert waited.value.code == "timeout"
    assert compute_label_issues(job_id) == "succeeded"
    issues = client_a.label_issues(job_id, share=0.25)
    assert issues["total"] == 6 and len(issues["items"]) == 6
    ev = client_a.evaluate(job_id, ["flexrand"], keep=[0.5], seeds=2)
    assert ev.status == "queued" and "frozen-feature" in ev.probe
    assert run_evaluation(ev.id) == "succeeded"
    done = client_a.wait_evaluation(ev.id, timeout=10)
    assert done.result is not None and len(done.result["cells"]) == 2
    assert next(e.id for e in client_a.evaluations(job_id)) == ev.id
    png = client_a.evaluation_plot(ev.id, tmp_path)
    assert png.read_bytes().startswith(b"\x89PNG")
    if done.recommendation is not None:
        sel = client_a.select_recommended(ev.id)
        assert sel.strategy == done.recommendation["strategy"]
    other = client_a.evaluate(job_id, ["moderate"], keep=[0.5], seeds=2)
    assert client_a.cancel_evaluation(other.id).status == "cancelled"
    with pytest.raises(DlcpruneError) as err:
        client_a.wait_evaluation(other.id, timeout=5)
    assert err.value.code == "evaluation_cancelled"
    with pytest.raises(DlcpruneError) as bad:
        client_a.evaluate(job_id, ["nope"], keep=[0.5])
    assert bad.value.status == 422 and bad.value.code == "unknown_strategy"


def test_cli_commands_are_there() -> None:
    runner = CliRunner()
    for args in (
        ["remote", "evaluate", "--help"],
        ["remote", "evaluate", "start", "--help"],
        ["remote", "embeddings", "--help"],
        ["remote", "label-issues", "--help"],
    ):
        result = runner.invoke(cli_app, args)
        assert result.exit_code == 0, (args, result.output)
    result = runner.invoke(
        cli_app,
        ["remote", "evaluate", "start", "x", "-s", "flexrand", "-k", "0.5"],
        env={"DLCPRUNE_URL": ""},
    )
    assert result.exit_code != 0


@pytest.mark.slow
def test_an_evaluation_on_the_embedded_default(embedded, colours: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SQLite, a local blob directory and the embedded worker: scored, evaluated, selected."""
    with Client(embedded.url, api_key=embedded.key) as dlc:
        ds = dlc.upload(colours)
        job = dlc.wait(dlc.start_job(ds.id, params={"image_size": 32, "levels": 2}).id, timeout=300)
        assert job.succeeded
        ev = dlc.evaluate(job.id, ["moderate"], keep=[0.5], seeds=2)
        done = dlc.wait_evaluation(ev.id, timeout=120, poll=0.3)
        assert [c["strategy"] for c in done.result["cells"]] == ["stratified", "moderate"]  # type: ignore[index]
        # label issues: 202 until the embedded worker computed them, which the client waits for
        issues = dlc.label_issues(job.id, share=0.25, timeout=120, poll=0.3)
        assert issues["total"] == 6 and issues["num_samples"] == 24
        x = np.load(dlc.embeddings(job.id, tmp_path))
        assert x.shape == (24, 1280)
