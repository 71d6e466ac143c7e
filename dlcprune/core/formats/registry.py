"""The format registry: each format module registers its reader with the way it is detected, and
``detect_format`` / ``open_dataset`` look formats up here rather than in an if-chain.

A new format is one new module holding a ``Reader`` subclass decorated with ``register(...)``, plus
its import in ``dlcprune.core.formats`` (which fixes the order of ``FORMATS``).

Detection, in order: a directory is the format registered with ``directory=True``; a file is
claimed by the format registering its suffix; a JSON-lines file (``.jsonl``, ``.json``) is read
up to its first object and given to the ``JsonSniff`` rules in ascending ``order``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from dlcprune.core.errors import DatasetError, UnknownFormatError
from dlcprune.core.formats.base import Reader
from dlcprune.core.formats.jsonl import JSONL_SUFFIXES, first_object_keys
from dlcprune.core.formats.limits import ReadLimits

__all__ = [
    "FormatSpec",
    "JsonSniff",
    "detect_format",
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
class FormatSpec:
    """One registered format: its name, reader class and detection rules."""

    name: str
    reader: type[Reader]
    directory: bool = False
    suffixes: tuple[str, ...] = ()
    sniff: JsonSniff | None = None


_SPECS: dict[str, FormatSpec] = {}


def register(
    name: str,
    *,
    directory: bool = False,
    suffixes: tuple[str, ...] = (),
    sniff: JsonSniff | None = None,
) -> Callable[[R], R]:
    """Class decorator: register a ``Reader`` subclass as format ``name`` (and set its
    ``format``). ``suffixes`` are lower-case file-name endings the format claims."""

    def add(cls: R) -> R:
        if name in _SPECS:
            raise ValueError(f"format {name!r} is registered twice")
        claimed = {s for other in _SPECS.values() for s in other.suffixes}
        if clash := claimed.intersection(suffixes):
            raise ValueError(f"format {name!r}: suffixes {sorted(clash)} are already claimed")
        cls.format = name
        _SPECS[name] = FormatSpec(name, cls, directory, tuple(suffixes), sniff)
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
    return (*binary, *lines, *JSONL_SUFFIXES)


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
    if os.path.isdir(p):
        for f in _SPECS.values():
            if f.directory:
                return f.name
    else:
        lower = p.lower()
        for f in _SPECS.values():
            if lower.endswith(f.suffixes):
                return f.name
        if lower.endswith(JSONL_SUFFIXES):
            return _sniff_jsonl(p, limits or ReadLimits())
    expected = [*(["a folder"] if any(f.directory for f in _SPECS.values()) else []), *suffixes()]
    raise UnknownFormatError(
        f"unknown dataset format (expected {', '.join(expected[:-1])} or {expected[-1]})",
        path=p,
    )


def open_dataset(
    path: str | os.PathLike[str], *, format: str | None = None, limits: ReadLimits | None = None
) -> Reader:
    """Index the dataset at ``path`` and return it; ``format`` overrides detection."""
    p = os.fspath(path)
    limits = limits or ReadLimits()
    if format is None:
        fmt = detect_format(p, limits=limits)
    elif format not in _SPECS:
        raise UnknownFormatError(
            f"unknown format {format!r}; expected one of {', '.join(_SPECS)}", path=p
        )
    else:
        if not os.path.exists(p):
            raise DatasetError("path does not exist", path=p)
        if not _SPECS[format].directory and os.path.isdir(p):
            raise DatasetError(f"format {format!r} needs a file, got a directory", path=p)
        fmt = format
    return _SPECS[fmt].reader(p, limits)
