"""``dlcprune remote webhooks ...``: register endpoints for events, list and delete them, read
their deliveries (every attempt) and replay one, each with ``--json``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from dlcprune.cli.common import CLIError, print_json
from dlcprune.cli.remote import connected
from dlcprune.names import WEBHOOK_EVENTS

webhooks = typer.Typer(help="Signed pushes when datasets and jobs change.", no_args_is_help=True)

WebhookId = Annotated[str, typer.Argument(metavar="WEBHOOK_ID", help="the endpoint")]


def _show(rows: list[Any], as_json: bool, line: Any) -> None:
    """``rows`` as the API answered them (``--json``), else one ``line(row)`` each."""
    if as_json:
        print_json([row.raw for row in rows])
    else:
        for row in rows:
            print(line(row))


def _hook(hook: Any) -> str:
    return f"{hook.id}\t{hook.url}\t{','.join(hook.events)}"


def _delivery(d: Any) -> str:
    tries = ",".join(str(a.status_code or a.error or "?") for a in d.attempts) or "-"
    return f"{d.id}\t{d.event}\t{d.status}\t{tries}"


@webhooks.command("create")
@connected
def create(
    client: Any,
    target: Annotated[str, typer.Argument(metavar="URL", help="where to send the events")],
    event: Annotated[
        list[str],
        typer.Option("--event", help=f"an event to send (repeat): {', '.join(WEBHOOK_EVENTS)}"),
    ],
    description: Annotated[str, typer.Option(help="a note for people")] = "",
    *,
    as_json: bool,
) -> None:
    """Register an endpoint; prints its id and its signing secret (shown this once)."""
    unknown = [e for e in event if e not in WEBHOOK_EVENTS]
    if unknown:
        raise CLIError(f"--event: unknown {unknown}; known: {', '.join(WEBHOOK_EVENTS)}")
    hook = client.create_webhook(target, event, description)
    print_json(hook.raw) if as_json else print(f"{hook.id}\n{hook.secret}")
    print(f"webhook {hook.id}: keep the secret, it is not shown again", file=sys.stderr)


@webhooks.command("list")
@connected
def list_webhooks(client: Any, *, as_json: bool) -> None:
    """This tenant's endpoints: id, URL, events."""
    _show(client.webhooks(), as_json, _hook)


@webhooks.command("show")
@connected
def show(client: Any, webhook_id: WebhookId, *, as_json: bool) -> None:
    """One endpoint."""
    hook = client.webhook(webhook_id)
    print_json(hook.raw) if as_json else print(_hook(hook))


@webhooks.command("delete")
@connected
def delete(client: Any, webhook_id: WebhookId, *, as_json: bool) -> None:
    """Delete an endpoint and its deliveries."""
    client.delete_webhook(webhook_id)
    print_json({"deleted": webhook_id}) if as_json else print(webhook_id)


@webhooks.command("deliveries")
@connected
def deliveries(
    client: Any,
    webhook_id: WebhookId,
    status: Annotated[
        str | None, typer.Option(help="pending, delivered or failed", show_default=False)
    ] = None,
    *,
    as_json: bool,
) -> None:
    """An endpoint's deliveries, newest first: id, event, state, and each attempt's answer."""
    if status is not None and status not in ("pending", "delivered", "failed"):
        raise CLIError("--status: pending, delivered or failed")
    _show(client.deliveries(webhook_id, status=status), as_json, _delivery)


@webhooks.command("replay")
@connected
def replay(
    client: Any,
    webhook_id: WebhookId,
    delivery_id: Annotated[str, typer.Argument(metavar="DELIVERY_ID", help="the delivery")],
    *,
    as_json: bool,
) -> None:
    """Send a delivery again, now (the same webhook-id and body)."""
    found = client.replay(webhook_id, delivery_id)
    print_json(found.raw) if as_json else print(found.id)
    print(f"delivery {found.id}: {found.status}", file=sys.stderr)
