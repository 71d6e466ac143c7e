"""The ``dlcprune`` console script, run as a user would: a subprocess on real files."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scoring.conftest import write_image_folder

DLCPRUNE = str(Path(sys.executable).parent / "dlcprune")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DLCPRUNE, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    data = write_image_folder(root / "images", per_class=6)
    out = root / "scores.csv"
    proc = run(
        "score",
        str(data),
        "--model",
        "efficientnet_lite0",
        "--image-size",
        "32",
        "--levels",
        "2",
        "--progress",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "scored 18 samples" in proc.stderr
    assert "100%" in proc.stderr  # the progress bar ran to the end
    return data, out


def test_score_writes_one_row_per_sample_with_folder_ids(scored: tuple[Path, Path]) -> None:
    data, out = scored
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["sample_id", "label", "score"]
    ids = [r[0] for r in rows[1:]]
    expected = sorted(str(p.relative_to(data)) for p in data.rglob("*.png"))
    assert ids == expected
    assert all(r[1] == r[0].split("/")[0] for r in rows[1:])
    assert all(float(r[2]) > 0 for r in rows[1:])


@pytest.mark.parametrize(("keep", "expected"), [("0.5", 9), ("0.3", 5), ("7", 7), ("1", 18)])
def test_select_keeps_exactly_the_requested_size(
    scored: tuple[Path, Path], tmp_path: Path, keep: str, expected: int
) -> None:
    _, scores = scored
    out = tmp_path / "subset.txt"
    proc = run("select", str(scores), "--keep", keep, "--seed", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    kept = out.read_text().splitlines()
    assert len(kept) == expected == len(set(kept))
    with open(scores, newline="") as fh:
        order = [r[0] for r in list(csv.reader(fh))[1:]]
    # A subset of the scored ids, in the scores file's order.
    assert kept == [i for i in order if i in set(kept)]
    again = tmp_path / "again.txt"
    run("select", str(scores), "--keep", keep, "--seed", "3", "--out", str(again))
    assert again.read_text() == out.read_text()


def test_select_strategies_easy_and_hard_are_the_extremes(
    scored: tuple[Path, Path], tmp_path: Path
) -> None:
    _, scores = scored
    with open(scores, newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    for strategy in ("easy", "hard"):
        out = tmp_path / f"{strategy}.txt"
        proc = run(
            "select", str(scores), "--keep", "0.5", "--strategy", strategy, "--out", str(out)
        )
        assert proc.returncode == 0, proc.stderr
        kept = set(out.read_text().splitlines())
        for label in ("red", "green", "blue"):
            cls = sorted((float(r[2]), r[0]) for r in rows if r[1] == label)
            want = cls[:3] if strategy == "easy" else cls[3:]
            assert {i for _, i in want} == {i for i in kept if i.startswith(label)}


def test_corrupt_image_is_one_clear_line(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "images", per_class=2)
    (data / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    proc = run(
        "score", str(data), "--image-size", "32", "--levels", "1", "--out", str(tmp_path / "s.csv")
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("dlcprune: error:")
    assert "red/broken.png" in lines[-1]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "s.csv").exists()


def test_empty_folder_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = run("score", str(tmp_path / "empty"), "--out", str(tmp_path / "s.csv"))
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("dlcprune: error:")
    assert "empty" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("sample_id,label,score\na,x,1\nb,y,2\n", ["--keep", "0"], "keep"),
        ("sample_id,label,score\na,x,1\nb,y,2\n", ["--keep", "5"], "5"),
        ("id,score\na,1\n", ["--keep", "0.5"], "header"),
        ("sample_id,label,score\na,x,nope\n", ["--keep", "0.5"], ":2:"),
        ("sample_id,label,score\na,x,1\nb,y,2\n", ["--keep", "0.5", "--split", "2"], "split"),
    ],
)
def test_select_errors_are_one_line(
    tmp_path: Path, content: str, args: list[str], message: str
) -> None:
    scores = tmp_path / "scores.csv"
    scores.write_text(content)
    proc = run("select", str(scores), *args, "--out", str(tmp_path / "o.txt"))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("dlcprune: error:")
    assert message in proc.stderr


def test_missing_scores_file(tmp_path: Path) -> None:
    proc = run("select", str(tmp_path / "nope.csv"), "--keep", "0.5", "--out", "o.txt")
    assert proc.returncode == 1 and "no such file" in proc.stderr


@pytest.mark.slow
def test_score_texts_with_minilm(tmp_path: Path) -> None:
    from tests.service.data import write_text_jsonl

    data = write_text_jsonl(tmp_path / "texts.jsonl", n=12)
    out = tmp_path / "scores.csv"
    proc = run(
        "score", str(data), "--model", "all-minilm-l6-v2", "--levels", "5", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["sample_id", "label", "score"]
    assert [r[0] for r in rows[1:]] == [f"t{i}" for i in range(12)]  # the rows' own ids
    assert all(float(r[2]) > 0 for r in rows[1:])


@pytest.mark.slow
def test_score_instructions_with_a_hf_directory(tmp_path: Path) -> None:
    from tests.service.data import write_instructions, write_tiny_lm

    model = write_tiny_lm(tmp_path / "tiny-llama")
    data = write_instructions(tmp_path / "alpaca.jsonl", n=10, long_input=2)
    out = tmp_path / "scores.csv"
    proc = run(
        "score",
        str(data),
        "--model",
        str(model),
        "--max-length",
        "48",
        "--losses",
        str(tmp_path / "losses.npz"),
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 sample(s) have no response token left" in proc.stderr and "q8, q9" in proc.stderr
    rows = list(csv.reader(out.read_text().splitlines()))[1:]
    assert [r[2] == "" for r in rows] == [False] * 8 + [True] * 2
    import numpy as np

    saved = np.load(tmp_path / "losses.npz")
    assert saved["losses"].shape == (4, 10)  # unmasked + the 3 default levels
    assert saved["tokens"].tolist() == [5] * 8 + [0, 0]
    subset = tmp_path / "subset.txt"
    proc = run("select", str(out), "--keep", "0.5", "--out", str(subset))
    assert proc.returncode == 0, proc.stderr
    kept = subset.read_text().split()
    assert len(kept) == 5 and not {"q8", "q9"} & set(kept)


def test_every_parameter_is_an_option_of_score_and_every_job_parameter_of_remote_score() -> None:
    from dlcprune.cli import command
    from dlcprune.core.params import BaselineParams, DLCParams, params_of

    commands = command().commands
    local = {o for p in commands["score"].params for o in p.opts}
    remote = {o for p in commands["remote"].commands["score"].params for o in p.opts}
    for cls in (DLCParams, BaselineParams):
        for p in params_of(cls):
            option = "--" + p.name.replace("_", "-")
            assert option in local, option
            # The batch size is the worker's setting, not a job's parameter.
            assert (option in remote) == (not p.spec.execution), option


def test_select_options_are_the_selection_parameters_of_both_commands() -> None:
    """``select`` and ``remote select`` take every field of SelectionParams (the API's
    SelectionCreate is built from it too), with its help; ``--keep`` is required in both."""
    from dlcprune.cli import command
    from dlcprune.core.params import params_of
    from dlcprune.core.selection.params import SelectionParams

    commands = command().commands
    for cmd in (commands["select"], commands["remote"].commands["select"]):
        options = {p.opts[0]: p for p in cmd.params if p.opts[0].startswith("--")}
        for p in params_of(SelectionParams):
            option = options["--" + p.name.replace("_", "-")]
            assert option.help is not None and option.help.startswith(p.spec.help), p.name
        assert options["--keep"].required and options["--keep"].metavar == "RATIO|COUNT"
    local = {p.name: p.default for p in commands["select"].params}
    assert all(local[p.name] == p.default for p in params_of(SelectionParams) if p.name != "keep")
    # The remote command sends only what is given: the service fills in its defaults.
    remote = commands["remote"].commands["select"].params
    assert all(p.default is None for p in remote if p.name in ("strategy", "split", "hard_cutoff"))


def test_select_ccs_with_a_hard_cutoff(scored: tuple[Path, Path], tmp_path: Path) -> None:
    _, scores = scored
    rows = list(csv.reader(scores.read_text().splitlines()))[1:]
    easier = {r[0] for r in sorted(rows, key=lambda r: float(r[2]))[:9]}
    out = tmp_path / "ccs.txt"
    proc = run(
        "select", str(scores), "--keep", "0.5", "--strategy", "ccs", "--hard-cutoff", "0.5",
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert set(out.read_text().split()) == easier  # half dropped from the top: the rest, all kept
    bad = run("select", str(scores), "--keep", "0.5", "--hard-cutoff", "1", "--out", str(out))
    assert bad.returncode == 1 and "hard_cutoff" in bad.stderr


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["score"], "dlcprune score [OPTIONS] {DATA}"),
        (["select"], "dlcprune select [OPTIONS] {SCORES}"),
        (["remote", "upload"], "dlcprune remote upload [OPTIONS] {DATA}"),
        (["remote", "score"], "dlcprune remote score [OPTIONS] {DATASET_ID}"),
        (["remote", "select"], "dlcprune remote select [OPTIONS] {JOB_ID}"),
        (["remote", "download"], "dlcprune remote download [OPTIONS] {SELECTION_ID}"),
        (["remote", "status"], "dlcprune remote status [OPTIONS] {JOB_ID}"),
        (["remote", "cancel"], "dlcprune remote cancel [OPTIONS] {JOB_ID}"),
        (["remote", "delete"], "dlcprune remote delete [OPTIONS] {DATASET_ID}"),
        (["remote", "scores"], "dlcprune remote scores [OPTIONS] {JOB_ID}"),
        (["remote", "preview"], "dlcprune remote preview [OPTIONS] {JOB_ID}"),
        (["remote", "list"], "dlcprune remote list [OPTIONS] {WHAT}"),
        (["remote", "webhooks", "create"], "dlcprune remote webhooks create [OPTIONS] {URL}"),
        (
            ["remote", "webhooks", "replay"],
            "dlcprune remote webhooks replay [OPTIONS] {WEBHOOK_ID} {DELIVERY_ID}",
        ),
    ],
)
def test_usage_lines_name_the_arguments(argv: list[str], usage: str) -> None:
    proc = run(*argv, "--help")
    assert proc.returncode == 0 and usage in proc.stdout, proc.stdout


def test_a_bad_dataset_fails_before_the_progress_bar(tmp_path: Path) -> None:
    """The bar starts once the data opened: a dataset that cannot be read leaves the error line
    alone on stderr, no 0% bar before it (the DLC and the baseline paths)."""
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip archive at all")
    for method in ("dlc", "random"):
        proc = run(
            "score", str(bad), "--method", method, "--image-size", "32", "--progress",
            "--out", str(tmp_path / "s.csv"),
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("dlcprune: error: ") and proc.stderr.count("\n") == 1, (
            method,
            proc.stderr,
        )
        assert "%" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--step", "0"], "step must be a number in (0, 1), got 0.0"),
        (["--masking", "l1", "--draws", "2"], "draws > 1 needs random masking"),
        (["--method", "el2n", "--epochs", "0"], "epochs must be a whole number in [1, 200]"),
    ],
)
def test_bad_parameters_fail_before_any_model_loads(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = run("score", str(tmp_path / "nowhere"), *args, "--out", str(tmp_path / "s.csv"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("dlcprune: error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_bad_usage_exits_2_with_the_usage_line(tmp_path: Path) -> None:
    proc = run("score", "data/", "--early-stopping", "--out", str(tmp_path / "s.csv"))
    assert proc.returncode == 2
    assert "No such option: --early-stopping" in proc.stderr and "Usage: dlcprune score" in (
        proc.stderr
    )


def test_serve_without_the_embedded_worker_needs_no_worker_package(tmp_path: Path) -> None:
    """As in the API image, which has no worker/ directory: any import of it fails here, so the
    service would not come up if serving imported the worker."""
    from dlcprune.devserver import clean_env, free_port, serve

    port = free_port()
    code = (
        "import sys; sys.modules['worker'] = None; from dlcprune.cli import main; "
        f"main(['serve', '--no-embedded-worker', '--port', '{port}'])"
    )
    env = clean_env(DLCPRUNE_DATA_DIR=str(tmp_path / "var"))
    command = [sys.executable, "-c", code]
    with serve(command=command, port=port, env=env, log=tmp_path / "serve.log", stop_timeout=30):
        pass  # ready: serving loaded no worker code


def test_worker_kinds_are_checked_before_the_worker_starts() -> None:
    wrong = run("worker", "--kind", "tpu")
    assert wrong.returncode == 1 and "--kind must be one of gpu, cpu, all" in wrong.stderr
    unknown = run("worker", "--work", "index,painting")
    assert unknown.returncode == 1 and "unknown kinds ['painting']" in unknown.stderr
