"""Brace patterns naming shards (``shard-{000000..000099}.tar``, ``{train,val}-{0..9}.tar``):
how many names a pattern stands for, counted without expanding it, and its expansion within a
limit.

The count comes first because ``braceexpand`` is not lazy where it matters: its
``itertools.product`` takes in every range whole before the first name comes out, so
``x-{0..99999999}.tar`` builds a hundred million strings before any ``islice`` could stop it.
Counting follows ``braceexpand``'s grammar (numeric and letter ranges with a step, lists,
nesting, backslash escapes) in time linear in the pattern's length.
"""

from __future__ import annotations

import re
import string

from dlcprune.core.errors import LimitExceededError

_INT_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.-?(\d+))?$")
_CHAR_RANGE = re.compile(r"^([A-Za-z])\.\.([A-Za-z])(?:\.\.-?(\d+))?$")
_ALPHABET = string.ascii_uppercase + string.ascii_lowercase


def count(pattern: str) -> int:
    """How many names ``braceexpand(pattern)`` yields (1 for a pattern without braces). An
    unbalanced pattern is counted as far as it goes; expanding it raises."""
    total = 1
    start = pos = depth = 0
    while pos < len(pattern):
        char = pattern[pos]
        if char == "\\":
            pos += 2
            continue
        if char == "{":
            if depth == 0:
                start = pos
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                inner = pattern[start + 1 : pos]
                n = _count_expression(inner)
                # Not a range or a list: literal braces around a pattern.
                total *= n if n is not None else count(inner)
        pos += 1
    return total


def _count_expression(expr: str) -> int | None:
    ints = _INT_RANGE.match(expr)
    if ints:
        first, last, step = int(ints[1]), int(ints[2]), int(ints[3] or 1) or 1
        return abs(last - first) // step + 1
    chars = _CHAR_RANGE.match(expr)
    if chars:
        step = int(chars[3] or 1) or 1
        first, last = _ALPHABET.index(chars[1]), _ALPHABET.index(chars[2])
        if first < last:
            return len(_ALPHABET[first : last + 1 : step])
        return len(_ALPHABET[first : (last or -len(_ALPHABET)) - 1 : -step])
    parts = _split_list(expr)
    return None if parts is None else sum(count(part) for part in parts)


def _split_list(expr: str) -> list[str] | None:
    """The items of ``a,b,{c,d}`` split at its top-level commas; None when it is not a list."""
    parts: list[str] = []
    start = pos = depth = 0
    while pos < len(expr):
        char = expr[pos]
        if char == "\\":
            pos += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(expr[start:pos])
            start = pos + 1
        pos += 1
    if depth != 0 or not parts:
        return None
    parts.append(expr[start:])
    return parts


def expand(pattern: str, limit: int, *, path: str | None = None) -> list[str]:
    """The names ``pattern`` stands for, in ``braceexpand``'s order; more than ``limit`` of them
    is a ``LimitExceededError`` (naming ``path``, default the pattern) raised before any is
    built."""
    n = count(pattern)
    if n > limit:
        raise LimitExceededError(
            f"the brace pattern names {n:,} shards, more than the limit of {limit:,} (max_members)",
            path=path or pattern,
        )
    from braceexpand import braceexpand

    return list(braceexpand(pattern))
