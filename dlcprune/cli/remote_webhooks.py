"""``dlcprune remote webhooks ...``: register endpoints for events, list and delete them, read
their deliveries (every attempt) and replay one, each with ``--json``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from dlcprune.cli.common import CLIError, print_json
from dlcprune.cli.remote import Json, Key, Timeout, Url, _client
from dlcprune.names import WEBHOOK_EVENTS

webhooks = typer.Typer(help="Signed pushes when datasets and jobs change.", no_args_is_help=True)

WebhookId = Annotated[str, typer.Argument(metavar="WEBHOOK_ID", help="the endpoint")]


def _line(hook: Any) -> str:
    return f"{hook.id}\t{hook.url}\t{','.join(hook.events)}"


@webhooks.command("create")
def create(
    target: Annotated[str, typer.Argument(metavar="URL", help="where to send the events")],
    event: Annotated[
        list[str],
        typer.Option("--event", help=f"an event to send (repeat): {', '.join(WEBHOOK_EVENTS)}"),
    ],
    description: Annotated[str, typer.Option(help="a note for people")] = "",
    as_json: Json = False,
    url: Url = None,
    key: Key = None,
    timeout: Timeout = 60.0,
) -> None:
    """Register an endpoint; prints its id and its signing secret (shown this once)."""
    unknown = [e for e in event if e not in WEBHOOK_EVENTS]
    if unknown:
        raise CLIError(f"--event: unknown {unknown}; known: {', '.join(WEBHOOK_EVENTS)}")
    with _client(url, key, timeout) as client:
        hook = client.create_webhook(target, event, description)
    if as_json:
        print_json(hook.raw)
    else:
        print(hook.id)
        print(hook.secret)
    print(f"webhook {hook.id}: keep the secret, it is not shown again", file=sys.stderr)


@webhooks.command("list")
def list_webhooks(
    as_json: Json = False, url: Url = None, key: Key = None, timeout: Timeout = 60.0
) -> None:
    """This tenant's endpoints: id, URL, events."""
    with _client(url, key, timeout) as client:
        hooks = client.webhooks()
    if as_json:
        print_json([h.raw for h in hooks])
    else:
        for hook in hooks:
            print(_line(hook))


@webhooks.command("show")
def show(
    webhook_id: WebhookId,
    as_json: Json = False,
    url: Url = None,
    key: Key = None,
    timeout: Timeout = 60.0,
) -> None:
    """One endpoint."""
    with _client(url, key, timeout) as client:
        hook = client.webhook(webhook_id)
    print_json(hook.raw) if as_json else print(_line(hook))


@webhooks.command("delete")
def delete(
    webhook_id: WebhookId,
    as_json: Json = False,
    url: Url = None,
    key: Key = None,
    timeout: Timeout = 60.0,
) -> None:
    """Delete an endpoint and its deliveries."""
    with _client(url, key, timeout) as client:
        client.delete_webhook(webhook_id)
    print_json({"deleted": webhook_id}) if as_json else print(webhook_id)


@webhooks.command("deliveries")
def deliveries(
    webhook_id: WebhookId,
    status: Annotated[
        str | None, typer.Option(help="pending, delivered or failed", show_default=False)
    ] = None,
    as_json: Json = False,
    url: Url = None,
    key: Key = None,
    timeout: Timeout = 60.0,
) -> None:
    """An endpoint's deliveries, newest first: id, event, state, and each attempt's answer."""
    if status is not None and status not in ("pending", "delivered", "failed"):
        raise CLIError("--status: pending, delivered or failed")
    with _client(url, key, timeout) as client:
        rows = client.deliveries(webhook_id, status=status)
    if as_json:
        print_json([d.raw for d in rows])
        return
    for d in rows:
        tries = ",".join(str(a.status_code or a.error or "?") for a in d.attempts) or "-"
        print(f"{d.id}\t{d.event}\t{d.status}\t{tries}")


@webhooks.command("replay")
def replay(
    webhook_id: WebhookId,
    delivery_id: Annotated[str, typer.Argument(metavar="DELIVERY_ID", help="the delivery")],
    as_json: Json = False,
    url: Url = None,
    key: Key = None,
    timeout: Timeout = 60.0,
) -> None:
    """Send a delivery again, now (the same webhook-id and body)."""
    with _client(url, key, timeout) as client:
        found = client.replay(webhook_id, delivery_id)
    print_json(found.raw) if as_json else print(found.id)
    print(f"delivery {found.id}: {found.status}", file=sys.stderr)
