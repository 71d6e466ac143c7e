"""The command line's typer app and its runner (``dlcprune.cli.main`` calls ``run``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer

from dlcprune.cli import local, service
from dlcprune.cli.common import CLIError
from dlcprune.cli.remote import remote

app = typer.Typer(
    name="dlcprune",
    help="Training-free dataset pruning with DLC scores and FlexRand.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("score")(local.score)
app.command("select")(local.select)
app.command("serve")(service.serve)
app.command("worker")(service.worker)
app.command("migrate")(service.migrate)
app.add_typer(service.keys, name="keys")
app.add_typer(remote, name="remote")


def command() -> Any:
    """The click command typer builds from ``app`` (typer's own copy of click): what ``main``
    runs, and what the tests parse command lines with."""
    return typer.main.get_command(app)


def _fail(message: str) -> NoReturn:
    print(f"dlcprune: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def run(argv: Sequence[str] | None = None) -> None:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``)."""
    from dlcprune.core.selection import SelectionError

    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        code = command().main(args=args, prog_name="dlcprune", standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        _fail("interrupted")
    except typer.TyperException as exc:
        # Bad usage: click's message (usage line, hint, error), exit status 2.
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            print(f"dlcprune: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except (CLIError, SelectionError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    except Exception as exc:
        # Engine errors carry a code and a location; anything else is still one line.
        from dlcprune.core.errors import ScoringError

        if isinstance(exc, ScoringError):
            _fail(str(exc))
        if os.environ.get("DLCPRUNE_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (DLCPRUNE_DEBUG=1 shows the traceback)")
    raise SystemExit(code if isinstance(code, int) else 0)


__all__ = ["CLIError", "app", "command", "run"]
