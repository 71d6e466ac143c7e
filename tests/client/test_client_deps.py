"""The Python client installs and works with httpx and tenacity alone.

- The installed project's metadata asks for httpx and tenacity (its retries; pure Python, no
  dependencies of its own) and nothing else outside an extra: that is what ``pip install
  dlcprune`` installs.
- In a fresh isolated interpreter (``python -I``) whose imports outside the standard library are
  refused except for httpx, its own dependencies, tenacity and ``dlcprune``,
  ``import dlcprune.client`` works, a ``Client`` is built, and none of the service's or the
  engine's packages got loaded.
- The same interpreter talks to a running service (the embedded ``dlcprune serve``): the client
  works on httpx and tenacity alone, it does not just import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import requires

import pytest
from packaging.requirements import Requirement

from tests.client.conftest import Embedded

# httpx and what it imports (anyio and sniffio for its async side), and the project itself.
ALLOWED = (
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "sniffio",
    "idna",
    "certifi",
    "tenacity",
    "dlcprune",
)
NEVER_LOADED = ("numpy", "fastapi", "starlette", "sqlalchemy", "celery", "torch", "pydantic")

# Run with ``python -I -c``; argv[1] is a JSON object: the allowed top-level names and, when
# given, the service's url and key. Prints one JSON object on its last line.
ISOLATED = """
import importlib.abc, json, sys

config = json.loads(sys.argv[1])
allowed = set(sys.stdlib_module_names) | set(config["allowed"])
refused = []


class Refuse(importlib.abc.MetaPathFinder):
    # Imports outside the allowed set fail as if the package were not installed (httpx's optional
    # imports, e.g. its command line's click and rich, then take their fallback).
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in allowed:
            refused.append(name)
            raise ModuleNotFoundError(f"refused: {name}", name=name)
        return None


sys.meta_path.insert(0, Refuse())

import dlcprune.client
from dlcprune.client import Client, DlcpruneError

out = {"refused": sorted(set(refused))}
with Client(config.get("url") or "http://127.0.0.1:9", api_key=config.get("key")) as client:
    out["repr"] = repr(client)
    if config.get("url"):
        out["ready"] = client.ready()["status"]
        out["datasets"] = [d.id for d in client.datasets()]
        try:
            client.dataset("00000000-0000-4000-8000-000000000000")
        except DlcpruneError as err:
            out["missing"] = [err.status, err.code]
out["loaded"] = sorted({m.partition(".")[0] for m in sys.modules})
out["project"] = sorted(m for m in sys.modules if m.partition(".")[0] == "dlcprune")
print(json.dumps(out))
"""


def _run_isolated(url: str | None = None, key: str | None = None) -> dict:
    config = {"allowed": list(ALLOWED), "url": url, "key": key}
    done = subprocess.run(
        [sys.executable, "-I", "-c", ISOLATED, json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_installed_project_requires_httpx_and_tenacity_alone() -> None:
    declared = [Requirement(r) for r in requires("dlcprune") or []]
    base = [r for r in declared if r.marker is None or "extra" not in str(r.marker)]
    assert [r.name for r in base] == ["httpx", "tenacity"], [str(r) for r in base]
    assert not any(r.extras for r in base), [str(r) for r in base]
    webhooks = [r.name for r in declared if r.marker and "webhooks" in str(r.marker)]
    assert webhooks == ["standardwebhooks"]


def test_the_client_imports_with_httpx_tenacity_and_the_standard_library_alone() -> None:
    out = _run_isolated()
    assert out["repr"] == "Client('http://127.0.0.1:9')"
    loaded = set(out["loaded"])
    assert not loaded & set(NEVER_LOADED), loaded & set(NEVER_LOADED)
    assert {"httpx", "dlcprune"} <= loaded
    # Of the project, the client package and the shared vocabulary only.
    others = [m for m in out["project"] if m not in ("dlcprune", "dlcprune.names")]
    assert all(m.startswith("dlcprune.client") for m in others), out["project"]


@pytest.mark.slow
def test_the_isolated_client_talks_to_a_running_service(embedded: Embedded) -> None:
    out = _run_isolated(embedded.url, embedded.key)
    assert out["ready"] == "ready"
    assert isinstance(out["datasets"], list)
    assert out["missing"] == [404, "not_found"]
    assert not set(out["loaded"]) & set(NEVER_LOADED)
