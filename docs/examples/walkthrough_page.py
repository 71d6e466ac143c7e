"""The page ``api_walkthrough.py`` writes: markdown blocks, each call as ``curl`` with the
status line, the headers that matter and the body, and short views of files (zips, Parquet,
metrics). The service's free port and temporary directory are shown as port 8000 and
``/srv/data``, so the page reads as a session against ``make run``.
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

SHOWN_BASE = "http://127.0.0.1:8000"
SHOWN_DATA = "/srv/data"
MAX_LIST = 6  # longer lists keep their first KEEP_LIST items and a "… N more" element
KEEP_LIST = 3
SHOWN_HEADERS = (
    "content-type",
    "location",
    "retry-after",
    "etag",
    "content-disposition",
    "idempotent-replayed",
    "allow",
    "x-total-count",
)


def trim(value: Any) -> Any:
    """Long lists keep their first items and an explicit "… N more" element."""
    if isinstance(value, dict):
        return {k: trim(v) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) > MAX_LIST:
            return [*(trim(v) for v in value[:KEEP_LIST]), f"… {len(value) - KEEP_LIST} more"]
        return [trim(v) for v in value]
    return value


def head(text: str, lines: int = 5) -> str:
    rows = text.splitlines()
    shown = "\n".join(rows[:lines])
    return shown + (f"\n… {len(rows) - lines} more lines" if len(rows) > lines else "")


class Page:
    """The markdown being written, and the substitutions that make it read as port 8000."""

    def __init__(self, base: str, data_dir: str) -> None:
        self.base = base
        self.data_dir = data_dir
        self.parts: list[str] = []

    def shown(self, text: str) -> str:
        return text.replace(self.base, SHOWN_BASE).replace(self.data_dir, SHOWN_DATA)

    def text(self, markdown: str) -> None:
        self.parts.append(textwrap.dedent(markdown).strip() + "\n")

    def block(self, lang: str, body: str) -> None:
        self.parts.append(f"```{lang}\n{self.shown(body).rstrip()}\n```\n")

    def render(self) -> str:
        return "\n".join(self.parts)


def curl(
    method: str,
    url: str,
    *,
    params: dict[str, Any] | None = None,
    body: Any = None,
    files: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    output: str | None = None,
) -> str:
    if params:
        url = f"{url}?{urlencode(params)}"
    args = ["curl", "-s"]
    if output == "-OJ":
        args.append("-OJ")
    if method not in ("GET", "POST") or (method == "POST" and body is None and not files):
        args += ["-X", method]
    for key, value in (headers or {}).items():
        args += ["-H", f"{key}: {value}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    for field, path in (files or {}).items():
        args += ["-F", f"{field}=@{path}"]
    args.append(url)
    return " ".join(shlex.quote(a) for a in args)


class Walkthrough:
    def __init__(self, base: str, page: Page, workdir: Path) -> None:
        self.base = base
        self.page = page
        self.workdir = workdir
        self.http = httpx.Client(base_url=base, timeout=120)

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        upload: Path | None = None,
        headers: dict[str, str] | None = None,
        show: str = "json",
        expect: int | None = None,
    ) -> httpx.Response:
        """Perform one call and write it: curl, status line, headers, body."""
        files = None
        if upload is not None:
            files = {"file": (upload.name, upload.read_bytes(), "application/octet-stream")}
        resp = self.http.request(
            method, path, params=params, json=body, files=files, headers=headers
        )
        if expect is not None and resp.status_code != expect:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        command = curl(
            method,
            f"{self.base}{path}",
            params=params,
            body=body,
            files={"file": upload.name} if upload is not None else None,
            headers=headers,
            output="-OJ" if show == "file" else None,
        )
        self.page.block("bash", f"$ {command}")
        lines = [f"HTTP/1.1 {resp.status_code} {resp.reason_phrase}"]
        lines += [f"{h}: {resp.headers[h]}" for h in SHOWN_HEADERS if h in resp.headers]
        if show == "json":
            body_text = json.dumps(trim(resp.json()), indent=2, ensure_ascii=False)
            self.page.block("http", "\n".join(lines))
            self.page.block("json", body_text)
        elif show == "text":
            self.page.block("http", "\n".join(lines) + "\n\n" + head(resp.text))
        elif show == "none":
            self.page.block("http", "\n".join(lines))
        else:  # a file: the headers, then what the file holds
            self.page.block("http", "\n".join(lines))
        return resp

    def wait(self, job_id: str) -> dict:
        """Poll a job until it ends; write the states seen."""
        seen: list[str] = []
        while True:
            job = self.http.get(f"/v1/jobs/{job_id}").json()
            p = job["progress"]
            line = f"{job['status']:<10}{p['stage']:<14}{p['done']:>5}/{p['total']:<5}"
            line += f" eta {p['eta_seconds']}"
            if not seen or seen[-1] != line:
                seen.append(line)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        path = f"/v1/jobs/{job_id}"
        self.page.block("bash", f"$ curl -s {self.base}{path}   # polled every 0.2 s")
        self.page.block("text", "\n".join(seen))
        return job


def zip_listing(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        rows = [f"{i.file_size:>9}  {i.filename}" for i in infos]
    if len(rows) > MAX_LIST:  # the first few and the last
        rows = [*rows[:KEEP_LIST], f"… {len(rows) - KEEP_LIST - 1} more members", rows[-1]]
    return "\n".join(["   length  name", *rows, f"{len(infos)} members"])


def raw_error(w: Walkthrough) -> None:
    """``400 malformed_json``: sent by hand, as curl would send a broken body."""
    path = "/v1/jobs"
    resp = w.http.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    w.page.block(
        "bash",
        f"$ curl -s -H 'Content-Type: application/json' -d '{{not json' {w.base}{path}",
    )
    status = f"HTTP/1.1 {resp.status_code} {resp.reason_phrase}"
    w.page.block("http", f"{status}\ncontent-type: {resp.headers['content-type']}")
    w.page.block("json", json.dumps(resp.json(), indent=2))


def parquet_summary(data: bytes) -> str:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    out = ["schema:"]
    out += [f"  {f.name}: {f.type}" for f in table.schema]
    out.append(f"metadata: {sorted(k.decode() for k in (table.schema.metadata or {}))}")
    out.append(f"{table.num_rows} rows; the first three:")
    for row in table.slice(0, 3).to_pylist():
        out.append(f"  {row}")
    return "\n".join(out)


def metrics_excerpt(text: str) -> str:
    keep: list[str] = []
    for line in text.splitlines():
        if not line.startswith("dlcprune_") or "_created" in line:
            continue
        if "_bucket{" in line and 'le="+Inf"' not in line:
            continue
        keep.append(line)
    rows = []
    for line in keep:
        if line.startswith("dlcprune_http_request_duration") and '/v1/jobs/{job_id}"' not in line:
            continue
        rows.append(line)
    return "\n".join(rows) + "\n… (bucket lines and most request-latency series cut)"


def run_client_example(code: str) -> str:
    """Run the client example in a fresh interpreter and return what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the client example failed:\n{done.stderr}")
    return done.stdout
