"""``text``: JSON lines of ``{"text": str, "label": str | int}``; payloads are ``str``."""

from __future__ import annotations

from typing import Any, ClassVar

from dlcprune.core.errors import MissingFieldError
from dlcprune.core.formats.jsonl import JsonlReader, label_value, str_field
from dlcprune.core.formats.registry import JsonSniff, register

__all__ = ["TextReader"]


@register(
    "text",
    sniff=JsonSniff(lambda keys: "text" in keys, "'text'", order=40),
    roles=("text", "label", "id"),
)
class TextReader(JsonlReader):
    """JSONL of ``{"text": str, "label": str | int}``; payloads are ``str``. The fields are
    mappable: ``columns={"text": "sentence", "label": "y"}``."""

    kind = "text"
    labelled = True
    ROLES: ClassVar[dict[str, tuple[str, ...]]] = {
        "text": ("text",),
        "label": ("label",),
        "id": ("id",),
    }

    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        text = str_field(obj, self.field("text"), required=True, path=self.path, line=line)
        label_key = self.field("label")
        if label_key not in obj:
            raise MissingFieldError(f"missing field {label_key!r}", path=self.path, line=line)
        return label_value(obj[label_key], path=self.path, line=line, field=label_key), text
