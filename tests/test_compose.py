"""The production container files, checked without a Docker engine.

``docker-compose.yml`` is parsed with PyYAML, the Dockerfiles with a small line parser, and both are
held to what the service needs: the right images and commands, one configuration shared by the API
and the worker, pinned bases, a non-root user, no torch in the API image, no literal secrets.
Where ``docker compose`` is installed, ``docker compose config`` validates the file for real.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
API_DOCKERFILE = ROOT / "docker" / "api.Dockerfile"
WORKER_DOCKERFILE = ROOT / "docker" / "worker.Dockerfile"
DOCKERFILES = {"api": API_DOCKERFILE, "worker": WORKER_DOCKERFILE}

SERVE_CMD = ["dlcprune", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-embedded-worker"]
WORKER_CMD = ["dlcprune", "worker"]
TORCH_PINS = {"torch": "2.14.1", "torchvision": "0.29.1"}

APP_SERVICES = ("api", "worker", "keys")
LONG_RUNNING = ("postgres", "redis", "api", "worker")
# Settings that only one process uses; everything else must be the same for api and worker.
SERVICE_SPECIFIC = {"api": {"DLCPRUNE_HOST"}, "worker": {"DLCPRUNE_DEVICE"}, "keys": set()}
REQUIRED_APP_ENV = (
    "DLCPRUNE_DATABASE_URL",
    "DLCPRUNE_BROKER_URL",
    "DLCPRUNE_BLOB_URL",
    "DLCPRUNE_DATA_DIR",
    "DLCPRUNE_AUTH_ENABLED",
    "DLCPRUNE_FILE_ROOTS",
)

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, ...
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)
_UNBRACED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# --------------------------------------------------------------------------------------------
# Helpers: compose file, interpolation, Dockerfiles, .dockerignore
# --------------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) for item in env)
    assert isinstance(env, dict)
    return {str(k): str(v) for k, v in env.items()}


def interpolations(text: str) -> list[tuple[str, str | None, str | None]]:
    """``(name, operator, argument)`` for each ``$NAME``/``${...}`` in ``text``; raises
    ``ValueError`` on a template Compose would reject. ``$$`` is a literal dollar."""
    found: list[tuple[str, str | None, str | None]] = []
    i = 0
    while (i := text.find("$", i)) != -1:
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            i += 2
            continue
        if nxt == "{":
            depth, j = 1, i + 2
            while j < len(text) and depth:
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth += {"{": 0, "}": -1}.get(text[j], 0)
                j += 1
            if depth:
                raise ValueError(f"unbalanced ${{...}} in {text!r}")
            body = text[i + 2 : j - 1]
            match = _BRACED.match(body)
            if not match:
                raise ValueError(f"invalid interpolation ${{{body}}} in {text!r}")
            name, op, arg = match["name"], match["op"], match["arg"]
            found.append((name, op, arg))
            if arg:
                found.extend(interpolations(arg))  # nested defaults: ${A:-${B}}
            i = j
            continue
        match = _UNBRACED.match(text, i + 1)
        if not match:
            raise ValueError(f"lone '$' in {text!r} (write $$ for a literal dollar)")
        found.append((match.group(), None, None))
        i = match.end()
    return found


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """What Compose makes of ``text`` with ``env`` (missing variables are unset)."""
    env = env or {}
    out: list[str] = []
    i = 0
    while (k := text.find("$", i)) != -1:
        out.append(text[i:k])
        if text[k + 1 : k + 2] == "$":
            out.append("$")
            i = k + 2
            continue
        if text[k + 1 : k + 2] != "{":
            match = _UNBRACED.match(text, k + 1)
            assert match, text
            out.append(env.get(match.group(), ""))
            i = match.end()
            continue
        depth, j = 1, k + 2
        while depth:
            if text.startswith("${", j):
                depth, j = depth + 1, j + 2
                continue
            depth += {"{": 0, "}": -1}.get(text[j], 0)
            j += 1
        match = _BRACED.match(text[k + 2 : j - 1])
        assert match, text
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        value, is_set = env.get(name), name in env
        present = bool(value) if op.startswith(":") else is_set
        if op.endswith("-"):
            out.append(value if present else interpolate(arg, env))  # type: ignore[arg-type]
        elif op.endswith("?"):
            if not present:
                raise KeyError(f"required variable {name} is missing: {arg}")
            out.append(value)  # type: ignore[arg-type]
        elif op.endswith("+"):
            out.append(interpolate(arg, env) if present else "")
        else:
            out.append(value or "")
        i = j
    out.append(text[i:])
    return "".join(out)


def walk_strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string (keys and values) in a parsed YAML tree, with where it is."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                found.append((where + " (key)", key))
            found.extend(walk_strings(value, where))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(walk_strings(value, f"{path}[{index}]"))
    elif isinstance(node, str):
        found.append((path, node))
    return found


def volume_mounts(name: str) -> list[tuple[str, str, str]]:
    """``(source, target, mode)`` for a service's short-syntax volumes."""
    mounts = []
    for entry in service(name).get("volumes", []):
        assert isinstance(entry, str), f"{name}: use the short volume syntax ({entry!r})"
        parts = entry.split(":")
        source, target = parts[0], parts[1]
        if source.startswith("${"):  # ${DATASETS_DIR:-./datasets}:/datasets:ro
            closing = entry.index("}") + 1
            source, rest = entry[:closing], entry[closing + 1 :].split(":")
            target, parts = rest[0], [source, *rest]
        mounts.append((source, target, parts[2] if len(parts) > 2 else "rw"))
    return mounts


def is_named_volume(source: str) -> bool:
    return not source.startswith(("/", ".", "~", "$"))


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs: comments dropped, ``\\`` continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue  # comments (parser directives too) and blank lines, even inside a RUN
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    assert not pending, f"{path.name}: the last line ends with a continuation"
    return instructions


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage (each starts with its FROM)."""
    out: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions(path):
        if instruction[0] == "FROM":
            out.append([])
        assert out, f"{path.name}: {instruction[0]} before the first FROM"
        out[-1].append(instruction)
    return out


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """``--flag=value`` options in front of an instruction's arguments, and the rest."""
    words = shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words


def exec_form(args: str) -> list[str]:
    value = yaml.safe_load(args)  # a JSON array is valid YAML
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def final_stage(path: Path) -> list[tuple[str, str]]:
    return stages(path)[-1]


def last(instructions: list[tuple[str, str]], keyword: str) -> str | None:
    values = [args for kw, args in instructions if kw == keyword]
    return values[-1] if values else None


def stage_names(path: Path) -> set[str]:
    names = set()
    for stage in stages(path):
        words = stage[0][1].split()
        if len(words) >= 3 and words[-2].upper() == "AS":
            names.add(words[-1].lower())
    return names


def copy_sources(path: Path) -> list[str]:
    """Sources of COPY/ADD instructions that come from the build context (not ``--from``)."""
    sources = []
    for keyword, args in dockerfile_instructions(path):
        if keyword not in ("COPY", "ADD"):
            continue
        flags, words = split_flags(args)
        if "from" in flags:
            continue
        if args.lstrip().startswith("["):
            words = exec_form(args)
        sources.extend(words[:-1])
    return sources


def pip_installs(path: Path) -> list[str]:
    """The argument lists of every ``pip install`` in the Dockerfile's RUN instructions."""
    installs = []
    for keyword, args in dockerfile_instructions(path):
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", args):
            words = shlex.split(command)
            for i, word in enumerate(words):
                is_pip = word in ("pip", "pip3") or word.endswith("/pip")
                if is_pip and words[i + 1 : i + 2] == ["install"]:
                    installs.append(" ".join(words[i + 2 :]))
    return installs


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """``(negated, regex)`` per line of ``.dockerignore``, anchored at the context root."""
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.removeprefix("!").strip().strip("/")
        regex, i = "", 0
        while i < len(line):
            if line.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif line.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif line[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif line[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(line[i]), i + 1
        patterns.append((negated, re.compile(regex + "$")))
    return patterns


def dockerignored(relpath: str) -> bool:
    """Whether Docker leaves ``relpath`` (or a directory above it) out of the build context."""
    parts = PurePosixPath(relpath).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in dockerignore_patterns():
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return excluded


# --------------------------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------------------------


def test_compose_specification_without_version() -> None:
    assert "version" not in compose(), "the Compose Specification has no top-level version"
    assert set(compose()["services"]) >= {"postgres", "redis", "api", "worker", "keys"}


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
        ("worker", "docker/worker.Dockerfile"),
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
    if name == "worker":
        assert interpolate(env["DLCPRUNE_DEVICE"]) in ("auto", "cpu", "cuda")


@pytest.mark.parametrize("name", ["worker", "keys"])
def test_processes_share_one_configuration(name: str) -> None:
    def common(svc: str) -> dict[str, str]:
        env = environment(svc)
        return {k: v for k, v in env.items() if k not in SERVICE_SPECIFIC[svc]}

    assert common(name) == common("api")


def test_api_and_worker_share_the_blob_volume() -> None:
    api, worker = set(volume_mounts("api")), set(volume_mounts("worker"))
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
    for name in ("api", "worker"):
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
        ("worker", {"api", "postgres", "redis"}),
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


def test_worker_gpu_reservation_and_replicas() -> None:
    worker = service("worker")
    assert worker.get("command", WORKER_CMD) == WORKER_CMD
    assert "ports" not in worker
    deploy = worker["deploy"]
    replicas = str(deploy["replicas"])
    assert interpolations(replicas)[0][:2] == ("WORKER_REPLICAS", ":-")
    assert interpolate(replicas) == "1"
    assert interpolate(replicas, {"WORKER_REPLICAS": "3"}) == "3"
    devices = deploy["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "container_name" not in worker, "replicas cannot share a container name"


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
    assert {"POSTGRES_PASSWORD", "WORKER_REPLICAS", "DATASETS_DIR", "TENANT"} <= names


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
# Dockerfiles
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image", DOCKERFILES)
def test_dockerfile_base_images_are_pinned(image: str) -> None:
    path = DOCKERFILES[image]
    names = stage_names(path)
    bases = []
    for stage in stages(path):
        _, words = split_flags(stage[0][1])
        base = words[0]
        if base.lower() in names:
            continue  # FROM an earlier stage
        bases.append(base)
        repo, _, tag = base.split("@", 1)[0].partition(":")
        assert "$" not in base, f"{image}: write the base image out ({base})"
        assert tag, f"{image}: the base image needs a tag ({base})"
        assert tag != "latest", f"{image}: pin the base image ({base})"
        assert repo == "python" and tag.startswith("3.11.") and "slim" in tag, base
    assert bases, f"{image}: no base image"
    assert len(stages(path)) >= 2, f"{image}: use a multi-stage build"


@pytest.mark.parametrize("image", DOCKERFILES)
def test_dockerfile_runs_as_non_root(image: str) -> None:
    user = last(final_stage(DOCKERFILES[image]), "USER")
    assert user, f"{image}: the final stage needs a USER"
    name = user.split(":")[0]
    assert name not in ("root", "0"), f"{image}: runs as root"


def test_api_and_worker_images_use_the_same_user() -> None:
    """They write the same volume: same uid and gid."""
    users = {last(final_stage(path), "USER") for path in DOCKERFILES.values()}
    assert len(users) == 1, users


@pytest.mark.parametrize("image", DOCKERFILES)
def test_dockerfile_python_environment(image: str) -> None:
    env_text = " ".join(args for kw, args in final_stage(DOCKERFILES[image]) if kw == "ENV")
    for variable in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "DLCPRUNE_DATA_DIR=/data"):
        assert variable in env_text, f"{image}: missing ENV {variable}"


@pytest.mark.parametrize("image", DOCKERFILES)
def test_dockerfile_copy_sources_exist(image: str) -> None:
    path = DOCKERFILES[image]
    sources = copy_sources(path)
    assert sources, f"{image}: copies nothing"
    for source in sources:
        assert not source.startswith(("/", "..")), f"{image}: {source} is outside the context"
        assert "*" not in source, f"{image}: copy explicit paths ({source})"
        assert (ROOT / source).exists(), f"{image}: COPY {source}: no such file"
    copied = {s.rstrip("/").removeprefix("./") for s in sources}
    expected = {"pyproject.toml", "README.md", "alembic.ini", "app", "dlcprune", "migrations"}
    if image == "worker":
        expected.add("worker")  # the engine and the Celery tasks; the API image goes without
    assert copied == expected, f"{image}: copy exactly what the service needs"
    names = stage_names(path)
    for keyword, args in dockerfile_instructions(path):
        flags, _ = split_flags(args)
        if keyword == "COPY" and "from" in flags:
            assert flags["from"].lower() in names, f"{image}: unknown stage {flags['from']}"


@pytest.mark.parametrize(("image", "command"), [("api", SERVE_CMD), ("worker", WORKER_CMD)])
def test_dockerfile_cmd(image: str, command: list[str]) -> None:
    cmd = last(final_stage(DOCKERFILES[image]), "CMD")
    assert cmd and cmd.startswith("["), f"{image}: CMD in exec form"
    assert exec_form(cmd) == command
    assert last(final_stage(DOCKERFILES[image]), "ENTRYPOINT") is None


def test_api_image_has_no_torch() -> None:
    for keyword, args in dockerfile_instructions(API_DOCKERFILE):
        assert "torch" not in args.lower(), f"api image: {keyword} {args}"
        assert "[worker]" not in args, f"api image installs the worker extra: {args}"
    installs = pip_installs(API_DOCKERFILE)
    assert installs, "api image installs nothing"
    for install in installs:
        assert ".[server]" in install, f"api image: the server extra only ({install})"


def test_worker_image_installs_pinned_torch_then_the_worker_extra() -> None:
    installs = pip_installs(WORKER_DOCKERFILE)
    pins = [f"{name}=={version}" for name, version in TORCH_PINS.items()]
    first = next(i for i, args in enumerate(installs) if "torch==" in args)
    assert installs[first].split() == pins, "install torch first, on its own"
    extra = next(i for i, args in enumerate(installs) if ".[worker]" in args)
    assert first < extra
    for pin in pins:
        assert all(pin in args for args in installs if "torch" in args), pin

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    ranges = {}
    for line in project["project"]["optional-dependencies"]["worker"]:
        requirement = Requirement(line)
        ranges[requirement.name.lower()] = requirement.specifier
    for name, version in TORCH_PINS.items():
        assert version in ranges[name], f"{name}=={version} is outside pyproject's {ranges[name]}"


def test_api_image_healthcheck_and_port() -> None:
    final = final_stage(API_DOCKERFILE)
    assert last(final, "EXPOSE") == "8000"
    check = last(final, "HEALTHCHECK")
    assert check, "api image: HEALTHCHECK"
    flags, _ = split_flags(check.split(" CMD ", 1)[0] + " x")
    assert {"interval", "timeout", "retries"} <= set(flags)
    command = exec_form(check.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2] and "http://127.0.0.1:8000/healthz" in command[2]
    compile(command[2], "<healthcheck>", "exec")  # the probe itself is valid Python


@pytest.mark.parametrize("name", ["api", "worker"])
def test_compose_commands_match_the_images(name: str) -> None:
    image_cmd = exec_form(last(final_stage(DOCKERFILES[name]), "CMD") or "[]")
    assert service(name).get("command", image_cmd) == image_cmd


def test_console_script_is_the_one_the_images_call() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts = project["project"]["scripts"]
    assert "dlcprune" in scripts
    module, _, function = scripts["dlcprune"].partition(":")
    source = ROOT / Path(*module.split("."))
    source = (
        source.with_suffix(".py") if source.with_suffix(".py").exists() else source / "__init__.py"
    )
    tree = ast.parse(source.read_text(encoding="utf-8"))
    assert any(isinstance(node, ast.FunctionDef) and node.name == function for node in tree.body), (
        f"{scripts['dlcprune']} does not exist"
    )
    commands = [exec_form(last(final_stage(p), "CMD") or "[]") for p in DOCKERFILES.values()]
    commands += [service(name)["command"] for name in APP_SERVICES]
    for command in commands:
        assert command[0] in scripts, f"{command[0]} is not a console script of the project"
    # The package that provides the script is installed in both images.
    top_package = module.split(".")[0]
    for path in DOCKERFILES.values():
        assert any(s.rstrip("/").removeprefix("./") == top_package for s in copy_sources(path))


# --------------------------------------------------------------------------------------------
# .dockerignore
# --------------------------------------------------------------------------------------------


def test_dockerignore_keeps_local_state_out() -> None:
    for path in (".venv", ".git", ".env", "var", "tests", "bench", "app/__pycache__/x.pyc"):
        assert dockerignored(path), f".dockerignore should exclude {path}"


def test_dockerignore_keeps_what_the_images_copy() -> None:
    for dockerfile in DOCKERFILES.values():
        for source in copy_sources(dockerfile):
            top = ROOT / source
            assert not dockerignored(source.rstrip("/")), f"{source} is excluded"
            files = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
            for file in files:
                rel = file.relative_to(ROOT).as_posix()
                if "__pycache__" not in rel:
                    assert not dockerignored(rel), f"{rel} is excluded from the build context"


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
