"""The load test, shortened for the suite: 50 clients on loopback for 20 s while a job scores;
no error, no lost or duplicated selection (``make load`` runs the full 2 minutes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fifty_clients_for_twenty_seconds() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--clients", "50", "--seconds", "20"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "0 errors" in proc.stdout and "lost 0, duplicated 0" in proc.stdout
