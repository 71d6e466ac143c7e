"""The Dockerfiles and ``.dockerignore``, checked without a Docker engine: pinned bases, a
non-root user, no torch in the API image, exactly the sources each image needs.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.deploy.parsing import (
    API_DOCKERFILE,
    APP_SERVICES,
    DOCKERFILES,
    ROOT,
    SERVE_CMD,
    TORCH_PINS,
    WORKER_CMD,
    WORKER_DOCKERFILE,
    copy_sources,
    dockerfile_instructions,
    dockerignored,
    exec_form,
    final_stage,
    last,
    pip_installs,
    service,
    split_flags,
    stage_names,
    stages,
)

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


@pytest.mark.parametrize(
    ("name", "image"), [("api", "api"), ("gpu-worker", "worker"), ("cpu-worker", "worker")]
)
def test_compose_commands_match_the_images(name: str, image: str) -> None:
    """The API runs the image's command; each worker the image's command with its --kind."""
    image_cmd = exec_form(last(final_stage(DOCKERFILES[image]), "CMD") or "[]")
    command = service(name).get("command", image_cmd)
    assert command[: len(image_cmd)] == image_cmd
    assert command[len(image_cmd) :] in ([], ["--kind", name.split("-")[0]])


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
