"""The webhooks part of ``docs/api.md`` (``api_walkthrough.py`` calls ``webhooks``): an
endpoint on loopback registered for ``job.succeeded``, the delivery it received, the delivery
log, a replay."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

from walkthrough_page import Page, Walkthrough


@contextmanager
def receiver() -> Iterator[list[tuple[dict[str, str], bytes]]]:
    """An endpoint on loopback that records what it is sent and answers 204."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    got.append(({"url": f"http://127.0.0.1:{server.server_address[1]}/hooks/dlcprune"}, b""))
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()


def webhooks(w: Walkthrough, page: Page, dataset_id: str) -> None:
    page.text(
        """
        ## Webhooks

        Register an endpoint for events (`dataset.ready`, `dataset.invalid`, `job.succeeded`,
        `job.failed`, `job.cancelled`); the answer's `secret` is shown this once. The URL must be
        a public address; loopback is allowed on the embedded default (here), private networks
        only where the operator lists them (`DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS`).
        """
    )
    with receiver() as got:
        target = got.pop(0)[0]["url"]
        body = {"url": target, "events": ["job.succeeded"], "description": "training pipeline"}
        hook = w.call("POST", "/v1/webhooks", body=body, expect=201).json()
        job = w.http.post(
            "/v1/jobs", json={"dataset_id": dataset_id, "params": {"image_size": 32, "levels": 3}}
        ).json()
        deadline = time.monotonic() + 300
        while not got:
            if time.monotonic() > deadline:
                raise TimeoutError("no delivery")
            time.sleep(0.2)
        headers, sent = got[0]
        page.text(
            f"""
            A job then ran (`{job["id"]}`); when it succeeded, the endpoint received (the
            Standard Webhooks headers, and the job as `GET` answers it in `data`):
            """
        )
        shown = "\n".join(
            f"{k}: {headers[k]}" for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
        )
        page.block(
            "http", f"POST /hooks/dlcprune HTTP/1.1\ncontent-type: application/json\n{shown}"
        )
        event = json.loads(sent)
        event["data"] = {k: event["data"][k] for k in ("id", "status", "url")} | {"…": "…"}
        page.block("json", json.dumps(event, indent=2, ensure_ascii=False))
        page.text(
            """
            A receiver checks it with the secret (any Standard Webhooks library; the client has
            `verify_webhook`, which raises `WebhookInvalid` unless the signature matches and the
            timestamp is within five minutes), and deduplicates on `webhook-id`: a retried or
            replayed delivery keeps its id.

            ```python
            from dlcprune.client import verify_webhook

            event = verify_webhook(body, headers, secret)  # event.type, event.data
            ```

            Each delivery and every attempt at it (status, time, the first bytes answered):
            """
        )
        rows = w.call("GET", f"/v1/webhooks/{hook['id']}/deliveries", expect=200).json()
        delivery = rows["items"][0]["id"]
        page.text(
            "A failed attempt is retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h "
            "(`DLCPRUNE_WEBHOOK_RETRY_SCHEDULE`), then the delivery is `failed`. Any delivery "
            "can be sent again:"
        )
        path = f"/v1/webhooks/{hook['id']}/deliveries/{delivery}/replay"
        w.call("POST", path, show="none", expect=202)
        w.http.delete(f"/v1/webhooks/{hook['id']}")
