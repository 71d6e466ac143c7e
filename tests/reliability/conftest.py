"""Fault-test rig: private Redis and PostgreSQL servers the tests may kill, and helpers to run the
API and workers as real processes against them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dlcprune.devserver import Process, Service, free_port
from tests.conftest import DLCPRUNE

PG_BIN = Path(f"/usr/lib/postgresql/{sorted(os.listdir('/etc/postgresql'))[-1]}/bin")


def _as_postgres(args: list[str], **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """initdb and pg_ctl refuse to run as root: run them as the postgres user when we are."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


class PrivateRedis:
    """A redis-server of our own on a free port (keeps nothing on disk)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError("redis did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb in a temporary directory, a free port)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dlc-pg-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.data = self.dir / "data"
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.data, "postgres", "postgres")
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.dir / "log"),
                "-w",
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                "start",
            ]
        )

    def stop(self) -> None:
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.url.replace("+psycopg", ""), connect_timeout=1):
                return True
        except psycopg.Error:
            return False

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis()
    redis.start()
    yield redis
    redis.kill()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    pg.start()
    yield pg
    pg.remove()


class Stack:
    """``dlcprune serve`` and ``dlcprune worker`` processes sharing one environment."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api: Service | None = None
        self.workers: list[Process] = []

    def start_api(self) -> None:
        """The API, once it is alive (``/healthz``: the tests then watch readiness themselves)."""
        self.api = Service(
            ["--no-embedded-worker"],
            port=self.port,
            ready_path="/healthz",
            env=self.env,
            log=self.logs / "api.log",
        )
        self.api.wait_ready(timeout=60)

    def start_worker(self, extra_env: dict[str, str] | None = None) -> Process:
        env = {**self.env, **(extra_env or {})}
        log = self.logs / f"worker{len(self.workers)}.log"
        proc = Process([DLCPRUNE, "worker"], env=env, log=log)
        self.workers.append(proc)
        return proc

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))

    def close(self) -> None:
        for w in self.workers:
            w.stop(timeout=20)
        if self.api is not None:
            self.api.stop()
