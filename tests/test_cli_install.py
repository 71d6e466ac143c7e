"""`pip install .` is the client alone: the `dlcprune` command then says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TYPER = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("typer", "click"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Refuse())
from dlcprune.cli import main
main(["remote", "list", "--json"])
"""


def test_without_the_server_extra_the_command_names_what_to_install() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TYPER], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("dlcprune: error: the command line needs the server extra")
    assert 'pip install ".[server]"' in done.stderr
