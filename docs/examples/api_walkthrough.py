"""Write ``docs/api.md``: the REST API, call by call, from real requests and their real answers.

    .venv/bin/python docs/examples/api_walkthrough.py [--out docs/api.md]

It starts the embedded service (``dlcprune serve --port <free>`` with ``DLCPRUNE_DATA_DIR`` in a
temporary directory: SQLite, a blob directory and the embedded worker; no key needed on loopback),
makes a small image dataset (three classes of tinted noise), then performs each call with httpx
and writes it as a ``curl`` command followed by the status line, the headers that matter and the
body the service answered: JSON pretty-printed, long lists cut with an explicit "…" element,
ids and times as returned. Only two things are rewritten: the free port becomes 8000 and the
temporary directory becomes ``/srv/data``, so the page reads as a session against ``make run``.
How a call is written is ``walkthrough_page.py``'s; the service is started and stopped by
``dlcprune.devserver``.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from walkthrough_page import (
    Page,
    Walkthrough,
    metrics_excerpt,
    parquet_summary,
    raw_error,
    run_client_example,
    zip_listing,
)
from walkthrough_webhooks import webhooks

from dlcprune.devserver import clean_env, serve
from dlcprune.names import DEFAULT_EXPORT_FORMAT, EXPORT_FORMATS

ROOT = Path(__file__).resolve().parents[2]
PARAMS = {"image_size": 32, "levels": 4}

# What each export format is, by its name in dlcprune.names (the table follows that order).
EXPORT_DESCRIPTIONS = {
    "original": "the pruned dataset in its own format: a zip of the kept images in their class "
    "folders (bytes unchanged), the kept JSON lines byte for byte, a zip of the kept manifest "
    "rows and images, or an `.npz` of the kept rows; `&provenance=true` adds `provenance.json` "
    "to the zips",
    "manifest-csv": "every sample of the dataset: `sample_id,label,score,kept`",
    "manifest-jsonl": "the same as JSON lines",
    "parquet": "the scores as Parquet: `sample_id`, `label`, `score` (float32), `kept`, and "
    "`tokens` for instruction data; the provenance record in the file's metadata "
    "(`dlcprune.provenance`)",
    "bundle": "a zip of the original-format export, `manifest.csv` and `provenance.json`",
}
assert tuple(EXPORT_DESCRIPTIONS) == EXPORT_FORMATS, "describe every export format, in order"
EXPORT_TABLE = "\n        ".join(
    [
        "| `format` | What it is |",
        "| --- | --- |",
        *(
            f"| `{name}`{' (default)' if name == DEFAULT_EXPORT_FORMAT else ''} | {text} |"
            for name, text in EXPORT_DESCRIPTIONS.items()
        ),
    ]
)

CLIENT_EXAMPLE = """\
from dlcprune.client import Client, DlcpruneError

with Client("{base}") as dlc:  # Client(url, api_key="dlc_...") when auth is on
    ds = dlc.upload("{archive}")
    job = dlc.start_job(ds.id, params={{"image_size": 32, "levels": 3}})
    job = dlc.wait(job.id, poll=0.5, progress=lambda f, j: print(f"{{j.status:9}} {{f:4.0%}}"))
    sel = dlc.select(job.id, keep=0.5, strategy="flexrand", seed=1)
    print(sel.size, "kept of", sel.num_samples, "| provenance:", sel.provenance["code"])
    print([item.sample_id for item in dlc.items(sel.id)][:4])
    print(dlc.download(sel.id, "{exports}", format="bundle").name)
    try:
        dlc.select(job.id, keep=1000)
    except DlcpruneError as err:
        print(err.status, err.code, "-", err.message)
"""


# A dataset -------------------------------------------------------------------------------------


def make_archive(path: Path, per_class: int = 8, seed: int = 0) -> Path:
    """Three classes (red, green, blue) of 16x16 PNGs of tinted noise, as class folders."""
    rng = np.random.default_rng(seed)
    tints = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}
    with zipfile.ZipFile(path, "w") as zf:
        for name, tint in tints.items():
            for i in range(per_class):
                noise = rng.integers(-50, 50, size=(16, 16, 3))
                pixels = np.clip(np.array(tint) + noise, 0, 255).astype(np.uint8)
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, format="PNG")
                zf.writestr(f"{name}/{i:03d}.png", buf.getvalue())
    return path


# The service -----------------------------------------------------------------------------------


@contextmanager
def embedded_service(data_dir: Path, refs: Path, log: Path) -> Iterator[str]:
    """``dlcprune serve`` on the embedded default; yields its base URL."""
    env = clean_env(
        DLCPRUNE_DATA_DIR=str(data_dir),
        DLCPRUNE_FILE_ROOTS=str(refs),
        DLCPRUNE_HEARTBEAT_SECONDS="0.5",
        DLCPRUNE_POLL_SECONDS="0.2",
    )
    with serve(env=env, log=log, new_session=True, timeout=90, stop_timeout=20) as service:
        yield service.url


# The walkthrough ---------------------------------------------------------------------------------


def run(base: str, page: Page, workdir: Path, refs: Path) -> None:
    w = Walkthrough(base, page, workdir)
    archive = make_archive(workdir / "colours.zip")
    folder = refs / "colours"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)

    page.text(
        """
        # The REST API, call by call

        Every request below was made against the embedded service (`dlcprune serve`, as
        `make run` starts it) by [examples/api_walkthrough.py](examples/api_walkthrough.py), which
        wrote this page: each call as `curl`, then the status line, the headers that matter and
        the body the service answered. Ids and times are the ones it returned; long lists are cut
        with an explicit `"… N more"` element, long files after a few lines. The service ran on a
        free port and in a temporary directory, shown here as port 8000 and `/srv/data`.

        The interactive reference (every route, schema and example) is the OpenAPI page at
        `/docs`; the machine-readable spec is `/openapi.json`, committed as
        [openapi.json](openapi.json) (a test keeps the two equal;
        `.venv/bin/python -m app.openapi docs/openapi.json` rewrites it).

        **Auth.** On the embedded default on a loopback address no key is needed. Everywhere else
        send `Authorization: Bearer <key>` (or `X-API-Key: <key>`); keys come from
        `dlcprune keys create --tenant NAME`. Without a valid key every `/v1` route answers
        `401 unauthorized`, and another tenant's ids answer `404 not_found`.

        **Errors** are RFC 9457 problem details (`application/problem+json`): `type`
        (`urn:dlcprune:problem:<code>`), `title`, `status`, `detail` (for a person: it names the
        field, file or row), `instance` (the request's path), the stable `code`, `request_id`, and
        for some a `details` object: `details.errors` lists each field that failed validation
        (`loc`, `msg`, `type`); a refused upload's `details.dataset` is the record as it was read
        (examples at the end of this page). Every response carries `X-Request-ID` (yours, or a new
        one), which the service's JSON logs carry too.

        The dataset here is a zip of 24 PNGs (16x16 px, tinted noise) in three class folders,
        `red/`, `green/`, `blue/`.
        """
    )

    page.text("## Health\n\nNo key needed: liveness, and readiness of each dependency.")
    w.call("GET", "/readyz", expect=200)

    # Datasets ----------------------------------------------------------------------------------
    page.text(
        """
        ## Datasets

        ### Upload a file

        Multipart, field `file` (and an optional `name`): zip, tar, tar.gz, npz or JSON lines. The
        upload is streamed to the blob store while it is hashed, then validated and indexed
        before the answer (`201`, `ready`); a large upload answers `202` (`indexing`) at once.
        Data that is refused answers `422` naming the file and the member or line, and keeps
        nothing: no dataset row, no bytes (`details.dataset` shows the record as it was read).
        A large upload validated after the answer (`202`) that turns out invalid stays as an
        `invalid` dataset, so the client polling it reads why, until it is deleted.
        `Idempotency-Key` makes a retried upload safe.
        """
    )
    ds = w.call("POST", "/v1/datasets", upload=archive, expect=201).json()

    page.text(
        """
        The same bytes again (read the same way) answer the dataset the tenant already has,
        `200`; `?copy=true` registers a new one anyway.
        """
    )
    w.call("POST", "/v1/datasets", upload=archive, show="none", expect=200)

    page.text(
        """
        ### Register data the service can already read

        `file://` below a directory the operator listed in `DLCPRUNE_FILE_ROOTS` (here
        `/srv/data/refs`), or an fsspec URL whose scheme is enabled in
        `DLCPRUNE_REFERENCE_SCHEMES` (`s3://`, `gs://`). A folder of class folders works too.
        """
    )
    ref = w.call(
        "POST",
        "/v1/dataset-references",
        body={"uri": folder.as_uri(), "name": "colours (folder)", "tags": ["demo"]},
        expect=201,
    ).json()

    page.text("### List, read, delete")
    w.call("GET", "/v1/datasets", params={"limit": 1}, expect=200)
    w.call("GET", f"/v1/datasets/{ds['id']}", expect=200)
    page.text(
        "Deleting a dataset removes its jobs, scores, selections and exports (`204`, no body):"
    )
    w.call("DELETE", f"/v1/datasets/{ref['id']}", show="none", expect=204)

    # Jobs --------------------------------------------------------------------------------------
    page.text(
        """
        ## Jobs

        ### Start a scoring job

        `202` at once, with the job's `Location` and a `Retry-After` (seconds before it is worth
        polling); the job is `queued` until a worker takes it. `priority` (`high`, `normal`,
        `low`) orders the queued jobs. `params` are DLC's (names as
        the CLI's options in snake case; unset ones get the defaults for the data's kind, shown
        in the answer). All of them come from one definition (`dlcprune/core/params.py`), so the
        engine's `early_stop` (with `early_stop_tol`, `early_stop_window`, `early_stop_min`) and
        `precision` are job parameters too; the batch size is the worker's setting
        (`DLCPRUNE_BATCH_SIZE`).
        """
    )
    body = {"dataset_id": ds["id"], "model": "efficientnet_lite0", "params": PARAMS}
    job = w.call("POST", "/v1/jobs", body=body, expect=202).json()

    page.text(
        """
        ### Poll it

        `progress.done`/`total` count samples times passes over the data (one to decode, one
        unmasked, one per mask level); `stage` says where it is, `eta_seconds` how long is left.
        """
    )
    w.wait(job["id"])
    polled = w.call("GET", f"/v1/jobs/{job['id']}", expect=200)
    page.text(
        "A poller that sends the `ETag` back in `If-None-Match` gets `304`, no body, until the "
        "job changes (datasets answer the same way):"
    )
    tag = {"If-None-Match": polled.headers["etag"]}
    w.call("GET", f"/v1/jobs/{job['id']}", headers=tag, show="none", expect=304)

    page.text(
        """
        ### The same request again: answered from the cache

        Scores are kept per content, model and parameters: the same job is born `succeeded`
        with `cached: true` and computes nothing. With an `Idempotency-Key` header, a retried
        request returns the job the first one made (`Idempotent-Replayed: true`); the same key
        with another body answers `409 idempotency_key_reused`.
        """
    )
    w.call("POST", "/v1/jobs", body=body, expect=202)
    keyed = {"Idempotency-Key": "nightly-2026-11-28"}
    w.call("POST", "/v1/jobs", body=body, headers=keyed, expect=202)
    w.call("POST", "/v1/jobs", body=body, headers=keyed, expect=202)

    page.text("### List jobs\n\nFilter by `status` and `dataset_id`; paged with `limit`/`offset`.")
    w.call(
        "GET",
        "/v1/jobs",
        params={"dataset_id": ds["id"], "status": "succeeded", "limit": 1},
        expect=200,
    )

    page.text(
        """
        ### Cancel

        A queued job is cancelled at once; a running one stops at its next progress report
        (within seconds). A job that has ended answers `409 job_finished`.
        """
    )
    long_body = {
        "dataset_id": ds["id"],
        "params": {"image_size": 32, "levels": 400},
        "tags": ["demo"],
        "external_id": "long-1",
    }
    long_job = w.http.post("/v1/jobs", json=long_body).json()
    page.text(
        "A long job (400 levels, tagged `demo`, external id `long-1`) was started the same "
        "way; while it has no scores:"
    )
    w.call(
        "POST",
        f"/v1/jobs/{long_job['id']}/selections",
        body={"keep_ratio": 0.5},
        expect=409,
    )
    w.call("POST", f"/v1/jobs/{long_job['id']}/cancel", expect=202)
    deadline = time.monotonic() + 60
    while w.http.get(f"/v1/jobs/{long_job['id']}").json()["status"] not in (
        "cancelled",
        "succeeded",
        "failed",
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("the long job did not stop")
        time.sleep(0.2)
    w.call("POST", f"/v1/jobs/{long_job['id']}/cancel", expect=409)

    # Scores ------------------------------------------------------------------------------------
    page.text(
        """
        ## Scores

        Per sample, in dataset order: JSON paged (`limit` up to 10,000), or CSV streamed from
        `scores.csv` (every sample, or `limit`/`offset` rows; `X-Total-Count` is the number of
        samples). Low scores are easy samples, high ones hard.
        """
    )
    w.call("GET", f"/v1/jobs/{job['id']}/scores", params={"limit": 3}, expect=200)
    w.call("GET", f"/v1/jobs/{job['id']}/scores.csv", show="text", expect=200)

    # Selections --------------------------------------------------------------------------------
    page.text(
        """
        ## Selections

        ### Preview a subset

        Exactly the selection that creating it would make, stored nowhere: its size and class
        counts, how far it moves the score distribution (two-sample Kolmogorov-Smirnov D) and the
        class proportions (total variation distance), and both histograms.
        """
    )
    sel_body = {"keep_ratio": 0.5, "strategy": "flexrand", "split": 0.5, "seed": 0}
    w.call(
        "POST",
        f"/v1/jobs/{job['id']}/selections/preview",
        body=sel_body,
        params={"bins": 8},
        expect=200,
    )

    page.text(
        """
        ### Create it

        `keep_ratio` is a share in (0, 1], `keep_count` a number of samples (>= 1; `keep`, a
        number <= 1 as a ratio or a whole number above 1 as a count, is the older alias);
        numbers must be JSON numbers (no `true`, no `"0.3"`); strategies `flexrand`
        (randomised easy/hard, with its easy share `split`), `easy`, `hard`, `random`,
        `stratified`; `seed` fixes the draw.
        The answer carries the selection's **provenance**: the dataset's id and SHA-256, the
        model and its weights' hash, the method and its parameters, the selection's settings and
        the code version (package version and git commit) that made it.
        """
    )
    sel = w.call("POST", f"/v1/jobs/{job['id']}/selections", body=sel_body, expect=201).json()

    page.text("### Read it, list a job's selections")
    w.call("GET", f"/v1/selections/{sel['id']}", expect=200)
    w.call("GET", f"/v1/jobs/{job['id']}/selections", params={"limit": 1}, expect=200)

    page.text(
        """
        ### The kept samples

        JSON paged, or CSV / JSON lines streamed (`items.csv`, `items.jsonl`; `limit`/`offset`
        cut the rows), in dataset order.
        """
    )
    w.call("GET", f"/v1/selections/{sel['id']}/items", params={"limit": 3}, expect=200)
    w.call("GET", f"/v1/selections/{sel['id']}/items.csv", show="text", expect=200)

    # Exports -------------------------------------------------------------------------------------
    page.text(
        """
        ## Exports

        `GET /v1/selections/{id}/export?format=...`, built once into the blob store and streamed
        from there; the file name is in `Content-Disposition` (`curl -OJ` keeps it).

        {table}

        ### The original format
        """.replace("{table}", EXPORT_TABLE)
    )
    export = f"/v1/selections/{sel['id']}/export"
    original = w.call("GET", export, show="file", expect=200)
    page.block("text", zip_listing(original.content))
    page.text("With `provenance=true`, the same zip plus `provenance.json` (its last member):")
    stamped = w.call("GET", export, params={"provenance": "true"}, show="file", expect=200)
    page.block("text", zip_listing(stamped.content))
    with zipfile.ZipFile(io.BytesIO(stamped.content)) as zf:
        provenance = zf.read("provenance.json").decode()
    page.block("json", provenance)

    page.text("### Manifests")
    w.call("GET", export, params={"format": "manifest-csv"}, show="text", expect=200)
    w.call("GET", export, params={"format": "manifest-jsonl"}, show="text", expect=200)

    page.text("### Parquet")
    parquet = w.call("GET", export, params={"format": "parquet"}, show="file", expect=200)
    page.block("text", parquet_summary(parquet.content))

    page.text("### A bundle")
    bundle = w.call("GET", export, params={"format": "bundle"}, show="file", expect=200)
    page.block("text", zip_listing(bundle.content))

    webhooks(w, page, ds["id"])

    # Lifecycle and lists ------------------------------------------------------------------------
    page.text(
        """
        ## Lifecycle, lists, retries, keys and limits

        **Deleting.** `DELETE /v1/selections/{id}` (with its exports), `DELETE /v1/jobs/{id}` (with
        its selections; the score cache stays; a queued or running job answers
        `409 job_active` unless `?force=true`), `DELETE /v1/weights/{id}` (`409 weights_in_use`
        while a queued or running job uses it), `DELETE /v1/datasets/{id}`: while jobs are queued
        or running on the dataset it answers `409 dataset_busy` (`details.jobs` lists them) unless
        `?force=true`, which cancels them: they stay readable, `cancelled` with the error
        `dataset_deleted` and `dataset_id` null, never a 404 to a client polling them.
        """
    )
    extra = w.http.post(
        f"/v1/jobs/{job['id']}/selections", json={"keep_count": 3, "strategy": "random"}
    ).json()
    w.call("DELETE", f"/v1/selections/{extra['id']}", show="none", expect=204)
    page.text(
        """
        **Lists** (`/v1/datasets`, `/v1/jobs`, a job's selections, `/v1/weights`, `/v1/webhooks`,
        `/v1/keys`) are newest first, paged by `limit`/`offset` or by cursor: each page answers
        `next_cursor` while more follow; send it back as `?cursor=` (rows made meanwhile neither
        repeat nor go missing). Datasets and jobs take `tags` (a list; a form field of
        comma-separated tags on uploads) and an `external_id`, and their lists filter by
        `?tag=` (repeat it: every tag) and `?external_id=`.
        """
    )
    first = w.call("GET", "/v1/datasets", params={"limit": 1}, show="none", expect=200).json()
    w.call("GET", "/v1/datasets", params={"limit": 1, "cursor": first["next_cursor"]}, expect=200)
    w.call("GET", "/v1/jobs", params={"tag": "demo", "external_id": "long-1"}, expect=200)
    page.text(
        """
        **Retries.** Every creating POST (uploads, references, jobs, selections, weights,
        webhooks, keys) takes an `Idempotency-Key` (1-200 printable ASCII characters): per
        tenant, remembered 24 hours (`DLCPRUNE_IDEMPOTENCY_TTL_S`), the same key with the same
        request answers what the first made (`Idempotent-Replayed: true`), with another request
        `409 idempotency_key_reused`; concurrent requests with one key make one resource (the
        later ones wait for the first); a request that failed is not remembered.

        **Keys.** Scopes `read` (GET), `write` (POST, DELETE) and `admin` (which includes both):
        a key without the scope a request needs answers `403 insufficient_scope`. An admin key
        manages its tenant's keys over the API: `POST /v1/keys` (`{"name", "scopes"}`; the key
        is answered this once, only its SHA-256 is stored), `GET /v1/keys`, `GET` and
        `DELETE /v1/keys/{id}` (revoke). A presented key that is wrong is `401`, auth on or off;
        `/readyz` shows why a check failed only to callers with a valid key.

        **Limits** per tenant, each off by default: `DLCPRUNE_TENANT_MAX_ACTIVE_JOBS` (scoring jobs,
        evaluations and exports into stores queued or running, counted together; `429
        too_many_jobs`, whose `details` give the `setting`, the `limit` and the `active` counts),
        `DLCPRUNE_TENANT_MAX_STORED_BYTES` (uploaded datasets
        and weights; `429 storage_limit`), `DLCPRUNE_RATE_LIMIT_PER_S` with
        `DLCPRUNE_RATE_LIMIT_BURST` (requests; `429 rate_limited`); each 429 says when to retry
        in `Retry-After`.
        """
    )

    # Written by hand (object stores, evaluations): kept in api_sections.md -----------------------
    hand = (Path(__file__).parent / "api_sections.md").read_text().split("\n", 1)[1]
    page.text(hand)

    # The Python client ------------------------------------------------------------------------
    page.text(
        """
        ## The same from Python

        `dlcprune.client.Client` wraps these calls with typed results and raises
        `DlcpruneError(status, code, message)` for error answers. Run against the same service
        (its output below the code):
        """
    )
    exports_dir = workdir / "exports"
    code = CLIENT_EXAMPLE.format(base=base, archive=archive, exports=exports_dir)
    page.block("python", code.replace(str(workdir), "."))
    page.block("text", run_client_example(code).replace(str(workdir), "."))
    page.text(
        """
        The command line does the same through the client (`--url`/`--key` default to
        `DLCPRUNE_URL` and `DLCPRUNE_API_KEY`):

        ```bash
        dlcprune remote upload colours.zip                    # prints the dataset id
        dlcprune remote score DATASET_ID --image-size 32 --levels 4 --wait
        dlcprune remote select JOB_ID --keep 0.5 --out subset.txt
        dlcprune remote download SELECTION_ID --out exports/ --format bundle
        dlcprune remote status JOB_ID
        dlcprune remote list jobs --status running --json
        dlcprune remote preview JOB_ID --keep 0.3
        dlcprune remote scores JOB_ID --out scores.csv
        dlcprune remote cancel JOB_ID
        dlcprune remote webhooks create https://ci.example.com/hooks --event job.succeeded
        dlcprune remote webhooks deliveries WEBHOOK_ID
        ```
        """
    )

    # Errors ----------------------------------------------------------------------------------
    page.text(
        """
        ## Errors

        A few of the codes (the 409 `job_not_ready` and `job_finished` answers are above).

        ### 404: no such resource (or another tenant's)
        """
    )
    w.call("GET", "/v1/datasets/00000000-0000-4000-8000-000000000000", expect=404)
    page.text("### 422: a body that does not validate")
    w.call("POST", f"/v1/jobs/{job['id']}/selections", body={"keep_ratio": "0.3"}, expect=422)
    page.text("### 422: a selection the data cannot satisfy")
    w.call("POST", f"/v1/jobs/{job['id']}/selections", body={"keep_count": 1000}, expect=422)
    page.text("### 405: the method is not served here (`Allow` names those that are)")
    w.call("PUT", "/v1/datasets", expect=405)
    page.text("### 422: invalid job parameters")
    bad = {"dataset_id": ds["id"], "params": {"masking": "l1", "draws": 3}}
    w.call("POST", "/v1/jobs", body=bad, expect=422)
    page.text("### 400: a body that is not JSON")
    raw_error(w)

    # Metrics ---------------------------------------------------------------------------------
    page.text(
        """
        ## Metrics

        `GET /metrics` (no key; not in the OpenAPI document) serves Prometheus metrics: jobs and
        datasets by state, a histogram of job durations by final state, the samples scored
        (`rate()` of it is samples per second), the queue depth, the backlog per kind of work,
        the Celery workers (none here: the embedded default), the time to create a selection,
        and HTTP requests by route template and status. The `dlcprune_` lines, histograms cut:
        """
    )
    metrics = w.http.get("/metrics").text
    page.block("bash", f"$ curl -s {base}/metrics | grep '^dlcprune_'")
    page.block("text", metrics_excerpt(metrics))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "api.md"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dlcprune-api-") as tmp:
        workdir = Path(tmp)
        refs = workdir / "refs"
        refs.mkdir()
        with embedded_service(workdir / "var", refs, workdir / "serve.log") as base:
            page = Page(base, str(workdir))
            run(base, page, workdir, refs)
        markdown = page.render()
    Path(args.out).write_text(markdown, encoding="utf-8")
    print(f"wrote {args.out} ({markdown.count(chr(10))} lines)", file=sys.stderr)


if __name__ == "__main__":
    main()
