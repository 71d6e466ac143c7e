"""``dlcprune remote exports ...``: write a selection into an object store (``to``), read one
export (``show``, ``--wait`` until it ends), list and cancel them, each with ``--json``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from dlcprune.cli.common import CLIError, print_json
from dlcprune.cli.remote import connected
from dlcprune.names import DEFAULT_EXPORT_FORMAT, STORE_EXPORT_FORMATS

exports = typer.Typer(help="Selections written into object stores.", no_args_is_help=True)

ExportId = Annotated[str, typer.Argument(metavar="EXPORT_ID", help="the export")]


def _line(exp: Any) -> str:
    return f"{exp.id}\t{exp.status}\t{exp.done}/{exp.total}\t{exp.format}\t{exp.uri}"


def _show(exp: Any, as_json: bool) -> None:
    print_json(exp.raw) if as_json else print(_line(exp))


@exports.command("to")
@connected
def to(
    client: Any,
    selection_id: Annotated[str, typer.Argument(metavar="SELECTION_ID", help="the selection")],
    uri: Annotated[str, typer.Argument(metavar="URI", help="an empty prefix: s3://bucket/out/")],
    *,
    as_json: bool,
    format: Annotated[
        str,
        typer.Option(help=f"one of: {', '.join(STORE_EXPORT_FORMATS)}"),
    ] = DEFAULT_EXPORT_FORMAT,
    wait: Annotated[bool, typer.Option(help="wait until the export has ended")] = False,
) -> None:
    """Write a selection into an object store (a job; prints its id)."""
    if format not in STORE_EXPORT_FORMATS:
        raise CLIError(f"--format: one of {', '.join(STORE_EXPORT_FORMATS)}")
    exp = client.export_to_store(selection_id, uri, format)
    if wait:
        exp = client.wait_store_export(exp.id)
    _show(exp, as_json)
    print(f"export {exp.id}: {exp.status}", file=sys.stderr)


@exports.command("show")
@connected
def show(
    client: Any,
    export_id: ExportId,
    *,
    as_json: bool,
    wait: Annotated[bool, typer.Option(help="wait until the export has ended")] = False,
) -> None:
    """An export's state and progress."""
    exp = client.wait_store_export(export_id) if wait else client.store_export(export_id)
    _show(exp, as_json)


@exports.command("list")
@connected
def list_exports(
    client: Any,
    *,
    as_json: bool,
    selection: Annotated[str | None, typer.Option(help="only this selection's")] = None,
) -> None:
    """This tenant's exports into stores, newest first."""
    rows = client.store_exports(selection)
    if as_json:
        print_json([r.raw for r in rows])
    else:
        for row in rows:
            print(_line(row))


@exports.command("cancel")
@connected
def cancel(client: Any, export_id: ExportId, *, as_json: bool) -> None:
    """Cancel a queued or running export (nothing is published)."""
    _show(client.cancel_store_export(export_id), as_json)
