"""The client's calls for what data and scores look like: a sample and its thumbnail, a job's
summary and plots, a selection's plot (in process, on PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from dlcprune.client import Client


def test_samples_summary_and_plots(client_a: Client, scored: dict, tmp_path: Path) -> None:
    ds, job = scored["dataset"], scored["job"]
    one = client_a.sample(ds["id"], 0)
    assert one["index"] == 0 and one["id"] and one["label"] in ds["classes"]
    thumb = client_a.thumbnail(ds["id"], 0, tmp_path)
    assert thumb.read_bytes().startswith(b"\x89PNG")
    summary = client_a.summary(job["id"], bins=5, k=2)
    assert summary["job_id"] == job["id"] and (summary["bins"], summary["k"]) == (5, 2)
    assert summary["num_samples"] == ds["num_samples"]
    histogram = client_a.plot(job["id"], "histogram", tmp_path)
    assert histogram.read_bytes().startswith(b"\x89PNG") and histogram.parent == tmp_path
    svg = client_a.plot(job["id"], "distribution", tmp_path, fmt="svg", keep=0.5)
    assert b"<svg" in svg.read_bytes()[:500]
    sel = client_a.select(job["id"], keep=0.5)
    drawn = client_a.selection_plot(sel.id, tmp_path)
    assert drawn.read_bytes().startswith(b"\x89PNG")
