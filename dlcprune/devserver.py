"""Start a local dlcprune service, wait until it is ready, stop it afterwards.

The one way tests, benchmarks and the doc generators run the service as a real process::

    from dlcprune.devserver import clean_env, serve

    with serve(env=clean_env(DLCPRUNE_DATA_DIR="/tmp/var")) as service:
        httpx.get(f"{service.url}/v1/datasets")

``serve`` starts ``dlcprune serve --port <free port>`` (or the command given), polls ``/readyz``
until it answers 200 within a deadline, and stops the process when the block ends (SIGTERM, then
SIGKILL). The child's output goes to a log file (a temporary one unless ``log`` is given); when
the service exits early or is not ready in time, ``ServiceFailed`` carries the end of that output.
``Process`` is the same for any other child (a Celery worker: ``wait_for_output("ready.")``).

Standard library and httpx only, like the client: it imports nothing else of the project.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = [
    "Process",
    "Service",
    "ServiceFailed",
    "clean_env",
    "dlcprune_command",
    "free_port",
    "serve",
]

_POLL_S = 0.2  # between two readiness checks
_TAIL = 4000  # characters of the child's output shown when it fails


class ServiceFailed(RuntimeError):
    """The child exited before it was ready, or was not ready in time; the message ends with the
    last lines it wrote."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` at the time of the call."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def dlcprune_command() -> list[str]:
    """How to run this installation's ``dlcprune`` command: the script beside the running
    interpreter (a virtual environment's), else the one on PATH, else through the interpreter."""
    beside = Path(sys.executable).parent / "dlcprune"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dlcprune")
    if found:
        return [found]
    return [sys.executable, "-c", "from dlcprune.cli import main; main()"]


def clean_env(base: Mapping[str, str] | None = None, **overrides: str) -> dict[str, str]:
    """``base`` (default: this process's environment) without any ``DLCPRUNE_*`` variable, plus
    ``overrides``: a child that starts on the defaults, whatever the caller's shell has set."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith("DLCPRUNE_")}
    env.update(overrides)
    return env


class Process:
    """A child process whose output (stdout and stderr) is appended to ``log``; a context manager
    that stops it on exit. ``env`` is the child's whole environment (default: this process's)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        new_session: bool = False,
    ) -> None:
        self.command = [str(c) for c in command]
        self._own_log = log is None
        if log is None:
            fd, name = tempfile.mkstemp(prefix="dlcprune-", suffix=".log")
            os.close(fd)
            log = name
        self.log = Path(log)
        with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.command,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                # A session of its own: a signal to the caller's terminal group does not reach it.
                start_new_session=new_session,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def poll(self) -> int | None:
        """The exit status, or None while it runs (as ``subprocess.Popen.poll``)."""
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit (as ``subprocess.Popen.wait``)."""
        return self.proc.wait(timeout)

    def output(self, limit: int | None = _TAIL) -> str:
        """What the child wrote so far (its last ``limit`` characters; None: all)."""
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text if limit is None else text[-limit:]

    def _failed(self, why: str) -> ServiceFailed:
        return ServiceFailed(f"{' '.join(self.command)}: {why}; its output ends:\n{self.output()}")

    def wait_for_output(self, text: str, timeout: float = 90.0) -> None:
        """Wait until the child's output contains ``text``; ``ServiceFailed`` if it exits first
        or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while text not in self.output(limit=None):
            if not self.alive:
                raise self._failed(f"exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise self._failed(f"did not print {text!r} in {timeout:g} s")
            time.sleep(_POLL_S)

    def kill(self) -> None:
        """SIGKILL at once (no cleanup code runs in the child), and reap it."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status."""
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._own_log:
            self.log.unlink(missing_ok=True)


class Service(Process):
    """An HTTP service on ``host:port``: by default ``dlcprune serve --port PORT *args`` on a
    free port. With ``command`` given, that command is run as is (it must listen on ``port``)."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        command: Sequence[str] | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        ready_path: str = "/readyz",
        env: Mapping[str, str] | None = None,
        log: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        new_session: bool = False,
    ) -> None:
        self.port = port if port is not None else free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.ready_path = ready_path
        if command is None:
            command = [*dlcprune_command(), "serve", "--port", str(self.port), *args]
        super().__init__(command, env=env, log=log, cwd=cwd, new_session=new_session)

    def is_ready(self, path: str | None = None) -> bool:
        """One check: does ``path`` (default ``ready_path``) answer 200 now?"""
        try:
            resp = httpx.get(f"{self.url}{path or self.ready_path}", timeout=2.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    def wait_ready(self, timeout: float = 60.0, path: str | None = None) -> None:
        """Poll until the service is ready; ``ServiceFailed`` (with its output) if it exits first
        or is not ready within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.is_ready(path):
            if not self.alive:
                raise self._failed(f"exited with {self.proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise self._failed(f"{self.url} not ready in {timeout:g} s")
            time.sleep(_POLL_S)

    def __enter__(self) -> Service:
        return self


@contextmanager
def serve(
    args: Sequence[str] = (),
    *,
    command: Sequence[str] | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    log: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    ready_path: str = "/readyz",
    timeout: float = 60.0,
    new_session: bool = False,
    stop_timeout: float = 15.0,
) -> Iterator[Service]:
    """Start a ``Service`` (see there for the arguments), wait until it is ready, yield it, and
    stop it when the block ends, however it ends."""
    service = Service(
        args,
        command=command,
        port=port,
        ready_path=ready_path,
        env=env,
        log=log,
        cwd=cwd,
        new_session=new_session,
    )
    try:
        service.wait_ready(timeout)
        yield service
    finally:
        service.stop(stop_timeout)
        if service._own_log:
            service.log.unlink(missing_ok=True)
