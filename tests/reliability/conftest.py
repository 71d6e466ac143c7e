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

import httpx
import psycopg
import pytest

from tests.service.conftest import (  # noqa: F401 - fixtures re-exported for these tests
    DLCPRUNE,
    app_client,
    free_port,
    key_a,
    key_b,
    make_key,
    pg_url,
    service_env,
    stop,
    wait_ready,
)

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
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def _start(self, args: list[str], name: str) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "ab") as out:
            return subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def start_api(self) -> None:
        self.api = self._start(
            [DLCPRUNE, "serve", "--port", str(self.port), "--no-embedded-worker"], "api"
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise TimeoutError("API did not start")

    def start_worker(self, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        env = {**self.env, **(extra_env or {})}
        with open(self.logs / f"worker{len(self.workers)}.log", "ab") as out:
            proc = subprocess.Popen(
                [DLCPRUNE, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.workers.append(proc)
        return proc

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))

    def close(self) -> None:
        for w in self.workers:
            stop(w, timeout=20)
        if self.api is not None:
            stop(self.api)
