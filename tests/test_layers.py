"""The layers hold: import-linter's contracts, what each process loads, and file sizes.

docs/architecture.md maps the layers; the contracts are in pyproject.toml
(``[tool.importlinter]``).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_LINES = 600


def test_import_contracts_are_kept() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    out = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in out, out
    for contract in contracts:
        assert f"{' '.join(contract['name'].split())} KEPT" in out, contract["name"]


def _loaded_after(statement: str) -> set[str]:
    tops = "{m.split('.')[0] for m in sys.modules}"
    code = f"import sys\n{statement}\nprint(' '.join(sorted({tops})))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_the_api_process_never_loads_torch() -> None:
    loaded = _loaded_after("from app.main import app\napp.openapi()")
    assert not loaded & {"torch", "torchvision", "timm", "transformers", "worker"}, loaded


def test_the_core_loads_no_service_engine_or_web_framework() -> None:
    loaded = _loaded_after(
        "import dlcprune.core.formats, dlcprune.core.params, dlcprune.core.selection, "
        "dlcprune.core.errors, dlcprune.core.cache, dlcprune.core.archives"
    )
    forbidden = {"torch", "fastapi", "starlette", "sqlalchemy", "celery", "app", "worker", "httpx"}
    assert not loaded & forbidden, loaded & forbidden


def test_the_cli_help_loads_no_torch() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from dlcprune.cli import main; sys.argv=['dlcprune', '--help']; "
            "import contextlib\nwith contextlib.suppress(SystemExit): main()\n"
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH')",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.strip().endswith("NOTORCH"), done.stdout + done.stderr


def _sources() -> list[Path]:
    """The Python sources, and the dashboard's scripts (plain modules the page loads)."""
    tops = ("app", "worker", "dlcprune", "tests", "bench", "docs", "migrations")
    python = [p for top in tops for p in (ROOT / top).rglob("*.py")]
    return sorted([*python, *(ROOT / "app" / "dashboard" / "static").glob("*.js")])


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_source_file_is_over_600_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it by concern"


def test_the_package_loads_the_client_only_when_asked() -> None:
    loaded = _loaded_after("import dlcprune, dlcprune.core.params")
    assert "httpx" not in loaded, "importing the core must not load the client"
    loaded = _loaded_after("from dlcprune import Client, Selection, DlcpruneError")
    assert "httpx" in loaded
