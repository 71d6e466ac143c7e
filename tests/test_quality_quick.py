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
    table = [line for line in text.splitlines() if line.startswith("| ")]
    header = table[0]
    assert header.split("|")[2:5] == [" 10% ", " 50% ", " 90% "]
    rows = [r for r in table if re.match(r"\| (DLC|Random|EL2N|Herding)", r)]
    assert len(rows) >= 4
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        accs = [float(c.split("±")[0]) for c in cells[1:4]]
        assert all(0.0 <= a <= 100.0 for a in accs)
    assert "over random" in text and "relative to DLC" in text
    data = json.loads(raw.read_text())
    results = data["datasets"]["digits"]["results"]
    assert set(results) >= {"DLC + FlexRand", "Random", "EL2N", "Forgetting", "Moderate-DS"}
    assert all(len(v["0.1"]) == 1 for v in results.values())  # one seed


def _run(seconds: float, acc: dict[str, float], defaults: dict[str, float]) -> dict:
    ratios = ["0.1", "0.5"]
    return {
        "title": "t",
        "notes": "n",
        "minutes": 1.0,
        "seconds": {"dlc": seconds, "el2n": 2 * seconds},
        "results": {m: {r: [a, a] for r in ratios} for m, a in acc.items()},
        "defaults": {m: {r: [a] for r in ratios} for m, a in defaults.items()},
    }


def test_merge_writes_one_report_and_its_decisions(tmp_path: Path) -> None:
    """--merge joins per-dataset runs, and the defaults section averages each variant over the
    datasets that studied it (here the linear variant wins on average, not on the first set)."""
    args = {
        "ratios": "0.1,0.5",
        "seeds": 2,
        "steps": 10,
        "batch": 8,
        "image_size": 32,
        "levels": 5,
        "epochs": 1,
        "train_seeds": 1,
        "quick": False,
    }
    accs = {"DLC + FlexRand": 0.8, "Random": 0.7, "EL2N": 0.6}
    runs = [
        {
            "args": args,
            "minutes": 1.0,
            "datasets": {
                "a": _run(
                    1.0,
                    accs,
                    {
                        "geometric": 0.80,
                        "linear": 0.79,
                        "FlexRand split 0.3": 0.5,
                        "FlexRand split 0.5": 0.6,
                    },
                )
            },
        },
        {
            "args": args,
            "minutes": 2.0,
            "datasets": {
                "b": _run(
                    1.0,
                    accs,
                    {
                        "geometric": 0.60,
                        "linear": 0.70,
                        "FlexRand split 0.3": 0.5,
                        "FlexRand split 0.5": 0.3,
                    },
                )
            },
        },
    ]
    paths = []
    for i, run in enumerate(runs):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(run))
    out = tmp_path / "quality.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "quality.py"),
            "--merge",
            ",".join(map(str, paths)),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.count("\n## t\n") == 2 and "(3 minutes)" in text
    assert "| linear | 79.00 | 70.00 | **74.50** |" in text
    assert "| geometric | 80.00 | 60.00 | **70.00** |" in text
    assert "Best variant on average: **linear**" in text
    assert "Best split share on average: **0.3**" in text
    assert "| el2n | 2.0 | 2.00x |" in text
    assert "80.00 against random's 70.00 (+10.00 points)" in text
    # Per dataset: the chosen path against random, and the training-based scores' cost.
    assert "the chosen path averages 79.00 against random's 70.00 (+9.00 points)" in text
    assert "training-based scores in 2.0 s (2.0x DLC's time" in text
