"""Selection speed over HTTP: FlexRand on 1,000,000 cached scores, items fetched as CSV.

    python bench/selection.py [--samples 1000000] [--classes 1000] [--keep 0.3] [--repeat 5]
    python bench/selection.py --samples 100000 --classes 10 --strategy kcenter --dims 256

With ``--dims D`` the job also gets kept embeddings (float16, seeded Gaussian classes, ``D``
wide), so the feature strategies (kcenter, herding, moderate) can be timed: they select from the
embeddings, computed on demand, with no model run.

Starts the service on its embedded default in a temporary directory (``dlcprune serve``), stores a
dataset index, a finished job and its 1,000,000 scores directly through the service's own
modules (scoring a million images is not what is measured), then times, over real HTTP from this
process, ``POST /v1/jobs/{id}/selections`` followed by ``GET /v1/selections/{id}/items?format=csv``
(the whole CSV downloaded). The first round includes loading the dataset index into the API's
cache; the others are warm. Prints each round and checks the CSV holds exactly the selection.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from dlcprune.devserver import clean_env, serve  # noqa: E402


def seed_job(data_dir: Path, n: int, classes: int, dims: int = 0) -> str:
    """A ready dataset of ``n`` samples, a succeeded job and its scores; returns the job id."""
    os.environ["DLCPRUNE_DATA_DIR"] = str(data_dir)
    from app.auth import LOCAL_TENANT, get_or_create_tenant
    from app.blobstore import get_blobstore
    from app.db import migrate, session_scope
    from app.models import Dataset, Job, JobStatus, ScoreSet, utcnow

    migrate()
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    ids = [f"class{c:04d}/img{i:07d}.jpg" for i, c in enumerate(labels)]
    encoded = [s.encode() for s in ids]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    names = np.array([f"class{c:04d}" for c in range(classes)])
    buf = io.BytesIO()
    np.savez(
        buf,
        ids_utf8=np.frombuffer(b"".join(encoded), dtype=np.uint8),
        id_offsets=offsets,
        label_codes=labels.astype(np.int32),
        class_names=names,
    )
    with session_scope() as session:
        tenant = get_or_create_tenant(session, LOCAL_TENANT)
        ds = Dataset(
            tenant_id=tenant.id,
            name="million",
            status="ready",
            source="upload",
            filename="million.zip",
            format="zip",
            kind="image",
            num_samples=n,
            classes={str(c): int(n // classes) for c in names},
            sha256="0" * 64,
        )
        session.add(ds)
        session.flush()
        key = f"datasets/{ds.id}/index.npz"
        get_blobstore().put_bytes(key, buf.getvalue())
        ds.index_key = key
        scores = rng.gamma(2.0, 1.0, n).astype(np.float32)
        ss = ScoreSet(
            tenant_id=tenant.id,
            cache_key=uuid.uuid4().hex,
            dataset_id=ds.id,
            method="dlc",
            model="efficientnet_lite0",
            params={},
            num_samples=n,
            scores=scores.astype("<f4").tobytes(),
        )
        if dims:
            from dlcprune.core import embeddings as emb

            centres = rng.normal(size=(classes, dims)).astype(np.float32)
            feats = centres[labels] + rng.normal(scale=2.0, size=(n, dims)).astype(np.float32)
            prefix = f"embeddings/bench-{uuid.uuid4().hex}"
            get_blobstore().put_bytes(
                f"{prefix}/{emb.FEATURES_FILE}", emb.to_npy(feats.astype(np.float16))
            )
            ss.embeddings_key, ss.embeddings_dims, ss.embeddings_projected = prefix, dims, False
        session.add(ss)
        session.flush()
        job = Job(
            tenant_id=tenant.id,
            dataset_id=ds.id,
            model="efficientnet_lite0",
            method="dlc",
            params={},
            cache_key=ss.cache_key,
            status=JobStatus.succeeded,
            score_set_id=ss.id,
            progress_done=n,
            progress_total=n,
            finished_at=utcnow(),
        )
        session.add(job)
        session.flush()
        return str(job.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--keep", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--strategy", default="flexrand")
    parser.add_argument("--dims", type=int, default=0, help="kept embeddings' width (0: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlc-select-") as tmp:
        data_dir = Path(tmp) / "var"
        job_id = seed_job(data_dir, args.samples, args.classes, args.dims)
        env = clean_env(DLCPRUNE_DATA_DIR=str(data_dir))
        with serve(
            ["--no-embedded-worker"], env=env, cwd=ROOT, ready_path="/healthz", stop_timeout=20
        ) as server:
            url = server.url
            expected = round(args.samples * args.keep)
            print(
                f"{args.samples} scores, {args.classes} classes, keep {args.keep} "
                f"({expected} ids in the CSV), {args.strategy}"
                f"{f' on {args.dims}-dim embeddings' if args.dims else ''}, over HTTP on 127.0.0.1"
            )
            with httpx.Client(base_url=url, timeout=60) as client:
                for round_ in range(args.repeat):
                    t0 = time.perf_counter()
                    sel = client.post(
                        f"/v1/jobs/{job_id}/selections",
                        json={"keep": args.keep, "seed": round_, "strategy": args.strategy},
                    )
                    t1 = time.perf_counter()
                    body = client.get(
                        f"/v1/selections/{sel.json()['id']}/items", params={"format": "csv"}
                    ).content
                    t2 = time.perf_counter()
                    lines = body.count(b"\n") - 1
                    assert sel.status_code == 201 and lines == sel.json()["size"] == expected
                    label = "cold" if round_ == 0 else "warm"
                    print(
                        f"round {round_ + 1} ({label}): selection {t1 - t0:.3f} s + items CSV "
                        f"{t2 - t1:.3f} s ({len(body) / 2**20:.1f} MiB) = {t2 - t0:.3f} s"
                    )


if __name__ == "__main__":
    main()
