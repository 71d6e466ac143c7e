"""``dlcprune``: score a dataset with DLC and select pruned subsets, on this machine.

    dlcprune score DATA --model efficientnet_lite0 --image-size 64 --levels 50 --out scores.csv
    dlcprune select scores.csv --keep 0.3 --strategy flexrand --out subset.txt

and against a running service (``dlcprune remote ...``, with ``dlcprune.client``; ``--url`` and
``--key`` default to ``DLCPRUNE_URL`` and ``DLCPRUNE_API_KEY``):

    dlcprune remote upload data.zip
    dlcprune remote score DATASET_ID --image-size 64 --levels 10 --wait
    dlcprune remote select JOB_ID --keep 0.3 --out subset.txt
    dlcprune remote download SELECTION_ID --out exports/
    dlcprune remote status JOB_ID

Errors print one line (``dlcprune: error: ...``; ``dlcprune: error: <code>: <message>`` for the
service's errors) and exit with status 1 (2 for bad usage). Scoring imports torch lazily, so
``select`` stays light.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from dlcprune.core.params import METHODS
from dlcprune.core.selection import DEFAULT_SPLIT, STRATEGIES, SelectionError, select


class CLIError(Exception):
    """An error to print as one line."""


def _keep_value(text: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value > 1 and value.is_integer():
        return int(value)
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlcprune", description="Training-free dataset pruning with DLC scores and FlexRand."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sc = sub.add_parser("score", help="score every sample of a dataset with DLC")
    sc.add_argument("data", help="image folder, .zip/.tar(.gz) archive, .csv/.jsonl manifest, .npz")
    sc.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="registry name, timm/torchvision architecture (with --weights) or TorchScript file",
    )
    sc.add_argument("--weights", default=None, help="weights file (.pth, .pt, .safetensors)")
    sc.add_argument(
        "--method",
        choices=METHODS,
        default="dlc",
        help="dlc, or a baseline (random, herding, kcenter_greedy, moderate; el2n, grand, "
        "forgetting, entropy, margin, least_confidence fine-tune on the whole dataset first)",
    )
    sc.add_argument("--epochs", type=_positive_int, default=3, help="training-based baselines")
    sc.add_argument("--seeds", type=_positive_int, default=2, help="training-based baselines")
    sc.add_argument("--lr", type=float, default=1e-3, help="training-based baselines")
    sc.add_argument(
        "--image-size",
        type=_positive_int,
        default=None,
        help="input size in pixels (default: the backbone's own)",
    )
    sc.add_argument(
        "--levels",
        type=_positive_int,
        default=None,
        help="masked levels (default 10 linear, 50 geometric; 3 for instructions)",
    )
    sc.add_argument(
        "--schedule",
        choices=("linear", "geometric"),
        default=None,
        help="mask path (default linear, see docs/quality.md; geometric for instructions)",
    )
    sc.add_argument("--masking", choices=("l1", "random"), default="l1")
    sc.add_argument(
        "--scope",
        choices=("global", "layer"),
        default="global",
        help="one magnitude order over all weights, or each layer by its own",
    )
    sc.add_argument("--draws", type=_positive_int, default=1, help="random masks per level")
    sc.add_argument(
        "--step",
        type=float,
        default=None,
        help="geometric: share of the remaining weights masked per level (0.02; 0.2 for "
        "instructions)",
    )
    sc.add_argument("--start", type=float, default=0.02, help="linear: first level's share")
    sc.add_argument("--end", type=float, default=0.98, help="linear: last level's share")
    sc.add_argument("--seed", type=_positive_int, default=0)
    sc.add_argument("--batch-size", type=_positive_int, default=64)
    sc.add_argument("--mask-layers", choices=("auto", "conv", "linear"), default="auto")
    sc.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    sc.add_argument(
        "--max-length",
        type=_positive_int,
        default=None,
        help="text and instructions: tokens kept per sample (256; 512 for instructions)",
    )
    sc.add_argument(
        "--template",
        default=None,
        help="instructions: prompt template with {instruction} and {input} (default: Alpaca)",
    )
    sc.add_argument(
        "--truncation",
        choices=("right", "prompt"),
        default="right",
        help="instructions: cut the end, or the prompt's start first",
    )
    sc.add_argument(
        "--hf-kind",
        choices=("auto", "encoder", "causal_lm"),
        default="auto",
        help="a Hugging Face directory as --model: an encoder or a causal LM (auto: config.json)",
    )
    sc.add_argument("--losses", default=None, help="also write per-level losses (.npz)")
    sc.add_argument("--quiet", action="store_true", help="no progress bar")
    sc.add_argument(
        "--progress", action="store_true", help="show the progress bar even when not on a terminal"
    )
    sc.add_argument("--out", required=True, help="output CSV: sample_id,label,score")

    se = sub.add_parser("select", help="select a subset from a scores CSV")
    se.add_argument("scores", help="CSV with header sample_id,label,score")
    se.add_argument(
        "--keep",
        type=_keep_value,
        required=True,
        help="ratio in (0, 1] or a count (a whole number above 1)",
    )
    se.add_argument("--strategy", choices=STRATEGIES, default="flexrand")
    se.add_argument("--split", type=float, default=DEFAULT_SPLIT, help="FlexRand's easy share g")
    se.add_argument(
        "--hard-cutoff", type=float, default=0.1, help="ccs: share of the hardest samples dropped"
    )
    se.add_argument("--seed", type=_positive_int, default=0)
    se.add_argument("--out", required=True, help="output: one kept sample id per line")

    sv = sub.add_parser("serve", help="run the HTTP service (and the embedded worker)")
    sv.add_argument("--host", default=None, help="default DLCPRUNE_HOST or 127.0.0.1")
    sv.add_argument("--port", type=int, default=None, help="default DLCPRUNE_PORT or 8000")
    sv.add_argument(
        "--no-embedded-worker",
        action="store_true",
        help="do not start the embedded worker (Celery workers do the work)",
    )

    sub.add_parser("worker", help="run a Celery worker (solo pool, one job at a time)")
    sub.add_parser("migrate", help="apply the database migrations and exit")

    keys = sub.add_parser("keys", help="manage API keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create a key for a tenant (printed once)")
    kc.add_argument("--tenant", required=True)
    kc.add_argument("--name", default="", help="a label for the key")
    kr = ksub.add_parser("revoke", help="revoke keys by their prefix")
    kr.add_argument("prefix")
    ksub.add_parser("list", help="list keys (prefixes only)")
    _add_remote_parser(sub)
    return parser


REMOTE_EXPORT_FORMATS = ("original", "manifest-csv", "manifest-jsonl", "parquet", "bundle")


def _add_remote_parser(sub: Any) -> None:
    """``dlcprune remote ...``: the service's API through ``dlcprune.client``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("DLCPRUNE_URL"),
        help="the service, e.g. http://127.0.0.1:8000 (default: $DLCPRUNE_URL)",
    )
    common.add_argument(
        "--key", default=os.environ.get("DLCPRUNE_API_KEY"), help="API key ($DLCPRUNE_API_KEY)"
    )
    common.add_argument(
        "--timeout", type=float, default=60.0, help="seconds allowed per network operation"
    )
    remote = sub.add_parser("remote", help="use a running dlcprune service")
    rsub = remote.add_subparsers(dest="remote_command", required=True)

    up = rsub.add_parser(
        "upload", parents=[common], help="upload a dataset (a folder is zipped first)"
    )
    up.add_argument("data", help=".zip/.tar(.gz)/.npz/.jsonl file, or a folder of class folders")
    up.add_argument("--name", default=None, help="a name for the dataset")
    up.add_argument("--json", action="store_true", help="print the dataset as JSON")

    sc = rsub.add_parser("score", parents=[common], help="start a DLC job; prints its id")
    sc.add_argument("dataset_id")
    sc.add_argument("--model", default="efficientnet_lite0")
    sc.add_argument("--weights-id", default=None, help="weights uploaded for the model")
    sc.add_argument("--levels", type=_positive_int, default=None, help="masked levels")
    sc.add_argument("--image-size", type=_positive_int, default=None, help="input size in px")
    sc.add_argument("--schedule", choices=("linear", "geometric"), default=None)
    sc.add_argument("--masking", choices=("l1", "random"), default=None)
    sc.add_argument("--draws", type=_positive_int, default=None, help="random masks per level")
    sc.add_argument("--seed", type=_positive_int, default=None)
    sc.add_argument("--idempotency-key", default=None, help="the same key returns the same job")
    sc.add_argument("--wait", action="store_true", help="wait until the job ends")
    sc.add_argument("--poll", type=float, default=1.0, help="seconds between polls (--wait)")
    sc.add_argument("--wait-timeout", type=float, default=None, help="give up after (s)")
    sc.add_argument(
        "--progress", action="store_true", help="show the progress bar even when not on a terminal"
    )
    sc.add_argument("--quiet", action="store_true", help="no progress bar")
    sc.add_argument("--json", action="store_true", help="print the job as JSON")

    se = rsub.add_parser(
        "select", parents=[common], help="select a subset of a job's samples; prints its id"
    )
    se.add_argument("job_id")
    se.add_argument(
        "--keep",
        type=_keep_value,
        required=True,
        help="ratio in (0, 1] or a count (a whole number above 1)",
    )
    se.add_argument("--strategy", default="flexrand", help="flexrand, easy, hard, random, ...")
    se.add_argument(
        "--split", type=float, default=None, help="FlexRand's easy share g (default: the service's)"
    )
    se.add_argument("--seed", type=_positive_int, default=0)
    se.add_argument("--out", default=None, help="also write the kept ids, one per line")
    se.add_argument("--json", action="store_true", help="print the selection as JSON")

    dl = rsub.add_parser(
        "download", parents=[common], help="download a selection's export; prints its path"
    )
    dl.add_argument("selection_id")
    dl.add_argument("--out", required=True, help="directory to write into")
    dl.add_argument("--format", choices=REMOTE_EXPORT_FORMATS, default="original")
    dl.add_argument(
        "--provenance", action="store_true", help="add provenance.json to original-format zips"
    )

    st = rsub.add_parser("status", parents=[common], help="a job's state and progress")
    st.add_argument("job_id")
    st.add_argument("--json", action="store_true", help="print the job as JSON")


def read_scores_csv(path: str) -> tuple[list[str], list[str] | None, np.ndarray]:
    """Read ``sample_id,label,score``; labels are None when every label cell is empty."""
    ids: list[str] = []
    labels: list[str] = []
    scores: list[float] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:3]] != ["sample_id", "label", "score"]:
                raise CLIError(f"{path}:1: expected the header sample_id,label,score")
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) < 3:
                    raise CLIError(f"{path}:{lineno}: expected 3 columns, got {len(row)}")
                if row[2].strip() == "":
                    value = math.nan  # not scored (an instruction truncated away): never kept
                else:
                    try:
                        value = float(row[2])
                    except ValueError:
                        raise CLIError(
                            f"{path}:{lineno}: score {row[2]!r} is not a number"
                        ) from None
                    if not math.isfinite(value):
                        raise CLIError(f"{path}:{lineno}: score {row[2]!r} is not finite")
                ids.append(row[0])
                labels.append(row[1])
                scores.append(value)
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise CLIError(f"{path}: bad CSV: {exc}") from None
    if not ids:
        raise CLIError(f"{path}: no scores")
    if len(set(ids)) != len(ids):
        raise CLIError(f"{path}: sample ids are not unique")
    has_labels = any(labels)
    if has_labels and not all(labels):
        missing = next(i for i, lab in enumerate(labels) if not lab)
        raise CLIError(f"{path}:{missing + 2}: empty label while other rows have labels")
    return ids, (labels if has_labels else None), np.asarray(scores, dtype=np.float64)


def _permille_bar() -> Any:
    """A tqdm bar on stderr counting thousandths of a job, shown as a percentage."""
    from tqdm import tqdm

    return tqdm(
        total=1000,
        unit="‰",
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
    )


def _progress_bar(quiet: bool) -> tuple[Any, Any]:
    if quiet:
        return None, None
    bar = _permille_bar()

    def update(p: Any) -> None:
        bar.set_description_str(p.stage, refresh=False)
        bar.n = int(p.fraction * 1000)
        bar.refresh()

    return bar, update


def cmd_score(args: argparse.Namespace) -> None:
    from dlcprune.core.formats import open_dataset
    from worker.scoring.backbones import load_backbone
    from worker.scoring.dlc import resolve_device, score

    backbone = load_backbone(
        args.model,
        args.weights,
        mask_layers=args.mask_layers,
        hf_kind=args.hf_kind,
        device=resolve_device(args.device),
    )
    if args.method != "dlc":
        _score_baseline(args, backbone)
        return
    with open_dataset(args.data) as ds:
        bar, update = _progress_bar(args.quiet or not (args.progress or sys.stderr.isatty()))
        try:
            result = score(
                ds,
                backbone,
                levels=args.levels,
                schedule=args.schedule,
                masking=args.masking,
                scope=args.scope,
                draws=args.draws,
                seed=args.seed,
                step=args.step,
                start=args.start,
                end=args.end,
                image_size=args.image_size,
                batch_size=args.batch_size,
                max_length=args.max_length,
                template=args.template,
                truncation=args.truncation,
                return_losses=args.losses is not None,
                progress=update,
            )
        finally:
            if bar is not None:
                bar.close()
    result.write_csv(args.out)
    if args.losses:
        extra = {"tokens": result.tokens} if result.tokens is not None else {}
        np.savez(
            args.losses,
            losses=result.losses,
            mask_fractions=result.mask_fractions,
            ids=np.asarray(result.ids),
            **extra,
        )
    print(
        f"scored {len(result.ids)} samples in {result.timings['total_s']:.1f} s -> {args.out}",
        file=sys.stderr,
    )
    if result.unscored:
        shown = ", ".join(result.unscored[:5]) + (" ..." if len(result.unscored) > 5 else "")
        print(
            f"warning: {len(result.unscored)} sample(s) have no response token left after "
            f"truncation (empty score; raise --max-length or use --truncation prompt): {shown}",
            file=sys.stderr,
        )


def _score_baseline(args: argparse.Namespace, backbone: Any) -> None:
    import time

    from dlcprune.core.formats import open_dataset
    from dlcprune.core.params import STRATEGY, BaselineParams
    from worker.scoring.baselines import score_baseline
    from worker.scoring.dlc import write_scores_csv

    t0 = time.perf_counter()
    params = BaselineParams(
        seed=args.seed,
        seeds=args.seeds,
        epochs=args.epochs,
        lr=args.lr,
        image_size=args.image_size,
        max_length=args.max_length,
        batch_size=args.batch_size,
    )
    with open_dataset(args.data) as ds:
        bar, update = _progress_bar(args.quiet or not (args.progress or sys.stderr.isatty()))
        try:
            scores, _ = score_baseline(ds, backbone, args.method, params, progress=update)
        finally:
            if bar is not None:
                bar.close()
        ids, labels = list(ds.ids), ds.labels
    tmp = f"{args.out}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        write_scores_csv(fh, ids, labels, scores)
    os.replace(tmp, args.out)
    print(
        f"scored {len(ids)} samples with {args.method} in {time.perf_counter() - t0:.1f} s -> "
        f"{args.out} (its usual selection: --strategy {STRATEGY[args.method]})",
        file=sys.stderr,
    )


def cmd_select(args: argparse.Namespace) -> None:
    ids, labels, scores = read_scores_csv(args.scores)
    sel = select(
        scores,
        labels,
        keep=args.keep,
        strategy=args.strategy,
        split=args.split,
        seed=args.seed,
        unscored="exclude",
        hard_cutoff=args.hard_cutoff,
    )
    with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
        for i in sel.indices:
            fh.write(ids[i] + "\n")
    print(
        f"kept {sel.size} of {len(ids)} samples ({sel.size / len(ids):.1%}) -> {args.out}",
        file=sys.stderr,
    )


def cmd_serve(args: argparse.Namespace) -> None:
    import signal
    import subprocess

    import uvicorn

    from app.config import get_settings
    from app.db import migrate

    if args.host:
        os.environ["DLCPRUNE_HOST"] = args.host
    if args.port:
        os.environ["DLCPRUNE_PORT"] = str(args.port)
    settings = get_settings()
    migrate(settings)
    child = None
    if settings.embedded_worker and not args.no_embedded_worker:
        # A process of its own: the API never imports torch, the worker does. It watches this
        # process and stops when it is gone, whatever way this one ends.
        child = subprocess.Popen(
            [sys.executable, "-m", "worker.embedded", "--parent", str(os.getpid())]
        )

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    # uvicorn handles SIGTERM/SIGINT itself, then restores these handlers and re-raises the
    # signal: ending in SystemExit lets the finally below stop the worker first.
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    try:
        uvicorn.run(
            "app.main:app",
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            proxy_headers=True,
            timeout_keep_alive=settings.keep_alive_s,
        )
    finally:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


def cmd_keys(args: argparse.Namespace) -> None:
    from app.auth import create_key, list_keys, revoke_key
    from app.db import migrate, session_scope

    migrate()
    with session_scope() as session:
        if args.keys_command == "create":
            key, row = create_key(session, args.tenant, args.name)
            print(key)
            print(f"created key {row.prefix} for tenant {args.tenant!r}", file=sys.stderr)
        elif args.keys_command == "revoke":
            n = revoke_key(session, args.prefix)
            if n == 0:
                raise CLIError(f"no active key with prefix {args.prefix!r}")
            print(f"revoked {n} key(s)", file=sys.stderr)
        else:
            for tenant, prefix, name, created, revoked in list_keys(session):
                state = f"revoked {revoked:%Y-%m-%d}" if revoked else "active"
                print(f"{prefix}\t{tenant}\t{name}\t{created:%Y-%m-%d}\t{state}")


def _zip_folder(folder: str, workdir: str) -> str:
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


def _remote_progress(args: argparse.Namespace) -> tuple[Any, Any]:
    """A tqdm bar on stderr for ``remote score --wait`` (a terminal, or ``--progress``)."""
    if args.quiet or not (args.progress or sys.stderr.isatty()):
        return None, None
    bar = _permille_bar()

    def update(fraction: float, job: Any) -> None:
        bar.set_description_str(f"{job.status} {job.progress.stage}", refresh=False)
        bar.n = int(fraction * 1000)
        bar.refresh()

    return bar, update


def _print_json(data: Any) -> None:
    import json

    print(json.dumps(data, indent=2))


def cmd_remote(args: argparse.Namespace) -> None:
    """``dlcprune remote ...``: service errors become ``<code>: <message>`` error lines."""
    from dlcprune.client import Client, DlcpruneError

    if not args.url:
        raise CLIError("no service URL: pass --url or set DLCPRUNE_URL")
    try:
        with Client(args.url, api_key=args.key, timeout=args.timeout) as client:
            _run_remote(client, args)
    except DlcpruneError as exc:
        raise CLIError(f"{exc.code}: {exc.message}") from exc


def _run_remote(client: Any, args: argparse.Namespace) -> None:
    command = args.remote_command
    if command == "upload":
        import tempfile

        with tempfile.TemporaryDirectory(prefix="dlcprune-upload-") as workdir:
            path = _zip_folder(args.data, workdir) if os.path.isdir(args.data) else args.data
            if not os.path.isfile(path):
                raise CLIError(f"{args.data}: no such file")
            ds = client.upload(path, name=args.name)
        if args.json:
            _print_json(ds.raw)
        else:
            print(ds.id)
        print(
            f"dataset {ds.id}: {ds.status}, {ds.num_samples} samples, "
            f"{len(ds.classes or {})} classes",
            file=sys.stderr,
        )
    elif command == "score":
        params = {
            name: getattr(args, name)
            for name in ("levels", "image_size", "schedule", "masking", "draws", "seed")
            if getattr(args, name) is not None
        }
        job = client.start_job(
            args.dataset_id,
            model=args.model,
            params=params,
            weights_id=args.weights_id,
            idempotency_key=args.idempotency_key,
        )
        if args.wait and not job.finished:
            bar, update = _remote_progress(args)
            try:
                job = client.wait(
                    job.id, poll=args.poll, timeout=args.wait_timeout, progress=update
                )
            finally:
                if bar is not None:
                    bar.close()
        elif args.wait and job.status != "succeeded":
            from dlcprune.client import JobFailed

            raise JobFailed(job)
        if args.json:
            _print_json(job.raw)
        else:
            print(job.id)
        note = " (from the cache)" if job.cached else ""
        print(f"job {job.id}: {job.status}{note}", file=sys.stderr)
    elif command == "select":
        sel = client.select(
            args.job_id, args.keep, strategy=args.strategy, split=args.split, seed=args.seed
        )
        if args.out:
            with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
                for item in client.iter_items(sel.id):
                    fh.write(item.sample_id + "\n")
        if args.json:
            _print_json(sel.raw)
        else:
            print(sel.id)
        share = sel.size / sel.num_samples if sel.num_samples else 0.0
        where = f" -> {args.out}" if args.out else ""
        print(
            f"selection {sel.id}: kept {sel.size} of {sel.num_samples} samples ({share:.1%})"
            f"{where}",
            file=sys.stderr,
        )
    elif command == "download":
        print(client.download(args.selection_id, args.out, args.format, args.provenance))
    else:
        job = client.job(args.job_id)
        if args.json:
            _print_json(job.raw)
            return
        p = job.progress
        line = f"{job.id}\t{job.status}\t{p.stage}\t{p.done}/{p.total}\t{p.fraction:.1%}"
        if p.eta_seconds is not None and not job.finished:
            line += f"\teta {p.eta_seconds:.0f} s"
        if job.error is not None:
            line += f"\t{job.error.code}: {job.error.message}"
        print(line)


def _fail(message: str) -> NoReturn:
    print(f"dlcprune: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "score":
            cmd_score(args)
        elif args.command == "select":
            cmd_select(args)
        elif args.command == "serve":
            cmd_serve(args)
        elif args.command == "worker":
            from worker.celery_app import main as worker_main

            worker_main()
        elif args.command == "migrate":
            from app.db import migrate

            migrate()
            print("database migrated", file=sys.stderr)
        elif args.command == "remote":
            cmd_remote(args)
        else:
            cmd_keys(args)
    except KeyboardInterrupt:
        _fail("interrupted")
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


if __name__ == "__main__":
    main()
