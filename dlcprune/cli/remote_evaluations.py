"""``dlcprune remote evaluate ...`` and ``remote embeddings`` / ``remote label-issues``: measure
strategies and keep ratios with a probe on a job's kept embeddings, read the result, plot it,
turn the recommendation into a selection; download the embeddings; list suspected mislabels.
Each with ``--json``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from dlcprune.cli.common import print_json
from dlcprune.cli.remote import connected, remote

evaluations = typer.Typer(
    help="Probes trained on candidate subsets (accuracy with 95% intervals).",
    no_args_is_help=True,
)

JobId = Annotated[str, typer.Argument(metavar="JOB_ID", help="a succeeded scoring job")]
EvaluationId = Annotated[str, typer.Argument(metavar="EVALUATION_ID", help="the evaluation")]


def _line(ev: Any) -> str:
    rec = ev.recommendation
    best = f"{rec['strategy']}@{rec['keep']:g}" if rec else "-"
    return f"{ev.id}\t{ev.status}\t{ev.fraction:.0%}\t{best}"


@evaluations.command("start")
@connected
def start(
    client: Any,
    job_id: JobId,
    strategy: Annotated[
        list[str], typer.Option("--strategy", "-s", help="a strategy to compare (repeat)")
    ],
    keep: Annotated[list[float], typer.Option("--keep", "-k", help="a keep ratio (repeat)")],
    seeds: Annotated[int, typer.Option(help="paired seeds per cell")] = 10,
    holdout: Annotated[float, typer.Option(help="stratified held-out share")] = 0.2,
    tolerance: Annotated[float, typer.Option(help="accuracy the recommendation may lose")] = 0.01,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the result")] = False,
    *,
    as_json: bool,
) -> None:
    """Start an evaluation (the control 'stratified' and the full set always run)."""
    ev = client.evaluate(job_id, strategy, keep, seeds, holdout, tolerance)
    if wait:
        ev = client.wait_evaluation(ev.id)
    print_json(ev.raw) if as_json else print(_line(ev) if wait else ev.id)
    print(f"evaluation {ev.id}: {ev.status}", file=sys.stderr)


@evaluations.command("status")
@connected
def status(client: Any, evaluation_id: EvaluationId, *, as_json: bool) -> None:
    """An evaluation's state; once succeeded, one line per cell (strategy, keep, mean, 95%
    interval, difference from the control)."""
    ev = client.evaluation(evaluation_id)
    if as_json:
        print_json(ev.raw)
        return
    print(_line(ev))
    for cell in (ev.result or {}).get("cells", []):
        acc = cell["accuracy"]
        diff = cell["difference_from_control"]
        d = f"{diff['mean']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}]" if diff else "control"
        print(
            f"{cell['strategy']}\t{cell['keep']:g}\t{acc['mean']:.4f} "
            f"[{acc['low']:.4f}, {acc['high']:.4f}]\t{d}"
        )


@evaluations.command("list")
@connected
def list_evaluations(client: Any, job_id: JobId, *, as_json: bool) -> None:
    """A job's evaluations, newest first."""
    rows = client.evaluations(job_id)
    if as_json:
        print_json([r.raw for r in rows])
    else:
        for row in rows:
            print(_line(row))


@evaluations.command("cancel")
@connected
def cancel(client: Any, evaluation_id: EvaluationId, *, as_json: bool) -> None:
    """Cancel an evaluation."""
    ev = client.cancel_evaluation(evaluation_id)
    print_json(ev.raw) if as_json else print(ev.id)


@evaluations.command("plot")
@connected
def plot(
    client: Any,
    evaluation_id: EvaluationId,
    out: Annotated[str, typer.Option(help="folder to save into")] = ".",
    fmt: Annotated[str, typer.Option("--format", help="png or svg")] = "png",
    *,
    as_json: bool,
) -> None:
    """Save the accuracy-versus-keep plot."""
    path = client.evaluation_plot(evaluation_id, out, fmt)
    print_json({"path": str(path)}) if as_json else print(path)


@evaluations.command("select")
@connected
def select(client: Any, evaluation_id: EvaluationId, *, as_json: bool) -> None:
    """Store the recommendation as a selection; prints its id."""
    sel = client.select_recommended(evaluation_id)
    print_json(sel.raw) if as_json else print(sel.id)


@remote.command("embeddings")
@connected
def embeddings(
    client: Any,
    job_id: JobId,
    out: Annotated[str, typer.Option(help="folder to save into")] = ".",
    fmt: Annotated[str, typer.Option("--format", help="npy or parquet")] = "npy",
    *,
    as_json: bool,
) -> None:
    """Download a job's kept embeddings (float16 backbone features)."""
    path = client.embeddings(job_id, out, fmt)
    print_json({"path": str(path)}) if as_json else print(path)


@remote.command("label-issues")
@connected
def label_issues(
    client: Any,
    job_id: JobId,
    share: Annotated[float | None, typer.Option(help="the least confident share")] = None,
    threshold: Annotated[float | None, typer.Option(help="self-confidence below this")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 100,
    *,
    as_json: bool,
) -> None:
    """Suspected mislabels (index, sample id, label, self-confidence), least confident first
    (a worker computes them first: this waits until it has)."""
    body = client.label_issues(job_id, share, threshold, limit)
    if as_json:
        print_json(body)
        return
    for item in body["items"]:
        print(
            f"{item['index']}\t{item['sample_id']}\t{item['label']}\t{item['self_confidence']:.4f}"
        )
    print(f"{body['total']} suspected of {body['num_samples']}", file=sys.stderr)
