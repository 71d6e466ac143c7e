"""``docker-compose.yml``, checked without a Docker engine: the right images and commands, one
configuration shared by the API and the worker, healthchecks, volumes, no literal secrets. Where
``docker compose`` is installed, ``docker compose config`` validates the file for real.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import PurePosixPath

import pytest

from tests.deploy.parsing import (
    APP_SERVICES,
    COMPOSE_FILE,
    LONG_RUNNING,
    REQUIRED_APP_ENV,
    ROOT,
    SERVE_CMD,
    SERVICE_SPECIFIC,
    WORKER_CMD,
    WORKER_SERVICES,
    compose,
    environment,
    interpolate,
    interpolations,
    is_named_volume,
    service,
    volume_mounts,
    walk_strings,
)

# --------------------------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------------------------


def test_compose_specification_without_version() -> None:
    assert "version" not in compose(), "the Compose Specification has no top-level version"
    assert set(compose()["services"]) >= {"postgres", "redis", "api", *WORKER_SERVICES, "keys"}


@pytest.mark.parametrize(("name", "major"), [("postgres", "16"), ("redis", "7")])
def test_backing_services_use_pinned_official_images(name: str, major: str) -> None:
    image = service(name)["image"]
    repo, _, tag = image.partition(":")
    assert repo == name
    assert tag and tag != "latest", f"{name}: pin the image tag ({image!r})"
    assert tag.split(".")[0].split("-")[0] == major, f"{name}: expected {name}:{major}.x"
    assert "build" not in service(name)


@pytest.mark.parametrize(
    ("name", "dockerfile"),
    [
        ("api", "docker/api.Dockerfile"),
        ("gpu-worker", "docker/worker.Dockerfile"),
        ("cpu-worker", "docker/worker.Dockerfile"),
        ("keys", "docker/api.Dockerfile"),
    ],
)
def test_app_services_build_their_dockerfiles(name: str, dockerfile: str) -> None:
    build = service(name)["build"]
    assert isinstance(build, dict), f"{name}: build needs context and dockerfile"
    context = ROOT / build.get("context", ".")
    assert context.resolve() == ROOT, f"{name}: build from the repository root"
    assert build["dockerfile"] == dockerfile
    assert (context / build["dockerfile"]).is_file()
    assert "image" not in service(name) or ":latest" not in service(name)["image"]


def test_every_build_dockerfile_exists() -> None:
    for name, svc in compose()["services"].items():
        if "build" in svc:
            build = svc["build"]
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert (context / (dockerfile or "Dockerfile")).is_file(), name


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_configuration_is_dlcprune_variables_only(name: str) -> None:
    env = environment(name)
    stray = sorted(key for key in env if not key.startswith("DLCPRUNE_"))
    assert not stray, f"{name}: the app is configured by DLCPRUNE_* variables only: {stray}"
    missing = [key for key in REQUIRED_APP_ENV if key not in env]
    assert not missing, f"{name}: missing {missing}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_configuration_values(name: str) -> None:
    env = environment(name)
    assert env["DLCPRUNE_AUTH_ENABLED"] == "true", "auth is on in the compose stack"
    database = env["DLCPRUNE_DATABASE_URL"]
    assert database.startswith("postgresql+psycopg://dlcprune:")
    assert database.endswith("@postgres:5432/dlcprune")
    assert env["DLCPRUNE_BROKER_URL"].startswith("redis://redis:6379/")
    assert env["DLCPRUNE_DATA_DIR"] == "/data"
    assert interpolate(env["DLCPRUNE_BLOB_URL"]).startswith("/data/")
    for root in env["DLCPRUNE_FILE_ROOTS"].split(","):
        assert root.startswith("/"), "file roots are absolute paths"
    if name == "api":
        assert env["DLCPRUNE_HOST"] == "0.0.0.0"
    if name in WORKER_SERVICES:
        assert interpolate(env["DLCPRUNE_DEVICE"]) in ("auto", "cpu", "cuda")
    if name == "cpu-worker":
        assert env["DLCPRUNE_DEVICE"] == "cpu"


@pytest.mark.parametrize("name", [*WORKER_SERVICES, "keys"])
def test_processes_share_one_configuration(name: str) -> None:
    def common(svc: str) -> dict[str, str]:
        env = environment(svc)
        return {k: v for k, v in env.items() if k not in SERVICE_SPECIFIC[svc]}

    assert common(name) == common("api")


@pytest.mark.parametrize("name", WORKER_SERVICES)
def test_api_and_worker_share_the_blob_volume(name: str) -> None:
    api, worker = set(volume_mounts("api")), set(volume_mounts(name))
    shared = [m for m in api & worker if is_named_volume(m[0]) and m[2] == "rw"]
    assert shared, "api and worker must mount one named volume read-write"
    declared = compose().get("volumes") or {}
    for source, _, _ in shared:
        assert source in declared, f"volume {source!r} is not declared"
    env = environment("api")
    blob_dir = interpolate(env["DLCPRUNE_BLOB_URL"])
    targets = [PurePosixPath(target) for _, target, _ in shared]
    for path in (blob_dir, env["DLCPRUNE_DATA_DIR"]):
        assert any(PurePosixPath(path).is_relative_to(t) for t in targets), path
    assert ("blobs", "/data", "rw") in shared


def test_datasets_are_mounted_read_only_where_file_roots_point() -> None:
    for name in ("api", *WORKER_SERVICES):
        mounts = {target: (source, mode) for source, target, mode in volume_mounts(name)}
        for root in environment(name)["DLCPRUNE_FILE_ROOTS"].split(","):
            assert root in mounts, f"{name}: DLCPRUNE_FILE_ROOTS {root} is not mounted"
            source, mode = mounts[root]
            assert "ro" in mode.split(","), f"{name}: {root} must be read-only"
            assert interpolate(source) == "./datasets"
            assert interpolations(source)[0][:2] == ("DATASETS_DIR", ":-")


@pytest.mark.parametrize(
    ("name", "needs"),
    [
        ("api", {"postgres", "redis"}),
        ("gpu-worker", {"api", "postgres", "redis"}),
        ("cpu-worker", {"api", "postgres", "redis"}),
        ("keys", {"api"}),
    ],
)
def test_depends_on_waits_for_healthy_services(name: str, needs: set[str]) -> None:
    depends = service(name)["depends_on"]
    assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
    assert set(depends) >= needs
    for dependency, spec in depends.items():
        assert spec["condition"] == "service_healthy", f"{name} -> {dependency}"
        assert "healthcheck" in service(dependency), f"{dependency} has no healthcheck"


def healthcheck_command(name: str) -> str:
    check = service(name)["healthcheck"]
    assert not check.get("disable"), name
    test = check["test"]
    if isinstance(test, str):
        return test
    assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test starts with CMD"
    return " ".join(test[1:])


def test_healthchecks() -> None:
    assert "pg_isready" in healthcheck_command("postgres")
    assert "-U dlcprune" in healthcheck_command("postgres")
    assert "redis-cli ping" in healthcheck_command("redis")
    api = healthcheck_command("api")
    assert "urllib.request" in api and "127.0.0.1:8000/healthz" in api
    for name in ("postgres", "redis", "api"):
        check = service(name)["healthcheck"]
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_restart_policies_and_the_keys_tool() -> None:
    for name in LONG_RUNNING:
        assert service(name).get("restart") == "unless-stopped", name
        assert "profiles" not in service(name), f"{name} must start with a plain 'up'"
    keys = service("keys")
    assert keys["profiles"] == ["tools"]
    assert keys.get("restart", "no") == "no"
    command = keys["command"]
    assert command[:4] == ["dlcprune", "keys", "create", "--tenant"] and len(command) == 5
    assert interpolate(command[4]) == "default"
    assert interpolate(command[4], {"TENANT": "acme"}) == "acme"


def test_api_service() -> None:
    api = service("api")
    assert "8000:8000" in [str(p) for p in api["ports"]]
    assert api.get("command", SERVE_CMD) == SERVE_CMD


def test_redis_persists_the_queue() -> None:
    redis = service("redis")
    command = redis["command"]
    words = command if isinstance(command, list) else shlex.split(command)
    assert words[0] == "redis-server"
    assert words[words.index("--appendonly") + 1] == "yes", "the broker must not lose jobs"
    assert '--save ""' not in " ".join(words)
    assert any(t == "/data" and is_named_volume(s) for s, t, _ in volume_mounts("redis"))
    assert any(
        t == "/var/lib/postgresql/data" and is_named_volume(s)
        for s, t, _ in volume_mounts("postgres")
    )


@pytest.mark.parametrize(("name", "kind"), WORKER_SERVICES.items())
def test_worker_kinds_commands_and_replicas(name: str, kind: str) -> None:
    worker = service(name)
    assert worker["command"] == [*WORKER_CMD, "--kind", kind]
    assert "ports" not in worker
    assert "container_name" not in worker, "replicas cannot share a container name"
    assert worker["stop_grace_period"] == "2m", "a warm shutdown finishes the current task"
    deploy = worker["deploy"]
    replicas = str(deploy["replicas"])
    variable = f"{kind.upper()}_WORKERS"
    assert interpolations(replicas)[0][:2] == (variable, ":-")
    assert interpolate(replicas) == "1"
    assert interpolate(replicas, {variable: "3"}) == "3"
    devices = deploy.get("resources", {}).get("reservations", {}).get("devices")
    if kind == "gpu":
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    else:
        assert devices is None, "CPU workers reserve no GPU"


def test_interpolations_are_valid() -> None:
    names = set()
    for where, text in walk_strings(compose()):
        try:
            found = interpolations(text)
        except ValueError as exc:
            pytest.fail(f"{where}: {exc}")
        for name, op, arg in found:
            names.add(name)
            if op and op.endswith("?"):
                assert arg and arg.strip(), f"{where}: give ${{{name}:?...}} a message"
    assert {"POSTGRES_PASSWORD", "GPU_WORKERS", "CPU_WORKERS", "DATASETS_DIR", "TENANT"} <= names


def test_no_literal_secrets() -> None:
    password = service("postgres")["environment"]["POSTGRES_PASSWORD"]
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", password), password
    with pytest.raises(KeyError):
        interpolate(password)  # required: no default to fall back on

    for name in APP_SERVICES:
        url = environment(name)["DLCPRUNE_DATABASE_URL"]
        userinfo = url.split("://", 1)[1].rsplit("@", 1)[0]
        secret = userinfo.split(":", 1)[1]
        assert secret == password, f"{name}: the database password comes from POSTGRES_PASSWORD"

    secretish = re.compile(r"PASSWORD|SECRET|TOKEN|API_?KEY|ACCESS_KEY", re.I)
    for name, svc in compose()["services"].items():
        env = svc.get("environment") or {}
        items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
        for key, value in items:
            if secretish.search(str(key)):
                value = str(value)
                assert value.startswith("${") and value.endswith("}"), f"{name}.{key}"
                assert all(op in (":?", "?") for _, op, _ in interpolations(value)), (
                    f"{name}.{key}: a secret must be a required variable, not a default"
                )
        for _, text in walk_strings(svc):
            for match in re.finditer(r"://[^/\s:@]+:([^@\s]+)@", text):
                assert match.group(1).startswith("${"), f"{name}: literal password in a URL"


def test_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes") or {})
    assert declared >= {"pgdata", "redisdata", "blobs"}
    used = {
        source
        for name in compose()["services"]
        for source, _, _ in volume_mounts(name)
        if is_named_volume(source)
    }
    assert used <= declared, f"undeclared volumes: {used - declared}"
    assert declared <= used, f"unused volumes: {declared - used}"


# --------------------------------------------------------------------------------------------
# The real thing, where Docker Compose is installed
# --------------------------------------------------------------------------------------------


def _docker_compose_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        proc = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@pytest.mark.skipif(not _docker_compose_available(), reason="docker compose is not installed")
def test_docker_compose_config() -> None:
    env = {**os.environ, "POSTGRES_PASSWORD": "test-only-not-a-secret"}
    proc = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "--profile", "tools", "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
