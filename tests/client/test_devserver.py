"""``dlcprune.devserver``: the one "start the service and wait until it is ready" helper.

A failing start says why (the child's own output), a service not ready in time is stopped, and
the block's end stops the process whatever happens inside it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from dlcprune.devserver import Process, ServiceFailed, clean_env, free_port, serve

# A stand-in service: answers 200 on /readyz once it has printed "listening".
READY_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()
    def log_message(self, *a):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("listening", flush=True)
server.serve_forever()
"""


def test_a_service_that_exits_early_fails_with_its_output(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "print('no database here'); raise SystemExit(3)"]
    with (
        pytest.raises(ServiceFailed, match=r"(?s)exited with 3.*no database here"),
        serve(command=crash, port=free_port(), log=tmp_path / "crash.log"),
    ):
        pytest.fail("a service that exited is not yielded")


def test_a_service_never_ready_is_stopped_after_the_deadline(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = (
        "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); "
        "print('warming up', flush=True); time.sleep(60)"
    )
    silent = [sys.executable, "-c", code, str(pid_file)]
    with (
        pytest.raises(ServiceFailed, match=r"(?s)not ready in 1 s.*warming up"),
        serve(command=silent, port=free_port(), timeout=1.0),
    ):
        pytest.fail("not ready, not yielded")
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(int(pid_file.read_text()), 0)


def test_the_block_end_stops_a_ready_service() -> None:
    port = free_port()
    command = [sys.executable, "-c", READY_SERVER, str(port)]
    with pytest.raises(RuntimeError, match="inside"), serve(command=command, port=port) as svc:
        assert svc.url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{svc.url}/readyz").status_code == 200
        assert "listening" in svc.output()
        raise RuntimeError("inside")
    assert svc.returncode is not None  # stopped although the block raised


def test_a_process_waits_for_a_line_of_its_output() -> None:
    code = "import time; time.sleep(0.3); print('ready.', flush=True); time.sleep(60)"
    with Process([sys.executable, "-c", code]) as proc:
        proc.wait_for_output("ready.", timeout=30)
        assert proc.alive
    assert not proc.alive and not proc.log.exists()  # its temporary log is gone too


def test_clean_env_drops_the_callers_dlcprune_settings() -> None:
    env = clean_env({"DLCPRUNE_DATABASE_URL": "x", "PATH": "/bin"}, DLCPRUNE_DATA_DIR="/d")
    assert env == {"PATH": "/bin", "DLCPRUNE_DATA_DIR": "/d"}
