"""bench/quality.py --quick (what CI runs): one dataset, three ratios, one seed; the report it
writes is well-formed and complete."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_quality_report(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "quality.md"
    raw = tmp_path / "raw.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "quality.py"),
            "--quick",
            "--out",
            str(out),
            "--json",
            str(raw),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Selection quality")
    assert "## digits" in text and (tmp_path / "docs" / "img" / "quality-digits.png").exists()
    assert (tmp_path / "docs" / "img" / "quality-digits.svg").exists()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    header = table[0]
    assert header.split("|")[2:5] == [" 10% ", " 50% ", " 90% "]
    assert table[2].startswith("| Stratified random (control) |")  # the control comes first
    rows = [r for r in table if re.match(r"\| (DLC \+ FlexRand|Random|Herding)", r)]
    assert len(rows) == 3 * 7  # accuracy, paired-difference and decision-table rows
    for row in rows[:7]:
        cells = [c.strip().strip("*") for c in row.strip("|").split("|")]
        accs = [float(c.split("[")[0]) for c in cells[1:4]]
        assert all(-100.0 <= a <= 100.0 for a in accs)
    assert "relative to DLC" in text and "Spearman" in text
    assert "## What the results decide" in text
    data = json.loads(raw.read_text())
    results = data["datasets"]["digits"]["results"]
    splits = {f"DLC + FlexRand {s}" for s in ("0.3", "0.45", "0.5", "0.55", "0.7")}
    assert set(results) >= {"Stratified random (control)", "Random (global)", "Herding"} | splits
    assert all(len(v["0.1"]) == 2 for v in results.values())  # two paired seeds
    proxy = data["datasets"]["digits"]["proxy"]
    assert set(proxy) == set(results) and all(len(v["0.5"]) == 2 for v in proxy.values())


CONTROL = "Stratified random (control)"


def _set(rows: dict[str, list[float]], variants: list[str]) -> dict:
    """One dataset's raw results: every row has the same per-seed accuracies at both ratios."""
    ratios = ["0.1", "0.5"]
    return {
        "title": "t",
        "notes": "n",
        "minutes": 1.0,
        "seconds": {"dlc": 2.0, "el2n": 4.0},
        "variants": variants,
        "label_issues": {},
        "results": {m: {r: v for r in ratios} for m, v in rows.items()},
        "proxy": {m: {r: v for r in ratios} for m, v in rows.items()},
    }


def _merged(tmp_path: Path, runs: list[dict], refused: bool = False) -> str:
    """The report ``bench/quality.py --merge`` writes from these runs' raw results, or with
    ``refused`` its error when it writes none."""
    tmp_path.mkdir(exist_ok=True)
    paths = []
    for i, run in enumerate(runs):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(run))
    out = tmp_path / "quality.md"
    merge = ",".join(map(str, paths))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quality.py"), "--merge", merge, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if refused:
        assert proc.returncode != 0 and not out.exists() and "Traceback" not in proc.stderr
        return proc.stderr
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out.read_text()


def test_merge_joins_shards_and_decides_on_intervals(tmp_path: Path) -> None:
    """--merge joins shards of one dataset and separate datasets; the report gives paired
    differences with 95% t-intervals, and a default moves only where an interval excludes zero."""
    args = {
        "ratios": "0.1,0.5",
        "seeds": 3,
        "steps": 10,
        "batch": 8,
        "image_size": 32,
        "levels": 5,
        "epochs": 1,
        "train_seeds": 1,
        "quick": False,
        "device": "cpu",
    }
    ref = [0.80, 0.82, 0.84]
    # Split 0.3 is exactly 2 points above 0.5 on every seed (interval [+2, +2]: excludes zero);
    # split 0.7 is +1, -1, +3 (mean +1, sd 2, t(0.975, 2) = 4.303: [-3.97, +5.97]).
    shard_a = {CONTROL: [0.79, 0.81, 0.83], "DLC + FlexRand 0.5": ref}
    shard_b = {"DLC + FlexRand 0.3": [0.82, 0.84, 0.86], "DLC + FlexRand 0.7": [0.81, 0.81, 0.87]}
    runs = [
        {"args": args, "minutes": 1.0, "machine": "m", "datasets": {"a": _set(shard_a, [])}},
        {"args": args, "minutes": 2.0, "machine": "m", "datasets": {"a": _set(shard_b, [])}},
    ]
    text = _merged(tmp_path, runs)
    assert text.count("\n## t\n") == 1 and "(3 minutes)" in text
    assert "| Stratified random (control) | 81.0 [76.0, 86.0] | 81.0 [76.0, 86.0] |" in text
    assert "| DLC + FlexRand 0.3 | **+3.0 [+3.0, +3.0]** |" in text  # vs the control, per ratio
    assert "| FlexRand split 0.3 − split 0.5 | all | **+2.0 [+2.0, +2.0]** |" in text
    assert "| FlexRand split 0.7 − split 0.5 | all | +1.0 [-4.0, +6.0] |" in text
    assert "in favour of a non-reference setting: split 0.3." in text
    assert "Spearman 1.00" in text
    assert (tmp_path / "img" / "quality-a.png").exists()


def test_merge_adds_the_ratios_of_another_run(tmp_path: Path) -> None:
    """A run of other keep ratios over the same rows adds columns: nothing of the first run's
    ratios is lost, and the report's columns are the sorted union."""
    base = {"seeds": 3, "steps": 10, "batch": 8, "image_size": 32, "levels": 5, "epochs": 1}
    base |= {"train_seeds": 1, "quick": False, "device": "cpu"}
    rows = {CONTROL: [0.79, 0.81, 0.83], "DLC + FlexRand 0.5": [0.80, 0.82, 0.84]}
    first = _set(rows, [])
    later = _set({m: [v + 0.1 for v in vs] for m, vs in rows.items()}, [])
    for key in ("results", "proxy"):
        later[key] = {m: {"0.3": rs["0.1"]} for m, rs in later[key].items()}
    runs = [
        {"args": base | {"ratios": "0.1,0.5"}, "minutes": 1.0, "machine": "m"},
        {"args": base | {"ratios": "0.3"}, "minutes": 1.0, "machine": "m"},
    ]
    runs[0]["datasets"], runs[1]["datasets"] = {"a": first}, {"a": later}
    text = _merged(tmp_path, runs)
    assert "| method | 10% | 30% | 50% | average |" in text
    assert "| Stratified random (control) | 81.0 [76.0, 86.0] | 91.0 [86.0, 96.0] | 81.0" in text
    assert "(2 minutes)" in text  # runs of other ratios add up
    # The probe agrees with itself over all cells and over the headline rows' (both here).
    assert "| t | 1.00 | 1.00 (6 cells) | — | — |" in text
    # A row another run adds without the first run's ratios: refused, naming it.
    extra = _set({"EL2N": [0.5, 0.6, 0.7]}, [])
    for key in ("results", "proxy"):
        extra[key] = {m: {"0.3": rs["0.1"]} for m, rs in extra[key].items()}
    uneven = [*runs, {**runs[1], "datasets": {"a": extra}}]
    err = _merged(tmp_path / "uneven", uneven, refused=True)
    assert "'EL2N' has no results at keep 0.1, 0.5" in err
    # The same cell given differently by two runs: refused.
    clash = _set({CONTROL: [0.1, 0.2, 0.3]}, [])
    err = _merged(tmp_path / "clash", [runs[0], {**runs[0], "datasets": {"a": clash}}], True)
    assert "other results for a, 'Stratified random (control)' at keep 0.1" in err


def test_stats_intervals_and_detection() -> None:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from bench.quality_stats import auroc, interval, paired, self_confidence, spearman

    mean, lo, hi = interval([1.0, 2.0, 3.0])  # sd 1, t(0.975, 2) = 4.303, half 2.484
    assert mean == 2.0 and abs(lo - (2.0 - 2.4843)) < 1e-3 and abs(hi - (2.0 + 2.4843)) < 1e-3
    assert np.isnan(interval([1.0])[1])
    assert paired([3.0, 4.0], [1.0, 2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError):
        paired([1.0], [1.0, 2.0])
    assert spearman([1, 2, 3], [10, 30, 20]) == pytest.approx(0.5)
    assert auroc(np.array([0.1, 0.2, 0.9]), np.array([False, False, True])) == 1.0
    # Two separable blobs with 10 of 100 labels flipped: the flipped ones get the lowest
    # self-confidence of their given label.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    x = rng.normal(size=(100, 5)) + 4.0 * y[:, None]
    noisy = y.copy()
    noisy[::10] = 1 - noisy[::10]
    conf = self_confidence(x, noisy, folds=5, seed=0)
    assert conf.shape == (100,) and ((conf >= 0) & (conf <= 1)).all()
    assert auroc(1 - conf, noisy != y) > 0.95
    assert np.array_equal(conf, self_confidence(x, noisy, folds=5, seed=0))  # deterministic
