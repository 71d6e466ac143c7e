"""Parsers for the production container files, so tests can check them without a Docker engine.

``docker-compose.yml`` is parsed with PyYAML (with Compose's variable interpolation), the
Dockerfiles with a small line parser, ``.dockerignore`` with its glob rules.
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
API_DOCKERFILE = ROOT / "docker" / "api.Dockerfile"
WORKER_DOCKERFILE = ROOT / "docker" / "worker.Dockerfile"
DOCKERFILES = {"api": API_DOCKERFILE, "worker": WORKER_DOCKERFILE}

SERVE_CMD = ["dlcprune", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-embedded-worker"]
WORKER_CMD = ["dlcprune", "worker"]
TORCH_PINS = {"torch": "2.14.1", "torchvision": "0.29.1"}

# The two kinds of worker, each the worker image's command with its --kind.
WORKER_SERVICES = {"gpu-worker": "gpu", "cpu-worker": "cpu"}
APP_SERVICES = ("api", *WORKER_SERVICES, "keys")
LONG_RUNNING = ("postgres", "redis", "api", *WORKER_SERVICES)
# Settings that only one process uses; everything else must be the same for api and workers.
SERVICE_SPECIFIC = {
    "api": {"DLCPRUNE_HOST"},
    **{name: {"DLCPRUNE_DEVICE"} for name in WORKER_SERVICES},
    "keys": set(),
}
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
