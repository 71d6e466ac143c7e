"""``dlcprune remote ...``: a running service's API through ``dlcprune.client``: upload, score,
status, list, cancel, delete, scores, preview, select, download, and ``webhooks ...``
(``remote_webhooks``).

``--url`` and ``--key`` default to ``DLCPRUNE_URL`` and ``DLCPRUNE_API_KEY``. Every command
prints an id or a path on stdout, or with ``--json`` the resource as the API answered it; a
summary goes to stderr. The service's errors become ``<code>: <message>`` error lines.
``remote score`` takes every job parameter of DLC and the baselines, generated from
``dlcprune.core.params``, and ``remote select`` every selection parameter (``hard_cutoff``
included), from ``dlcprune.core.selection.params``; only the ones given are sent, the service
fills in the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import os
import sys
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import typer

from dlcprune.cli.common import CLIError, permille_bar, print_json, wants_bar
from dlcprune.cli.local import KEEP_PARSER, Progress, Quiet
from dlcprune.cli.options import param_options
from dlcprune.core.params import DEFAULT_MODEL, BaselineParams, DLCParams
from dlcprune.core.selection.params import SelectionParams
from dlcprune.names import (
    DEFAULT_EXPORT_FORMAT,
    DEFAULT_METHOD,
    DEFAULT_PRIORITY,
    EXPORT_FORMATS,
    METHODS,
    PRIORITIES,
)

remote = typer.Typer(help="Use a running dlcprune service.", no_args_is_help=True)

Url = Annotated[
    str | None,
    typer.Option(
        envvar="DLCPRUNE_URL", help="the service, e.g. http://127.0.0.1:8000", show_default=False
    ),
]
Key = Annotated[
    str | None, typer.Option(envvar="DLCPRUNE_API_KEY", help="API key", show_default=False)
]
Timeout = Annotated[float, typer.Option(help="seconds allowed per network operation")]
Json = Annotated[bool, typer.Option("--json", help="print the answer as JSON")]


@contextlib.contextmanager
def _client(url: str | None, key: str | None, timeout: float) -> Iterator[Any]:
    from dlcprune.client import Client, DlcpruneError

    if not url:
        raise CLIError("no service URL: pass --url or set DLCPRUNE_URL")
    try:
        with Client(url, api_key=key, timeout=timeout) as client:
            yield client
    except DlcpruneError as exc:
        raise CLIError(f"{exc.code}: {exc.message}") from exc


def connected(fn: Any) -> Any:
    """A remote command over an open client: ``fn(client, ..., as_json=...)`` gets the options
    every remote command takes (``--json``, ``--url``, ``--key``, ``--timeout``) beside its own;
    the client is open while it runs, and the service's errors become one line."""
    signature = inspect.signature(fn, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name not in ("client", "as_json")]
    shared = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d, annotation=a)
        for name, a, d in (
            ("as_json", Json, False),
            ("url", Url, None),
            ("key", Key, None),
            ("timeout", Timeout, 60.0),
        )
    ]
    keyword_only = [p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY]
    parameters = [p for p in own if p not in keyword_only] + shared + keyword_only

    @functools.wraps(fn)
    def command(
        *args: Any,
        as_json: bool = False,
        url: str | None = None,
        key: str | None = None,
        timeout: float = 60.0,
        **kwargs: Any,
    ) -> Any:
        with _client(url, key, timeout) as client:
            return fn(client, *args, as_json=as_json, **kwargs)

    # typer reads the signature and the annotations; neither may see through to ``fn``.
    del command.__wrapped__  # type: ignore[attr-defined]
    command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


def zip_folder(folder: str, workdir: str) -> str:
    """A folder of class folders as a zip (stored, sorted) in ``workdir``, named after it."""
    import zipfile
    from pathlib import Path

    root = Path(folder)
    target = Path(workdir) / f"{root.resolve().name or 'dataset'}.zip"
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise CLIError(f"{folder}: no files")
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for path in files:
            zf.write(path, path.relative_to(root).as_posix())
    return str(target)


@remote.command()
def upload(
    data: Annotated[
        str,
        typer.Argument(
            metavar="DATA", help=".zip/.tar(.gz)/.npz/.jsonl file, or a folder of class folders"
        ),
    ],
    name: Annotated[str | None, typer.Option(help="a name for the dataset")] = None,
    as_json: Json = False,
    url: Url = None,
    key: Key = None,
    timeout: Timeout = 60.0,
) -> None:
    """Upload a dataset (a folder is zipped first); prints its id."""
    import tempfile

    workdir = tempfile.TemporaryDirectory(prefix="dlcprune-upload-")
    with _client(url, key, timeout) as client, workdir:
        path = zip_folder(data, workdir.name) if os.path.isdir(data) else data
        if not os.path.isfile(path):
            raise CLIError(f"{data}: no such file")
        ds = client.upload(path, name=name)
    print_json(ds.raw) if as_json else print(ds.id)
    print(
        f"dataset {ds.id}: {ds.status}, {ds.num_samples} samples, {len(ds.classes or {})} classes",
        file=sys.stderr,
    )


@remote.command("score")
@param_options(
    DLCParams,
    BaselineParams,
    into="params",
    given_only=True,
    panels=("DLC parameters", "Baseline parameters"),
)
def score(
    dataset_id: Annotated[str, typer.Argument(metavar="DATASET_ID", help="the dataset to score")],
    model: Annotated[
        str, typer.Option(help="a registry name, or an architecture with --weights-id")
    ] = DEFAULT_MODEL,
    method: Annotated[
        Literal[METHODS],  # type: ignore[valid-type]
        typer.Option(help="dlc, or a baseline to compare it with"),
    ] = DEFAULT_METHOD,
    weights_id: Annotated[str | None, typer.Option(help="weights uploaded for the model")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="the same key returns the same job")
    ] = None,
    priority: Annotated[
        Literal[PRIORITIES],  # type: ignore[valid-type]
        typer.Option(help="queued jobs of a higher priority run first"),
    ] = DEFAULT_PRIORITY,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the job ends")] = False,
    poll: Annotated[float, typer.Option(help="seconds between polls (--wait)")] = 1.0,
    wait_timeout: Annotated[
        float | None, typer.Option(help="give up waiting after this many seconds")
    ] = None,
    progress: Progress = False,
    quiet: Quiet = False,
    as_json: Json = False,
    url: Url = None,
    key: Key = None,
    timeout: Timeout = 60.0,
    *,
    params: dict[str, Any],
) -> None:
    """Start a scoring job; prints its id."""
    from dlcprune.client import JobFailed

    with _client(url, key, timeout) as client:
        job = client.start_job(
            dataset_id,
            model=model,
            params=params,
            weights_id=weights_id,
            idempotency_key=idempotency_key,
            method=method,
            priority=priority,
        )
        if wait and not job.finished:
            bar, update = _job_bar(wants_bar(quiet, progress))
            try:
                job = client.wait(job.id, poll=poll, timeout=wait_timeout, progress=update)
            finally:
                if bar is not None:
                    bar.close()
        elif wait and job.status != "succeeded":
            raise JobFailed(job)
    print_json(job.raw) if as_json else print(job.id)
    note = " (from the cache)" if job.cached else ""
    print(f"job {job.id}: {job.status}{note}", file=sys.stderr)


def _job_bar(show: bool) -> tuple[Any, Any]:
    """A tqdm bar on stderr for ``remote score --wait``."""
    if not show:
        return None, None
    bar = permille_bar()

    def update(fraction: float, job: Any) -> None:
        bar.set_description_str(f"{job.status} {job.progress.stage}", refresh=False)
        bar.n = int(fraction * 1000)
        bar.refresh()

    return bar, update


@remote.command("select")
@param_options(SelectionParams, into="params", given_only=True, parsers=KEEP_PARSER)
def select(
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="a succeeded job")],
    out: Annotated[str | None, typer.Option(help="also write the kept ids, one per line")] = None,
    as_json: Json = False,
    url: Url = None,
    key: Key = None,
    timeout: Timeout = 60.0,
    *,
    params: dict[str, Any],
) -> None:
    """Select a subset of a job's samples; prints its id."""
    with _client(url, key, timeout) as client:
        sel = client.select(job_id, **params)
        if out:
            with open(out, "w", encoding="utf-8", newline="\n") as fh:
                for item in client.iter_items(sel.id):
                    fh.write(item.sample_id + "\n")
    print_json(sel.raw) if as_json else print(sel.id)
    share = sel.size / sel.num_samples if sel.num_samples else 0.0
    where = f" -> {out}" if out else ""
    print(
        f"selection {sel.id}: kept {sel.size} of {sel.num_samples} samples ({share:.1%}){where}",
        file=sys.stderr,
    )


@remote.command()
def download(
    selection_id: Annotated[
        str, typer.Argument(metavar="SELECTION_ID", help="the selection to export")
    ],
    out: Annotated[str, typer.Option("--out", help="directory to write into")],
    export_format: Annotated[
        Literal[EXPORT_FORMATS],  # type: ignore[valid-type]
        typer.Option("--format", help="what to download"),
    ] = DEFAULT_EXPORT_FORMAT,
    provenance: Annotated[
        bool, typer.Option("--provenance", help="add provenance.json to original-format zips")
    ] = False,
    as_json: Json = False,
    url: Url = None,
    key: Key = None,
    timeout: Timeout = 60.0,
) -> None:
    """Download a selection's export; prints its path."""
    with _client(url, key, timeout) as client:
        path = client.download(selection_id, out, export_format, provenance)
    if as_json:
        print_json({"selection_id": selection_id, "format": export_format, "path": str(path)})
    else:
        print(path)


@remote.command()
def status(
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="the job")],
    as_json: Json = False,
    url: Url = None,
    key: Key = None,
    timeout: Timeout = 60.0,
) -> None:
    """A job's state and progress."""
    with _client(url, key, timeout) as client:
        job = client.job(job_id)
    if as_json:
        print_json(job.raw)
        return
    p = job.progress
    line = f"{job.id}\t{job.status}\t{p.stage}\t{p.done}/{p.total}\t{p.fraction:.1%}"
    if p.eta_seconds is not None and not job.finished:
        line += f"\teta {p.eta_seconds:.0f} s"
    if job.error is not None:
        line += f"\t{job.error.code}: {job.error.message}"
    print(line)


@remote.command("list")
@connected
def list_resources(
    client: Any,
    what: Annotated[
        Literal["datasets", "jobs"],
        typer.Argument(metavar="WHAT", help="datasets or jobs"),
    ],
    status_: Annotated[
        str | None,
        typer.Option("--status", help="only these (indexing/ready/invalid, queued/running/...)"),
    ] = None,
    dataset_id: Annotated[
        str | None, typer.Option(help="jobs: only this dataset's", show_default=False)
    ] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many, newest first")] = None,
    *,
    as_json: bool,
) -> None:
    """List datasets or jobs, newest first: one per line (id, state, ...)."""
    if what == "datasets":
        rows = client.datasets(status=status_)[:limit]
        lines = [f"{d.id}\t{d.status}\t{d.num_samples}\t{d.name}" for d in rows]
    else:
        rows = client.jobs(status=status_, dataset_id=dataset_id, limit=limit)
        lines = [
            f"{j.id}\t{j.status}\t{j.progress.fraction:.0%}\t{j.model}\t{j.dataset_id}"
            for j in rows
        ]
    print_json([r.raw for r in rows]) if as_json else print("\n".join(lines))


@remote.command()
@connected
def cancel(
    client: Any,
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="a queued or running job")],
    *,
    as_json: bool,
) -> None:
    """Cancel a job (a running one stops at its next progress report)."""
    job = client.cancel(job_id)
    print_json(job.raw) if as_json else print(job.id)
    print(f"job {job.id}: {job.status}", file=sys.stderr)


@remote.command()
@connected
def delete(
    client: Any,
    dataset_id: Annotated[str, typer.Argument(metavar="DATASET_ID", help="the dataset")],
    force: Annotated[
        bool, typer.Option(help="cancel jobs queued or running on it (else the service refuses)")
    ] = False,
    *,
    as_json: bool,
) -> None:
    """Delete a dataset with its jobs, scores, selections and exports."""
    client.delete_dataset(dataset_id, force=force)
    print_json({"deleted": dataset_id}) if as_json else print(dataset_id)


@remote.command()
@connected
def scores(
    client: Any,
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="a succeeded job")],
    out: Annotated[
        str | None, typer.Option(help="write the CSV here (default: standard output)")
    ] = None,
    *,
    as_json: bool,
) -> None:
    """A job's scores as CSV (sample_id,label,score), or with --json as a list."""
    import tempfile
    from pathlib import Path

    if as_json:
        print_json([dataclasses.asdict(s) for s in client.scores(job_id)])
    elif out:
        print(client.scores_csv(job_id, out))
    else:
        with tempfile.TemporaryDirectory(prefix="dlcprune-scores-") as tmp:
            path = client.scores_csv(job_id, Path(tmp) / "scores.csv")
            sys.stdout.write(path.read_text(encoding="utf-8"))


@remote.command("preview")
@param_options(SelectionParams, into="params", given_only=True, parsers=KEEP_PARSER)
@connected
def preview(
    client: Any,
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="a succeeded job")],
    *,
    as_json: bool,
    params: dict[str, Any],
) -> None:
    """What a selection would keep, and how far it moves the distributions (stores nothing)."""
    seen = client.preview(job_id, **params)
    if as_json:
        print_json(seen.raw)
        return
    print(f"keep\t{seen.size}/{seen.num_samples}\t{seen.strategy}")
    print(f"ks_statistic\t{seen.ks_statistic:.4f}")
    if seen.tv_distance is not None:
        print(f"tv_distance\t{seen.tv_distance:.4f}")
    for name, counts in sorted(seen.class_counts.items()):
        print(f"class\t{name}\t" + "\t".join(f"{k}={v}" for k, v in sorted(counts.items())))


from dlcprune.cli.remote_exports import exports  # noqa: E402 - uses this module's options
from dlcprune.cli.remote_webhooks import webhooks  # noqa: E402 - uses this module's options

remote.add_typer(webhooks, name="webhooks")
remote.add_typer(exports, name="exports")

from dlcprune.cli.remote_evaluations import evaluations  # noqa: E402 - uses this module's options

remote.add_typer(evaluations, name="evaluate")
