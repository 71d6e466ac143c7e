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
