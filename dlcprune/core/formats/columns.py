"""Column mappings and label columns, shared by every format whose records have named fields
(CSV/JSONL manifests, Parquet and Hugging Face tables, text and instruction JSONL, WebDataset).

A ``columns`` mapping names, per role, the column (or field) that holds it:
``{"image": "img", "label": "y"}``. Roles not mapped fall back to the format's default names,
tried in order. A mapped column that the data does not have, or a required role that no column
fills, is a ``MissingFieldError`` naming the column; a role the format does not have is an
``InvalidColumnsError``.

``LabelColumn`` turns a column's values into label names: strings as they are, integers as
``str(int)`` (or their ``ClassLabel`` name), and refuses a column mixing integers and strings,
naming the first row whose type differs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from dlcprune.core.errors import (
    InvalidColumnsError,
    InvalidRecordError,
    MissingFieldError,
)

__all__ = ["ROLES", "Columns", "LabelColumn", "check_roles", "mapped"]

# Every role a mapping may name, over all formats.
ROLES = (
    "image",
    "label",
    "text",
    "id",
    "instruction",
    "input",
    "response",
    "messages",
)

Columns = Mapping[str, str]


def check_roles(
    columns: Columns | None, allowed: Collection[str], *, fmt: str, path: str
) -> dict[str, str]:
    """The mapping as a dict, after checking that every role is one ``fmt`` takes."""
    if not columns:
        return {}
    if not isinstance(columns, Mapping):
        raise InvalidColumnsError("columns must map roles to column names", path=path)
    if not allowed:
        raise InvalidColumnsError(f"format {fmt!r} takes no column mapping", path=path)
    out: dict[str, str] = {}
    for role, column in columns.items():
        if role not in allowed:
            raise InvalidColumnsError(
                f"format {fmt!r} has no column role {role!r} (roles: {', '.join(allowed)})",
                path=path,
            )
        if not isinstance(column, str) or not column:
            raise InvalidColumnsError(
                f"the column for role {role!r} must be a non-empty name", path=path
            )
        out[role] = column
    return out


def mapped(
    role: str,
    columns: Columns,
    available: Collection[str],
    defaults: Sequence[str],
    *,
    required: bool,
    path: str,
    line: int | None = None,
    member: str | None = None,
    fold_case: bool = False,
) -> str | None:
    """The column that holds ``role``: the mapped one (which must exist), else the first default
    present, else ``None`` (or ``MissingFieldError`` when ``required``).

    ``fold_case``: match names case-insensitively (CSV headers); the name returned is then the
    lower-cased one.
    """
    names = {n.lower() for n in available} if fold_case else set(available)
    if role in columns:
        column = columns[role].lower() if fold_case else columns[role]
        if column not in names:
            raise MissingFieldError(
                f"column {columns[role]!r} (mapped to {role}) is not in the data; "
                f"columns: {', '.join(sorted(available))}",
                path=path,
                line=line,
                member=member,
            )
        return column
    for name in defaults:
        if name in names:
            return name
    if required:
        expected = " or ".join(repr(d) for d in defaults)
        raise MissingFieldError(
            f"no {role} column: expected {expected}, or map one with columns={{{role!r}: ...}}",
            path=path,
            line=line,
            member=member,
        )
    return None


def _type_name(value: Any) -> str:
    return "integers" if isinstance(value, int) else "strings"


class LabelColumn:
    """Label names from one column, refusing a column that mixes integers and strings.

    ``names``: a ``ClassLabel``'s names, which integer values index.
    """

    def __init__(self, column: str, *, path: str, names: Sequence[str] | None = None) -> None:
        self.column = column
        self.path = path
        self.names = list(names) if names is not None else None
        self._type: type | None = None

    def value(
        self, raw: Any, *, line: int | None, member: str | None = None, column: str | None = None
    ) -> str:
        """The label name of one cell; ``line`` is the row (or line) number, 1-based;
        ``column``: the field it came from when it differs per record (JSONL)."""
        where = {"path": self.path, "line": line, "member": member}
        name = column or self.column
        if raw is None:
            raise MissingFieldError(f"column {name!r} is empty (null)", **where)
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise InvalidRecordError(
                f"column {name!r} must hold strings or integers, got {type(raw).__name__}",
                **where,
            )
        kind = int if isinstance(raw, int) else str
        if self._type is None:
            self._type = kind
        elif kind is not self._type:
            raise InvalidRecordError(
                f"column {name!r} mixes label types: this row holds {_type_name(raw)}, "
                f"earlier rows hold {_type_name(self._type())}",
                **where,
            )
        if isinstance(raw, int):
            if self.names is None:
                return str(raw)
            if not 0 <= raw < len(self.names):
                raise InvalidRecordError(
                    f"column {name!r} holds {raw}, not a class of its ClassLabel "
                    f"(0..{len(self.names) - 1})",
                    **where,
                )
            return self.names[raw]
        if not raw.strip():
            raise MissingFieldError(f"column {name!r} is empty", **where)
        return raw
