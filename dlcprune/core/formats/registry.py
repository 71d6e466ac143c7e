"""The format registry: each format module registers its reader with the way it is detected, and
``detect_format`` / ``open_dataset`` look formats up here rather than in an if-chain.

A new format is one new module holding a ``Reader`` subclass decorated with ``register(...)``, plus
its import in ``dlcprune.core.formats`` (which fixes the order of ``FORMATS``).

Detection, in order:

- a list of paths, or a string with a brace pattern (``shards-{000000..000009}.tar``) that is not
  an existing path, is the format registered with ``shards=True``;
- a directory is claimed by the first format whose ``directory`` rule (a predicate) accepts it,
  else by the format registered with ``directory=True``;
- a file is claimed by the first format whose ``probe`` accepts it (a look at the file's first
  bytes or members, for formats that share a suffix with another: a WebDataset shard is a
  ``.tar``), else by the format registering its suffix;
- a JSON-lines file (``.jsonl``, ``.json``, and the same gzip-compressed) is read up to its first
  object and given to the ``JsonSniff`` rules in ascending ``order``.

``columns`` (``{"image": "img", "label": "y"}``) goes to the formats that register the roles they
take (``roles``); a mapping given to any other format is an ``InvalidColumnsError``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from dlcprune.core.errors import DatasetError, UnknownFormatError
from dlcprune.core.formats import braces
from dlcprune.core.formats.base import Reader
from dlcprune.core.formats.columns import check_roles
from dlcprune.core.formats.jsonl import GZ_JSONL_SUFFIXES, JSONL_SUFFIXES, first_object_keys
from dlcprune.core.formats.limits import ReadLimits

__all__ = [
    "FormatSpec",
    "JsonSniff",
    "Probe",
    "detect_format",
    "expand_shards",
    "names",
    "open_dataset",
    "register",
    "spec",
    "suffixes",
]

R = TypeVar("R", bound=type[Reader])


@dataclass(frozen=True)
class JsonSniff:
    """How a JSON-lines format is told from the keys of a file's first object.

    ``matches``: true when the keys are this format's. ``hint``: the keys as named in the error
    when no format matches (``"'text'"``). ``order``: rules run in ascending order, so a rule
    that would also match another format's records (``text`` vs ``sharegpt``) runs after it.
    """

    matches: Callable[[Collection[str]], bool]
    hint: str
    order: int


@dataclass(frozen=True)
class Probe:
    """A look inside a file with one of ``suffixes`` that tells this format from the one that
    claims the suffix (``matches(path, limits)``; it must be cheap and never raise for data that
    is merely not this format)."""

    suffixes: tuple[str, ...]
    matches: Callable[[str, ReadLimits], bool]


DirRule = bool | Callable[[str], bool]


@dataclass(frozen=True)
class FormatSpec:
    """One registered format: its name, reader class, detection rules and column roles."""

    name: str
    reader: type[Reader]
    directory: DirRule = False
    suffixes: tuple[str, ...] = ()
    sniff: JsonSniff | None = None
    probe: Probe | None = None
    roles: tuple[str, ...] = ()
    shards: bool = False


_SPECS: dict[str, FormatSpec] = {}


def register(
    name: str,
    *,
    directory: DirRule = False,
    suffixes: tuple[str, ...] = (),
    sniff: JsonSniff | None = None,
    probe: Probe | None = None,
    roles: tuple[str, ...] = (),
    shards: bool = False,
) -> Callable[[R], R]:
    """Class decorator: register a ``Reader`` subclass as format ``name`` (and set its
    ``format``). ``suffixes`` are lower-case file-name endings the format claims; ``directory``
    is ``True`` for the fallback directory format or a predicate claiming some directories;
    ``roles`` are the ``columns`` roles its reader takes (it is then built with ``columns=``);
    ``shards``: it reads a list of files (its reader gets the list)."""

    def add(cls: R) -> R:
        if name in _SPECS:
            raise ValueError(f"format {name!r} is registered twice")
        claimed = {s for other in _SPECS.values() for s in other.suffixes}
        if clash := claimed.intersection(suffixes):
            raise ValueError(f"format {name!r}: suffixes {sorted(clash)} are already claimed")
        cls.format = name
        _SPECS[name] = FormatSpec(
            name, cls, directory, tuple(suffixes), sniff, probe, tuple(roles), shards
        )
        return cls

    return add


def names() -> tuple[str, ...]:
    """Registered format names, in registration order."""
    return tuple(_SPECS)


def spec(name: str) -> FormatSpec:
    return _SPECS[name]


def suffixes() -> tuple[str, ...]:
    """Every file-name ending a format is detected by: those of binary formats first, then those
    of the line-based formats (the ones with a JSON-lines rule, such as the CSV manifest), then
    the JSON-lines endings; each group in registration order."""
    binary = [s for f in _SPECS.values() if f.sniff is None for s in f.suffixes]
    lines = [s for f in _SPECS.values() if f.sniff is not None for s in f.suffixes]
    return (*binary, *lines, *JSONL_SUFFIXES, *GZ_JSONL_SUFFIXES)


_BRACES = re.compile(r"\{[^{}]*(,|\.\.)[^{}]*\}")


def expand_shards(path: str, limit: int | None = None) -> list[str] | None:
    """The files a brace pattern names (``a-{000..009}.tar``, ``{a,b}.tar``), or ``None`` when
    ``path`` has no brace pattern or exists as it is. More than ``limit`` files (default
    ``ReadLimits.max_members``) is a ``LimitExceededError``, raised before expanding."""
    if not _BRACES.search(path) or os.path.exists(path):
        return None
    return braces.expand(path, ReadLimits().max_members if limit is None else limit)


def _claims(rule: Callable[[str], bool], path: str) -> bool:
    """A directory rule's answer; a folder it cannot list is left to the fallback format, which
    reports why."""
    try:
        return rule(path)
    except OSError:
        return False


def _sniff_jsonl(path: str, limits: ReadLimits) -> str:
    """Pick a JSON-lines format from the keys of the first non-blank line's object."""
    line, keys = first_object_keys(path, limits)
    rules = sorted(
        ((f.sniff, f.name) for f in _SPECS.values() if f.sniff is not None),
        key=lambda rule: rule[0].order,
    )
    for sniff, name in rules:
        if sniff.matches(keys):
            return name
    hints = [sniff.hint for sniff, _ in rules]
    raise UnknownFormatError(
        f"cannot tell the format from the fields {sorted(keys)}; expected "
        f"{', '.join(hints[:-1])} or {hints[-1]}",
        path=path,
        line=line,
    )


def detect_format(path: str | os.PathLike[str], *, limits: ReadLimits | None = None) -> str:
    """The format name of ``path`` from its kind and extension (JSONL files are sniffed)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise DatasetError("path does not exist", path=p)
    limits = limits or ReadLimits()
    if os.path.isdir(p):
        for f in _SPECS.values():
            if callable(f.directory) and _claims(f.directory, p):
                return f.name
        for f in _SPECS.values():
            if f.directory is True:
                return f.name
    else:
        lower = p.lower()
        for f in _SPECS.values():
            probe = f.probe
            if probe is not None and lower.endswith(probe.suffixes) and probe.matches(p, limits):
                return f.name
        for f in _SPECS.values():
            if lower.endswith(f.suffixes):
                return f.name
        if lower.endswith(JSONL_SUFFIXES + GZ_JSONL_SUFFIXES):
            return _sniff_jsonl(p, limits)
    expected = [*(["a folder"] if any(f.directory for f in _SPECS.values()) else []), *suffixes()]
    raise UnknownFormatError(
        f"unknown dataset format (expected {', '.join(expected[:-1])} or {expected[-1]})",
        path=p,
    )


def _shard_format(path: str) -> str:
    for f in _SPECS.values():
        if f.shards:
            return f.name
    raise UnknownFormatError("no format reads a list of files", path=path)


def open_dataset(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    format: str | None = None,
    limits: ReadLimits | None = None,
    columns: Mapping[str, str] | None = None,
) -> Reader:
    """Index the dataset at ``path`` and return it; ``format`` overrides detection.

    ``path``: a file or directory; a list of shard files, or a brace pattern naming them, for a
    format that reads shards. ``columns``: which column holds each role, for the formats with
    named fields (``{"image": "img", "label": "y"}``).
    """
    limits = limits or ReadLimits()
    shards: list[str] | None = None
    if isinstance(path, (list, tuple)):
        shards = [os.fspath(x) for x in path]
        p = shards[0] if shards else ""
        if not shards:
            raise DatasetError("no shard paths given", path="")
    else:
        p = os.fspath(path)  # type: ignore[arg-type]
        shards = expand_shards(p, limits.max_members)
    if format is not None and format not in _SPECS:
        raise UnknownFormatError(
            f"unknown format {format!r}; expected one of {', '.join(_SPECS)}", path=p
        )
    if shards is not None:
        fmt = format or _shard_format(p)
        if not _SPECS[fmt].shards:
            raise DatasetError(f"format {fmt!r} reads one path, not a list of shards", path=p)
    elif format is None:
        fmt = detect_format(p, limits=limits)
    else:
        if not os.path.exists(p):
            raise DatasetError("path does not exist", path=p)
        if not _SPECS[format].directory and os.path.isdir(p):
            raise DatasetError(f"format {format!r} needs a file, got a directory", path=p)
        fmt = format
    spec_ = _SPECS[fmt]
    mapping = check_roles(columns, spec_.roles, fmt=fmt, path=p)
    source: str | list[str] = p
    if spec_.shards:
        source = shards if shards is not None else [p]
    if spec_.roles:
        return spec_.reader(source, limits, columns=mapping)  # type: ignore[call-arg]
    return spec_.reader(source, limits)  # type: ignore[arg-type]
