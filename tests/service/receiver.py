"""A real HTTP receiver on loopback for webhook tests: it records every request (headers and
body bytes) and answers each message (each ``webhook-id``) the statuses it is told to, in
order, then 200."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    url: str
    script: list[int] = field(default_factory=list)  # each message's first answers, in order
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    def answer(self, message: str) -> int:
        seen = sum(1 for r in self.requests if r.headers.get("webhook-id") == message)
        return self.script[seen] if seen < len(self.script) else 200

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        """The requests once ``count`` arrived (raises TimeoutError past ``timeout``)."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"{len(self.requests)} of {count} requests in {timeout} s")
            return list(self.requests)

    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.answered < 300]


@contextmanager
def receiver(script: list[int] | None = None) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 (a free port), stopped when the block ends."""
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            rec = state["r"]
            with rec.arrived:
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = rec.answer(headers.get("webhook-id", ""))
                rec.requests.append(Received(self.path, headers, body, status))
                rec.arrived.notify_all()
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["r"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", list(script or []))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["r"]
    finally:
        server.shutdown()
        server.server_close()
